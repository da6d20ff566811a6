"""OpenAPI 3.1 documents for the API families: the machinery (`Op`, `Family`, `build_openapi`).

Each family keeps its own table of `Op`s next to its routes (compute/api/openapi_ops.py,
image/openapi_ops.py, identity/api/openapi_ops.py); an app factory serves its family's with
`openapi_route(family, axis)`, a GET /openapi.json route in that app: /compute/openapi.json and
/image/openapi.json (identity's table feeds the fuzz and bad-input suites). Nothing here knows a family.

Request bodies are the very jsonschema objects the handlers validate with (imported, never copied),
so the document cannot drift from what the API accepts. A document describes one microversion of
its `axis` (Cumulo's documents all state the compute microversion; a family with microversions of
its own, compute, has bodies and routes that differ by version): `build_openapi(..., version="2.1")`
gives another.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import errors
from cumulo.web.http import json_response

Schema = dict[str, Any]


@runtime_checkable
class ByVersion(Protocol):
    """Schemas by microversion range (the compute schemas' `Versioned`)."""

    def for_version(self, version: Any) -> Any: ...


# A request body or query as the API modules keep it: a schema, a `ByVersion`, a (since, item)
# table, or a function of the microversion; a query may also be a plain list of parameter names.
Spec = Schema | ByVersion | Sequence[tuple[Any, Any]] | Callable[[Any], Any] | Sequence[str] | None

JSON_MEDIA = "application/json"
OCTET_STREAM = "application/octet-stream"


@dataclass(frozen=True)
class Microversions:
    """A microversion axis: the service name clients send in OpenStack-API-Version ("compute"), the
    oldest and newest versions, and how to read one. Versions are ordered values with a str()."""

    service: str
    oldest: Any
    newest: Any
    parse: Callable[[str], Any]

    def read(self, version: Any) -> Any:
        """A version from its text ("latest" is the newest) or as it is; ValueError if unreadable."""
        if not isinstance(version, str):
            return version
        return self.newest if version == "latest" else self.parse(version)

    def holds(self, version: Any) -> bool:
        return bool(self.oldest <= version <= self.newest)


@dataclass(frozen=True)
class Op:
    """One operation: method, path below the family root, and what it accepts."""

    method: str
    path: str
    summary: str
    body: Spec = None
    query: Spec = None
    status: int = 200
    media: str = JSON_MEDIA
    since: str | None = None  # microversion that introduced the route (families with microversions)
    until: str | None = None  # last microversion that has it
    admin: bool = False  # only admins may call it (documentation: x-cumulo-admin)


def op(method: str, path: str, summary: str, **kw: Any) -> Op:
    return Op(method, path, summary, **kw)


@dataclass(frozen=True)
class Family:
    """One API family's part of a document: its prefix below the cloud's root, title, fault body
    and operations. A family with `microversions` has routes that come (`since`) and go (`until`)
    and takes the OpenStack-API-Version header."""

    name: str
    prefix: str
    title: str
    fault: Schema
    ops: tuple[Op, ...]
    path_params: dict[str, Schema] = field(default_factory=dict)
    microversions: Microversions | None = None


# ---- building the document --------------------------------------------------------------------

_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")


def _by_version(table: Sequence[tuple[Any, Any]], version: Any) -> Any:
    """The entry of the newest version not above `version` (table sorted by version)."""
    chosen = table[0][1]
    for since, item in table:
        if since <= version:
            chosen = item
    return chosen


def resolve(spec: Spec, version: Any) -> Any:
    """The schema (or list of query names) a spec gives at this microversion."""
    if spec is None or isinstance(spec, dict):
        return spec
    if isinstance(spec, ByVersion):
        return spec.for_version(version)
    if callable(spec):
        return spec(version)
    items: list[Any] = list(spec)
    if items and all(isinstance(i, tuple) and len(i) == 2 and isinstance(i[0], tuple) for i in items):
        return _by_version(items, version)
    return items  # a plain list of query parameter names


def _query_parameters(spec: Spec, version: Any) -> list[Schema]:
    resolved = resolve(spec, version)
    if resolved is None:
        return []
    if isinstance(resolved, dict):
        # Compute query schemas: each property is a list, one item per repetition of the parameter.
        props: dict[str, Schema] = resolved.get("properties", {})
        return [
            {"name": name, "in": "query", "required": False, "style": "form", "explode": True, "schema": schema}
            for name, schema in props.items()
        ]
    return [{"name": name, "in": "query", "required": False, "schema": {"type": "string"}} for name in resolved]


def _operation_id(family: str, method: str, path: str) -> str:
    path = re.sub(r"^/v[0-9.]+", "", path)
    words = [w for w in re.split(r"[^A-Za-z0-9]+", _PARAM.sub(r"by \1", path)) if w]
    if path.endswith("/") and words:  # a blank-id route beside its collection's (e.g. GET /os-simple-tenant-usage/)
        words.append("blank")
    return f"{family}_{method.lower()}_" + ("_".join(words) or "root")


def _operation(fam: Family, o: Op, version: Any) -> Schema:
    params: list[Schema] = [
        {"name": name, "in": "path", "required": True, "schema": fam.path_params.get(name, {"type": "string"})}
        for name in _PARAM.findall(o.path)
    ]
    params += _query_parameters(o.query, version)
    if fam.microversions is not None:
        params.append(
            {
                "name": "OpenStack-API-Version",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "enum": [f"{fam.microversions.service} {version}"]},
            }
        )
    fault_ref = {"$ref": f"#/components/schemas/{fam.name.capitalize()}Fault"}
    out: Schema = {
        "operationId": _operation_id(fam.name, o.method, o.path),
        "summary": o.summary,
        "tags": [fam.name],
        "parameters": params,
        "responses": {
            str(o.status): {"description": "Success"},
            "4XX": {"description": "Client error", "content": {JSON_MEDIA: {"schema": fault_ref}}},
        },
    }
    if o.admin:
        out["x-cumulo-admin"] = True
    if o.since:
        out["x-openstack-min-microversion"] = o.since
    body = resolve(o.body, version)
    if body is not None:
        out["requestBody"] = {"required": True, "content": {o.media: {"schema": body}}}
    return out


def _available(fam: Family, o: Op, version: Any) -> bool:
    mv = fam.microversions
    if mv is None:
        return True
    if o.since and version < mv.parse(o.since):
        return False
    return not (o.until and version > mv.parse(o.until))


def build_openapi(
    families: Sequence[Family],
    *,
    axis: Microversions,
    version: Any = "latest",
    public_url: str | None = None,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document for `families` at `version` of `axis` ("latest", "2.1" or a
    version); paths are absolute from the cloud's root (e.g. /compute/v2.1/servers). With a
    public_url, `servers` names it."""
    at = axis.read(version)
    if not axis.holds(at):
        raise ValueError(f"{axis.service} microversion {at} is outside {axis.oldest}..{axis.newest}")
    paths: dict[str, dict[str, Any]] = {}
    components: dict[str, Schema] = {}
    for fam in families:
        components[f"{fam.name.capitalize()}Fault"] = fam.fault
        for o in fam.ops:
            if not _available(fam, o, at):
                continue
            path = fam.prefix + _PARAM.sub(r"{\1}", o.path)
            paths.setdefault(path, {})[o.method.lower()] = _operation(fam, o, at)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": " / ".join(fam.title for fam in families),
            "version": "1.0",
            f"x-openstack-{axis.service}-microversion": str(at),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"keystoneToken": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"}},
        },
        "security": [{"keystoneToken": []}],
        "tags": [{"name": fam.name, "description": fam.title} for fam in families],
    }
    if public_url is not None:
        doc["servers"] = [{"url": public_url}]
    return doc


def openapi_route(family: Family, axis: Microversions, public_url: str | None = None) -> Route:
    """GET /openapi.json for one family's app (so /compute/openapi.json, ...). No token needed:
    the document describes the API, not any project's data. ?microversion=X.Y picks another."""
    cache: dict[str, dict[str, Any]] = {}

    async def handler(request: Request) -> Response:
        asked = request.query_params.get("microversion", "latest")
        try:
            version = axis.read(asked)
        except ValueError:
            raise errors.Invalid(f"Invalid microversion {asked!r}") from None
        if not axis.holds(version):
            raise errors.Invalid(f"Microversion {version} is outside {axis.oldest}..{axis.newest}")
        key = str(version)
        if key not in cache:
            cache[key] = build_openapi([family], axis=axis, version=version, public_url=public_url)
        return json_response(cache[key])

    return Route("/openapi.json", handler, methods=["GET"])
