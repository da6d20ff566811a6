"""A small test-side OCCI 1.2 client, written from the specifications only (GFD.223 HTTP Protocol,
GFD.229 Text Rendering, GFD.225 JSON Rendering), on plain httpx.

It never imports `cumulo.occi`: the system tests check the server against the standard, not against
our own renderer and parser. Three renderings are spoken, for requests and responses alike:

- "text/plain": Category / Link / X-OCCI-Attribute / X-OCCI-Location lines in the body;
- "text/occi": the same field values in HTTP headers (comma-joined lists, as GFD.229 recommends),
  the body "OK";
- "application/occi+json": the JSON objects of GFD.225 (resource, link, action invocation,
  {"resources": [...]}, {"kinds": [...], "mixins": [...], "actions": [...]}).

Filtering (GFD.223 §4) is carried in request headers whatever the rendering, as the standard
restricts it to renderings transportable in HTTP headers: a Category on the query interface, a
Category and X-OCCI-Attribute values on collections.

Authentication: a Keystone token (`keystone_token`, a plain POST to /identity/v3/auth/tokens with a
clouds.yaml entry's password credentials) in X-Auth-Token, or HTTP Basic (user name, password, and
optionally a header naming the project).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from _occi_text import (
    TEXT_FIELDS,
    Category,
    LinkValue,
    header_fields,
    parse_attribute,
    parse_category,
    parse_link,
    quote,
    render_category,
    render_value,
    split_id,
    text_fields,
)

CORE = "http://schemas.ogf.org/occi/core#"
INFRA = "http://schemas.ogf.org/occi/infrastructure#"
COMPUTE = INFRA + "compute"
STORAGE = INFRA + "storage"
NETWORK = INFRA + "network"
NETWORKINTERFACE = INFRA + "networkinterface"
STORAGELINK = INFRA + "storagelink"
IPNETWORK_ID = "http://schemas.ogf.org/occi/infrastructure/network#ipnetwork"
IPNETWORKINTERFACE_ID = "http://schemas.ogf.org/occi/infrastructure/networkinterface#ipnetworkinterface"
OS_TPL = INFRA + "os_tpl"
RESOURCE_TPL = INFRA + "resource_tpl"
USER_DATA = "http://schemas.ogf.org/occi/infrastructure/compute#user_data"
SSH_KEY = "http://schemas.ogf.org/occi/infrastructure/credentials#ssh_key"

TEXT_PLAIN = "text/plain"
TEXT_OCCI = "text/occi"
JSON = "application/occi+json"
URI_LIST = "text/uri-list"
RENDERINGS = (TEXT_PLAIN, TEXT_OCCI, JSON)
USER_AGENT = "cumulo-systest/1 OCCI/1.2"


def action_id(kind_id: str, term: str) -> str:
    """An Infrastructure action's id: `…/infrastructure/compute/action#stop` for (compute, stop)."""
    scheme, _, kind_term = kind_id.partition("#")
    return f"{scheme}/{kind_term}/action#{term}"


# ---------------------------------------------------------------------------------------------
# Entities as parsed from any rendering


@dataclass
class Entity:
    kind: str
    mixins: list[str] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)  # action ids offered now
    links: list[LinkValue] = field(default_factory=list)  # links to resources (not action links)

    @property
    def id(self) -> str:
        return str(self.attributes.get("occi.core.id", ""))

    def link_ids(self) -> list[str]:
        """The ids (last path segment of `self`) of the entity's links."""
        return [(ln.self_ or "").rstrip("/").rsplit("/", 1)[-1] for ln in self.links]


def entity_from_text(f: Mapping[str, list[str]]) -> Entity:
    cats = [parse_category(v) for v in f["Category"]]
    kinds = [c for c in cats if c.cls == "kind"]
    if len(kinds) != 1:
        raise ValueError(f"an entity rendering needs exactly one kind, got {[c.id for c in kinds]}")
    ent = Entity(kind=kinds[0].id, mixins=[c.id for c in cats if c.cls == "mixin"])
    for v in f["Link"]:
        link = parse_link(v)
        if link.is_action:
            ent.actions += link.rel
        else:
            ent.links.append(link)
    ent.attributes = dict(parse_attribute(v) for v in f["X-OCCI-Attribute"])
    return ent


def entity_from_json(obj: Mapping[str, Any]) -> Entity:
    attrs = dict(obj.get("attributes") or {})
    attrs.setdefault("occi.core.id", obj.get("id"))
    for k in ("title", "summary"):
        if k in obj:
            attrs.setdefault(f"occi.core.{k}", obj[k])
    ent = Entity(kind=str(obj["kind"]), mixins=list(obj.get("mixins") or []), attributes=attrs,
                 actions=list(obj.get("actions") or []))
    for ln in obj.get("links") or []:
        target = ln["target"]
        ent.links.append(LinkValue(target=target["location"], rel=[target["kind"]] if target.get("kind") else [],
                                   self_=ln.get("location") or str(ln["id"]), category=[ln["kind"], *ln.get("mixins", [])],
                                   attributes=dict(ln.get("attributes") or {})))
    if "source" in obj:  # a link entity
        attrs.setdefault("occi.core.source", obj["source"]["location"])
        attrs.setdefault("occi.core.target", obj["target"]["location"])
    return ent


def categories_from_json(obj: Mapping[str, Any]) -> list[Category]:
    out: list[Category] = []
    for cls, key in (("kind", "kinds"), ("mixin", "mixins"), ("action", "actions")):
        for c in obj.get(key) or []:
            rel = [c["parent"]] if c.get("parent") else list(c.get("depends") or [])
            out.append(Category(term=c["term"], scheme=c["scheme"], cls=cls, title=c.get("title", ""), rel=rel,
                                applies=list(c.get("applies") or []), location=c.get("location"),
                                attributes=dict(c.get("attributes") or {}), actions=list(c.get("actions") or [])))
    return out


# ---------------------------------------------------------------------------------------------
# Requests


@dataclass
class InlineLink:
    """A link made with its resource (or posted on its own with `source`)."""

    target: str  # a location
    target_kind: str
    kind: str
    attributes: dict[str, Any] = field(default_factory=dict)
    mixins: list[str] = field(default_factory=list)
    source: str | None = None


def _text_request(kind: str | None, mixins: Sequence[str], attributes: Mapping[str, Any],
                  links: Sequence[InlineLink] = (), *, cls: str = "kind") -> dict[str, list[str]]:
    f: dict[str, list[str]] = {k: [] for k in TEXT_FIELDS}
    if kind:
        f["Category"].append(render_category(kind, cls))
    f["Category"] += [render_category(m, "mixin") for m in mixins]
    for ln in links:
        value = f'<{ln.target}>; rel="{ln.target_kind}"; category="{" ".join([ln.kind, *ln.mixins])}"'
        for k, v in ln.attributes.items():
            value += f"; {k}={render_value(v)}"
        f["Link"].append(value)
    f["X-OCCI-Attribute"] = [f"{k}={render_value(v)}" for k, v in attributes.items()]
    return f


def _json_links(links: Sequence[InlineLink]) -> list[dict[str, Any]]:
    out = []
    for ln in links:
        obj: dict[str, Any] = {"kind": ln.kind, "target": {"location": ln.target, "kind": ln.target_kind}}
        if ln.mixins:
            obj["mixins"] = list(ln.mixins)
        if ln.attributes:
            obj["attributes"] = dict(ln.attributes)
        if ln.source:
            obj["source"] = {"location": ln.source}
        out.append(obj)
    return out


class OcciError(AssertionError):
    def __init__(self, resp: httpx.Response, what: str) -> None:
        self.resp = resp
        super().__init__(f"{what}: HTTP {resp.status_code} {resp.headers.get('content-type')}\n{resp.text[:2000]}")


class Occi:
    """One rendering, one identity. Paths are relative to the OCCI root (`/occi`), or absolute URLs
    as the server renders locations."""

    def __init__(self, base_url: str, rendering: str = TEXT_PLAIN, *, token: str | None = None,
                 basic: tuple[str, str] | None = None, headers: Mapping[str, str] | None = None,
                 root: str = "/occi", timeout: float = 60.0, validator: Callable[[Any], Any] | None = None) -> None:
        assert rendering in RENDERINGS, rendering
        self.rendering = rendering
        self.root = root.rstrip("/")
        hdrs = {"User-Agent": USER_AGENT, **(headers or {})}
        if token:
            hdrs["X-Auth-Token"] = token
        self.http = httpx.Client(base_url=base_url, headers=hdrs, auth=basic, timeout=timeout)
        self._kind_locations: dict[str, str] | None = None
        self.validator = validator  # called with every successful JSON answer (e.g. a schema check)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Occi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------------------------

    def url(self, path: str) -> str:
        if "://" in path:
            return path
        if path.startswith(self.root + "/"):
            return path
        return self.root + "/" + path.lstrip("/")

    def request(self, method: str, path: str, *, fields: Mapping[str, list[str]] | None = None,
                json_body: Any = None, accept: str | None = None, params: Mapping[str, str] | None = None,
                filters: Mapping[str, list[str]] | None = None) -> httpx.Response:
        """Send with this client's rendering: `fields` (text field name -> values) go to the body
        (text/plain) or the headers (text/occi); `json_body` is sent as application/occi+json.
        `filters` always travel as headers."""
        headers: dict[str, str] = {"Accept": accept or self.rendering}
        content: bytes | None = None
        for name, vals in (filters or {}).items():
            if vals:
                headers[name] = ", ".join(vals)
        if self.rendering == JSON and json_body is not None:
            headers["Content-Type"] = JSON
            content = json.dumps(json_body).encode()
        elif fields is not None and self.rendering == TEXT_PLAIN:
            headers["Content-Type"] = TEXT_PLAIN
            content = "".join(f"{name}: {v}\n" for name, vals in fields.items() for v in vals).encode()
        elif fields is not None and self.rendering == TEXT_OCCI:
            headers["Content-Type"] = TEXT_OCCI
            for name, vals in fields.items():
                if vals:
                    headers[name] = ", ".join(vals)
        return self.http.request(method, self.url(path), headers=headers, content=content, params=params)

    def fields(self, resp: httpx.Response) -> dict[str, list[str]]:
        ctype = resp.headers.get("content-type", "").split(";")[0].strip()
        if ctype == TEXT_OCCI:
            return header_fields(resp.headers)
        assert ctype == TEXT_PLAIN, f"expected a text rendering, got {ctype!r}: {resp.text[:300]}"
        return text_fields(resp.text)

    def check(self, resp: httpx.Response, *codes: int, what: str) -> httpx.Response:
        if resp.status_code not in codes:
            raise OcciError(resp, what)
        server = resp.headers.get("server", "")
        assert "OCCI/1.2" in server, f"Server header without OCCI/1.2: {server!r}"
        if resp.status_code != 204 and resp.content:
            ctype = resp.headers.get("content-type", "").split(";")[0].strip()
            assert ctype in (self.rendering, URI_LIST), f"{what}: asked {self.rendering}, got {ctype}"
            if ctype == JSON and resp.is_success and self.validator is not None:
                self.validator(resp.json())
            if ctype == TEXT_OCCI and resp.is_success:  # GFD.229 §6: everything in headers, the body "OK"
                assert resp.text.strip() == "OK", f"{what}: a text/occi body other than OK: {resp.text[:200]!r}"
        return resp

    # -- query interface ----------------------------------------------------------------------

    def model(self, filter_category: str | None = None, cls: str = "kind", path: str = "/-/") -> list[Category]:
        """GET the query interface (optionally filtered by one category, sent as a header)."""
        filters = {"Category": [render_category(filter_category, cls)]} if filter_category else None
        resp = self.check(self.request("GET", path, filters=filters), 200, what=f"GET {path}")
        if self.rendering == JSON:
            return categories_from_json(resp.json())
        return [parse_category(v) for v in self.fields(resp)["Category"]]

    def kind_location(self, kind_id: str) -> str:
        if self._kind_locations is None:
            self._kind_locations = {c.id: c.location or "" for c in self.model() if c.cls == "kind"}
        return self._kind_locations[kind_id]

    def add_mixin(self, scheme: str, term: str, title: str, location: str, applies: Sequence[str] = ()) -> httpx.Response:
        """POST a user-defined mixin to the query interface."""
        if self.rendering == JSON:
            body: dict[str, Any] = {"mixins": [{"term": term, "scheme": scheme, "title": title, "location": location,
                                                "applies": list(applies)}]}
            return self.request("POST", "/-/", json_body=body)
        value = f'{term}; scheme="{scheme}"; class="mixin"; title={quote(title)}; location="{location}"'
        return self.request("POST", "/-/", fields={"Category": [value]})

    def delete_mixin(self, scheme: str, term: str) -> httpx.Response:
        if self.rendering == JSON:
            return self.request("DELETE", "/-/", json_body={"mixins": [{"term": term, "scheme": scheme,
                                                                         "location": "/"}]})
        return self.request("DELETE", "/-/", fields={"Category": [f'{term}; scheme="{scheme}"; class="mixin"']})

    # -- entities -----------------------------------------------------------------------------

    def _entity_request(self, kind: str | None, mixins: Sequence[str], attributes: Mapping[str, Any],
                        links: Sequence[InlineLink], source: str | None = None,
                        target: tuple[str, str] | None = None) -> dict[str, Any]:
        if self.rendering == JSON:
            body: dict[str, Any] = {}
            if kind:
                body["kind"] = kind
            if mixins:
                body["mixins"] = list(mixins)
            if attributes:
                body["attributes"] = dict(attributes)
            if links:
                body["links"] = _json_links(links)
            if source:
                body["source"] = {"location": source}
            if target:
                body["target"] = {"location": target[0], "kind": target[1]}
            return {"json_body": body}
        attrs = dict(attributes)
        if source:
            attrs["occi.core.source"] = source
        if target:
            attrs["occi.core.target"] = target[0]
        return {"fields": _text_request(kind, mixins, attrs, links)}

    def created_location(self, resp: httpx.Response, kind: str) -> str:
        """Where a create says the new entity is: Location, else X-OCCI-Location, else the JSON entity."""
        if resp.headers.get("location"):
            return resp.headers["location"]
        if self.rendering == JSON:
            body = resp.json()
            if "resources" in body or "links" in body:
                body = (body.get("resources") or body.get("links"))[0]
            return self.kind_location(kind).rstrip("/") + "/" + str(body["id"])
        locs = self.fields(resp)["X-OCCI-Location"]
        assert len(locs) == 1, f"create answered {locs}"
        return locs[0]

    def create(self, kind: str, *, mixins: Sequence[str] = (), attributes: Mapping[str, Any] | None = None,
               links: Sequence[InlineLink] = (), source: str | None = None,
               target: tuple[str, str] | None = None) -> str:
        """POST to the kind's collection; the new entity's location."""
        coll = self.kind_location(kind)
        resp = self.request("POST", coll, **self._entity_request(kind, mixins, attributes or {}, links, source, target))
        self.check(resp, 200, 201, what=f"create {kind}")
        return self.created_location(resp, kind)

    def get(self, location: str) -> Entity:
        resp = self.check(self.request("GET", location), 200, what=f"GET {location}")
        if self.rendering == JSON:
            ent = entity_from_json(resp.json())
            for ln in ent.links:  # a JSON link has an id, no location: its kind's collection + id
                if ln.self_ and "/" not in ln.self_ and ln.category:
                    ln.self_ = self.kind_location(ln.category[0]).rstrip("/") + "/" + ln.self_
            return ent
        return entity_from_text(self.fields(resp))

    def get_json(self, location: str) -> Any:
        """The raw JSON document (for schema validation); only for the JSON rendering."""
        assert self.rendering == JSON
        return self.check(self.request("GET", location), 200, what=f"GET {location}").json()

    def status(self, method: str, location: str) -> int:
        return self.request(method, location).status_code

    def update(self, location: str, *, mixins: Sequence[str] = (), attributes: Mapping[str, Any] | None = None,
               kind: str | None = None, replace: bool = False) -> httpx.Response:
        """POST (partial update) or PUT (full representation, then `kind` is required) to the entity."""
        req = self._entity_request(kind, mixins, attributes or {}, ())
        return self.request("PUT" if replace else "POST", location, **req)

    def delete(self, location: str) -> httpx.Response:
        return self.request("DELETE", location)

    def action(self, location: str, action: str, attributes: Mapping[str, Any] | None = None) -> httpx.Response:
        """POST <location>?action=<term> with an action invocation rendering."""
        _, term = split_id(action)
        if self.rendering == JSON:
            body: dict[str, Any] = {"action": action}
            if attributes:
                body["attributes"] = dict(attributes)
            return self.request("POST", location, params={"action": term}, json_body=body)
        fields = _text_request(action, (), attributes or {}, cls="action")
        return self.request("POST", location, params={"action": term}, fields=fields)

    # -- collections --------------------------------------------------------------------------

    def locations(self, path: str, *, category: str | None = None, cls: str = "kind",
                  attributes: Mapping[str, Any] | None = None, accept: str | None = None) -> list[str]:
        """GET a collection (a kind's, a mixin's, or the root): the entity locations it lists,
        optionally filtered by a category and by attribute values."""
        filters: dict[str, list[str]] = {}
        if category:
            filters["Category"] = [render_category(category, cls)]
        if attributes:
            filters["X-OCCI-Attribute"] = [f"{k}={render_value(v)}" for k, v in attributes.items()]
        resp = self.request("GET", path, filters=filters, accept=accept)
        if resp.status_code != 200:
            raise OcciError(resp, f"GET {path}")
        ctype = resp.headers.get("content-type", "").split(";")[0].strip()
        if ctype == URI_LIST:
            return [ln.strip() for ln in resp.text.splitlines() if ln.strip() and not ln.startswith("#")]
        if ctype == JSON:
            body = resp.json()
            out = []
            for obj in [*(body.get("resources") or []), *(body.get("links") or [])]:
                out.append(obj.get("location") or self.kind_location(obj["kind"]).rstrip("/") + "/" + str(obj["id"]))
            return out
        return self.fields(resp)["X-OCCI-Location"]

    def add_members(self, path: str, locations: Sequence[str], method: str = "POST") -> httpx.Response:
        """POST (add) / PUT (replace) / DELETE (remove) entities of a mixin's collection, named by
        X-OCCI-Location (text renderings) or a JSON array of locations."""
        if self.rendering == JSON:
            return self.request(method, path, json_body=list(locations))
        return self.request(method, path, fields={"X-OCCI-Location": list(locations)})

    def ids(self, path: str, **kw: Any) -> set[str]:
        """The entity ids (last path segments) of a collection listing."""
        return {urlsplit(loc).path.rstrip("/").rsplit("/", 1)[-1] for loc in self.locations(path, **kw)}


def keystone_token(auth_url: str, auth: Mapping[str, str], timeout: float = 30.0) -> str:
    """A project-scoped token: a plain POST to <auth_url>/auth/tokens with a clouds.yaml `auth` entry."""
    body = {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": auth["username"], "password": auth["password"],
            "domain": {"name": auth.get("user_domain_name", "Default")}}}},
        "scope": {"project": {"name": auth["project_name"],
                              "domain": {"name": auth.get("project_domain_name", "Default")}}},
    }}
    resp = httpx.post(auth_url.rstrip("/") + "/auth/tokens", json=body, timeout=timeout)
    assert resp.status_code == 201, resp.text
    return resp.headers["X-Subject-Token"]


def path_id(location: str) -> str:
    return urlsplit(location).path.rstrip("/").rsplit("/", 1)[-1]
