"""OpenAPI 3.1 documents for the compute, image and identity APIs.

Request bodies are the very jsonschema objects the handlers validate with (imported, never copied),
so the document cannot drift from what the API accepts. Each family is a table of `Op`s: adding an
endpoint is one line. The compute document describes one microversion (bodies differ by version);
`build_openapi(..., compute_version="2.1")` gives another.

Serve it with `openapi_route(family)`: a GET /openapi.json route for that family's app, so it
answers at /compute/openapi.json, /image/openapi.json and /identity/openapi.json.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import errors
from cumulo.compute.api.microversion import MAX_VERSION, MIN_VERSION, Version, v
from cumulo.compute.api.schemas import admin_actions as admin_action_s
from cumulo.compute.api.schemas import admin_extras as extras_s
from cumulo.compute.api.schemas import aggregates as aggregate_s
from cumulo.compute.api.schemas import deferred_actions as deferred_s
from cumulo.compute.api.schemas import flavors as flavor_s
from cumulo.compute.api.schemas import images as cimage_s
from cumulo.compute.api.schemas import instance_actions as ia_s
from cumulo.compute.api.schemas import keypairs as keypair_s
from cumulo.compute.api.schemas import migrations as migration_s
from cumulo.compute.api.schemas import quota_sets as quota_s
from cumulo.compute.api.schemas import resource_types as rt
from cumulo.compute.api.schemas import server_actions as action_s
from cumulo.compute.api.schemas import server_groups as group_s
from cumulo.compute.api.schemas import server_metadata as md_s
from cumulo.compute.api.schemas import server_tags as tag_s
from cumulo.compute.api.schemas import servers as server_s
from cumulo.compute.api.schemas import services as service_s
from cumulo.compute.api.schemas._base import Versioned
from cumulo.identity import schemas as identity_s
from cumulo.identity.api import credentials as identity_credentials_api
from cumulo.image import _patch as image_patch
from cumulo.image import _schemas as image_s
from cumulo.image.metadefs import api as metadefs_api
from cumulo.web.http import json_response

if TYPE_CHECKING:
    from cumulo.runtime import Services

Schema = dict[str, Any]
# A request body or query as the API modules keep it: a schema, a `Versioned`, a (since, item)
# table, or a function of the microversion.
Spec = Schema | Versioned | Sequence[tuple[Version, Any]] | Callable[[Version], Any] | Sequence[str] | None

JSON_MEDIA = "application/json"
OCTET_STREAM = "application/octet-stream"
PATCH_MEDIA = "application/openstack-images-v2.1-json-patch"


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
    since: str | None = None  # compute microversion that introduced the route
    until: str | None = None  # last compute microversion that has it
    admin: bool = False  # only admins may call it (documentation: x-cumulo-admin)


def op(method: str, path: str, summary: str, **kw: Any) -> Op:
    return Op(method, path, summary, **kw)


@dataclass(frozen=True)
class Family:
    name: str
    prefix: str
    title: str
    fault: Schema
    ops: tuple[Op, ...]
    path_params: dict[str, Schema] = field(default_factory=dict)


# ---- fault bodies, as each family renders them ------------------------------------------------

NOVA_FAULT: Schema = {
    "description": 'Nova fault: {"<faultName>": {"code": <status>, "message": "..."}}',
    "type": "object",
    "minProperties": 1,
    "maxProperties": 1,
    "additionalProperties": {
        "type": "object",
        "properties": {"code": {"type": "integer"}, "message": {"type": "string"}},
        "required": ["code", "message"],
    },
}
GLANCE_FAULT: Schema = {
    "description": 'Glance (WebOb) fault: {"code": "404 Not Found", "title": "Not Found", "message": "..."}',
    "type": "object",
    "properties": {
        "code": {"type": "string", "pattern": "^[1-5][0-9]{2} "},
        "title": {"type": "string"},
        "message": {"type": "string"},
    },
    "required": ["code", "title", "message"],
}
KEYSTONE_FAULT: Schema = {
    "description": 'Keystone error: {"error": {"code": <status>, "title": "...", "message": "..."}}',
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"code": {"type": "integer"}, "title": {"type": "string"}, "message": {"type": "string"}},
            "required": ["code", "title", "message"],
        }
    },
    "required": ["error"],
}


# ---- bodies the handlers check in code rather than with a schema module ----------------------

# POST /servers/{id}/action: exactly one of the action schemas (each requires its own key).
def _server_action(version: Version) -> Schema:
    schemas = [*action_s.SCHEMAS.values(), *deferred_s.SCHEMAS.values(), *admin_action_s.SCHEMAS.values(),
               *extras_s.SECURITY_GROUP_ACTIONS.values()]
    chosen = [s for s in (vs.for_version(version) for vs in schemas) if s is not None]
    return {"oneOf": chosen}


_FLAVOR_ACTION: Schema = {"oneOf": [flavor_s.add_tenant_access, flavor_s.remove_tenant_access]}


def _services_update(version: Version) -> Schema:
    if version >= v("2.53"):
        return service_s.update_v253
    return service_s.update_v211 if version >= v("2.11") else service_s.update


_IMAGE_PATCH: Schema = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "op": {"type": "string", "enum": list(image_patch.OPERATIONS)},
            "path": {"type": "string", "pattern": "^/"},
            "value": {},
        },
        "required": ["op", "path"],
    },
}
_IMAGE_MEMBER_ADD: Schema = {
    "type": "object",
    "properties": {"member": {"type": "string", "minLength": 1, "maxLength": 255}},
    "required": ["member"],
}
_IMAGE_MEMBER_UPDATE: Schema = {
    "type": "object",
    "properties": {"status": {"type": "string", "enum": list(image_s.MEMBER_STATUSES)}},
    "required": ["status"],
}
_BINARY: Schema = {"type": "string", "contentMediaType": OCTET_STREAM}

# Glance's list filters: the fixed parameters, plus any image property (compared as a string).
_IMAGE_LIST_QUERY = (
    "limit", "marker", "sort", "sort_key", "sort_dir", "name", "id", "status", "visibility", "member_status",
    "owner", "tag", "size_min", "size_max", "created_at", "updated_at", "protected", "os_hidden",
    "container_format", "disk_format", "checksum", "os_hash_value",
)


# ---- the operation tables ---------------------------------------------------------------------

S = "/v2.1/servers/{server_id}"
F = "/v2.1/flavors/{flavor_id}"
Q = "/v2.1/os-quota-sets/{project_id}"
H = "/v2.1/os-hypervisors"
AG = "/v2.1/os-aggregates"
_HYP_QUERY = ("limit", "marker", "hypervisor_hostname_pattern", "with_servers")

COMPUTE_OPS: tuple[Op, ...] = (
    op("GET", "/v2.1/servers", "List servers", query=server_s.INDEX_QUERY),
    op("POST", "/v2.1/servers", "Create server", body=server_s.CREATE, status=202),
    op("GET", "/v2.1/servers/detail", "List servers with details", query=server_s.INDEX_QUERY),
    op("GET", S, "Show server"),
    op("PUT", S, "Update server", body=server_s.UPDATE),
    op("DELETE", S, "Delete server", status=204),
    op("POST", f"{S}/action", "Server action", body=_server_action, status=202),
    op("GET", f"{S}/metadata", "List server metadata"),
    op("POST", f"{S}/metadata", "Merge server metadata", body=md_s.create),
    op("PUT", f"{S}/metadata", "Replace server metadata", body=md_s.update_all),
    op("GET", f"{S}/metadata/{{key}}", "Show server metadata item"),
    op("PUT", f"{S}/metadata/{{key}}", "Set server metadata item", body=md_s.update),
    op("DELETE", f"{S}/metadata/{{key}}", "Delete server metadata item", status=204),
    op("GET", f"{S}/tags", "List server tags", since="2.26"),
    op("PUT", f"{S}/tags", "Replace server tags", body=tag_s.update_all, since="2.26"),
    op("DELETE", f"{S}/tags", "Delete all server tags", status=204, since="2.26"),
    op("GET", f"{S}/tags/{{tag}}", "Check server tag", status=204, since="2.26"),
    op("PUT", f"{S}/tags/{{tag}}", "Add server tag", status=201, since="2.26"),
    op("DELETE", f"{S}/tags/{{tag}}", "Delete server tag", status=204, since="2.26"),
    op("GET", f"{S}/os-instance-actions", "List instance actions", query=ia_s.INDEX_QUERY),
    op("GET", f"{S}/os-instance-actions/{{request_id}}", "Show instance action"),
    op("GET", f"{S}/diagnostics", "Server diagnostics", admin=True),
    op("GET", f"{S}/ips", "List server addresses"),
    op("GET", f"{S}/ips/{{network}}", "Show server addresses of a network"),
    op("GET", f"{S}/os-server-password", "Show server password"),
    op("DELETE", f"{S}/os-server-password", "Clear server password", status=204),
    op("GET", f"{S}/migrations", "List in-progress live migrations", since="2.23", admin=True),
    op("GET", f"{S}/migrations/{{migration_id}}", "Show an in-progress live migration", since="2.23", admin=True),
    op("GET", "/v2.1/os-migrations", "List migrations", query=migration_s.INDEX_QUERY, admin=True),
    # Nova's deprecated image proxy (to 2.35) and image metadata (to 2.38).
    op("GET", "/v2.1/images", "List images (proxy)", query=cimage_s.index_query, until="2.35"),
    op("GET", "/v2.1/images/detail", "List images with details (proxy)", query=cimage_s.index_query, until="2.35"),
    op("GET", "/v2.1/images/{image_id}", "Show image (proxy)", until="2.35"),
    op("DELETE", "/v2.1/images/{image_id}", "Delete image (proxy)", status=204, until="2.35"),
    op("DELETE", "/v2.1/images/", "Delete image with a blank id (proxy): always 404", status=404, until="2.35"),
    op("GET", "/v2.1/images/{image_id}/metadata", "List image metadata (proxy)", until="2.38"),
    op("POST", "/v2.1/images/{image_id}/metadata", "Merge image metadata (proxy)", body=cimage_s.create_metadata,
       until="2.38"),
    op("PUT", "/v2.1/images/{image_id}/metadata", "Replace image metadata (proxy)",
       body=cimage_s.update_all_metadata, until="2.38"),
    op("GET", "/v2.1/images/{image_id}/metadata/{key}", "Show image metadata item (proxy)", until="2.38"),
    op("PUT", "/v2.1/images/{image_id}/metadata/{key}", "Set image metadata item (proxy)", body=cimage_s.update_item,
       until="2.38"),
    op("DELETE", "/v2.1/images/{image_id}/metadata/{key}", "Delete image metadata item (proxy)", status=204,
       until="2.38"),
    op("GET", "/v2.1/flavors", "List flavors", query=flavor_s.LIST_QUERY),
    op("POST", "/v2.1/flavors", "Create flavor", body=flavor_s.CREATE, admin=True),
    op("GET", "/v2.1/flavors/detail", "List flavors with details", query=flavor_s.LIST_QUERY),
    op("GET", F, "Show flavor"),
    op("PUT", F, "Update flavor description", body=flavor_s.update, since="2.55", admin=True),
    op("DELETE", F, "Delete flavor", status=202, admin=True),
    op("POST", f"{F}/action", "Flavor access action", body=_FLAVOR_ACTION, admin=True),
    op("GET", f"{F}/os-flavor-access", "List flavor access", admin=True),
    op("GET", f"{F}/os-extra_specs", "List flavor extra specs"),
    op("POST", f"{F}/os-extra_specs", "Create flavor extra specs", body=flavor_s.extra_specs_create, admin=True),
    op("GET", f"{F}/os-extra_specs/{{key}}", "Show flavor extra spec"),
    op("PUT", f"{F}/os-extra_specs/{{key}}", "Update flavor extra spec", body=flavor_s.extra_spec_update, admin=True),
    op("DELETE", f"{F}/os-extra_specs/{{key}}", "Delete flavor extra spec", admin=True),
    op("GET", "/v2.1/os-keypairs", "List keypairs", query=keypair_s.INDEX_QUERY),
    op("POST", "/v2.1/os-keypairs", "Create or import keypair", body=keypair_s.CREATE),
    op("GET", "/v2.1/os-keypairs/{name}", "Show keypair", query=keypair_s.ITEM_QUERY),
    op("DELETE", "/v2.1/os-keypairs/{name}", "Delete keypair", status=202, query=keypair_s.ITEM_QUERY),
    op("GET", "/v2.1/os-server-groups", "List server groups", query=group_s.INDEX_QUERY),
    op("POST", "/v2.1/os-server-groups", "Create server group", body=group_s.CREATE),
    op("GET", "/v2.1/os-server-groups/{group_id}", "Show server group"),
    op("DELETE", "/v2.1/os-server-groups/{group_id}", "Delete server group", status=204),
    op("GET", "/v2.1/limits", "Show rate and absolute limits", query=quota_s.LIMITS_QUERY),
    op("GET", Q, "Show quotas", query=quota_s.QUOTA_QUERY),
    op("PUT", Q, "Update quotas", body=quota_s.quota_set_update_for, query=quota_s.QUOTA_QUERY, admin=True),
    op("DELETE", Q, "Revert quotas to defaults", status=202, query=quota_s.QUOTA_QUERY, admin=True),
    op("GET", f"{Q}/defaults", "Show default quotas"),
    op("GET", f"{Q}/detail", "Show quota usage", query=quota_s.QUOTA_QUERY),
    op("GET", "/v2.1/os-quota-class-sets/{class_name}", "Show quota class", admin=True),
    op("PUT", "/v2.1/os-quota-class-sets/{class_name}", "Update quota class", body=quota_s.quota_class_update_for, admin=True),
    op("GET", "/v2.1/os-availability-zone", "List availability zones"),
    op("GET", "/v2.1/os-availability-zone/detail", "List availability zones with hosts", admin=True),
    op("GET", "/v2.1/os-services", "List compute services", query=("host", "binary"), admin=True),
    op("PUT", "/v2.1/os-services/{service_id}", "Update compute service", body=_services_update, admin=True),
    op("DELETE", "/v2.1/os-services/{service_id}", "Delete compute service", status=204, admin=True),
    op("GET", H, "List hypervisors", query=_HYP_QUERY, admin=True),
    op("GET", f"{H}/detail", "List hypervisors with details", query=_HYP_QUERY, admin=True),
    op("GET", f"{H}/statistics", "Hypervisor statistics", admin=True, until="2.87"),
    op("GET", f"{H}/{{hypervisor_id}}", "Show hypervisor", query=((v("2.1"), ()), (v("2.53"), ("with_servers",))), admin=True),
    op("GET", f"{H}/{{hypervisor_id}}/uptime", "Show hypervisor uptime", admin=True),
    op("GET", f"{H}/{{pattern}}/search", "Search hypervisors", admin=True, until="2.52"),
    op("GET", f"{H}/{{pattern}}/servers", "List servers of hypervisors", admin=True, until="2.52"),
    op("GET", AG, "List host aggregates", admin=True),
    op("POST", AG, "Create host aggregate", body=aggregate_s.create, admin=True),
    op("GET", f"{AG}/{{aggregate_id}}", "Show host aggregate", admin=True),
    op("PUT", f"{AG}/{{aggregate_id}}", "Update host aggregate", body=aggregate_s.update, admin=True),
    op("DELETE", f"{AG}/{{aggregate_id}}", "Delete host aggregate", admin=True),
    op("POST", f"{AG}/{{aggregate_id}}/action", "Host aggregate action (add_host, remove_host, set_metadata)",
       body={"oneOf": list(aggregate_s.ACTIONS.values())}, admin=True),
    op("GET", "/v2.1/os-hosts", "List hosts", query=("zone",), admin=True, until="2.42"),
    op("GET", "/v2.1/os-hosts/{host_name}", "Show host resources", admin=True, until="2.42"),
    op("PUT", "/v2.1/os-hosts/{host_name}", "Update host (not supported: 501)", body=extras_s.host_update, admin=True,
       until="2.42"),
    *(op("GET", f"/v2.1/os-hosts/{{host_name}}/{a}", f"Host {a} (not supported: 501)", admin=True, until="2.42")
      for a in ("reboot", "shutdown", "startup")),
    op("GET", "/v2.1/os-simple-tenant-usage", "List usage of all projects", admin=True,
       query=((v("2.1"), extras_s.USAGE_LIST_QUERY), (v("2.40"), extras_s.USAGE_LIST_QUERY + extras_s.PAGING))),
    op("GET", "/v2.1/os-simple-tenant-usage/", "Show usage of a blank project id: always 404", status=404),
    op("GET", "/v2.1/os-simple-tenant-usage/{tenant_id}", "Show a project's usage",
       query=((v("2.1"), extras_s.USAGE_SHOW_QUERY), (v("2.40"), extras_s.USAGE_SHOW_QUERY + extras_s.PAGING))),
    op("GET", "/v2.1/os-instance_usage_audit_log", "List instance usage audit logs", admin=True),
    op("GET", "/v2.1/os-instance_usage_audit_log/{before_timestamp}", "Show instance usage audit log", admin=True),
    op("POST", "/v2.1/os-server-external-events", "Run server external events", body=extras_s.EVENTS),
    op("GET", f"{S}/os-security-groups", "List a server's security groups"),
)

IMAGE_OPS: tuple[Op, ...] = (
    op("GET", "/v2/images", "List images", query=_IMAGE_LIST_QUERY),
    op("POST", "/v2/images", "Create image", body=image_s.create_body_schema(), status=201),
    op("GET", "/v2/images/{image_id}", "Show image"),
    op("PATCH", "/v2/images/{image_id}", "Update image (JSON patch)", body=_IMAGE_PATCH, media=PATCH_MEDIA),
    op("DELETE", "/v2/images/{image_id}", "Delete image", status=204),
    op("GET", "/v2/images/{image_id}/tasks", "List image tasks"),
    op("PUT", "/v2/images/{image_id}/file", "Upload image data", body=_BINARY, media=OCTET_STREAM, status=204),
    op("GET", "/v2/images/{image_id}/file", "Download image data"),
    op("PUT", "/v2/images/{image_id}/tags/{tag}", "Add image tag", status=204),
    op("DELETE", "/v2/images/{image_id}/tags/{tag}", "Delete image tag", status=204),
    op("POST", "/v2/images/{image_id}/actions/deactivate", "Deactivate image", status=204),
    op("POST", "/v2/images/{image_id}/actions/reactivate", "Reactivate image", status=204),
    op("GET", "/v2/images/{image_id}/members", "List image members"),
    op("POST", "/v2/images/{image_id}/members", "Add image member", body=_IMAGE_MEMBER_ADD),
    op("GET", "/v2/images/{image_id}/members/{member_id}", "Show image member"),
    op("PUT", "/v2/images/{image_id}/members/{member_id}", "Update image member", body=_IMAGE_MEMBER_UPDATE),
    op("DELETE", "/v2/images/{image_id}/members/{member_id}", "Delete image member", status=204),
    op("GET", "/v2/schemas/image", "Image schema"),
    op("GET", "/v2/schemas/images", "Images schema"),
    op("GET", "/v2/schemas/member", "Member schema"),
    op("GET", "/v2/schemas/members", "Members schema"),
    op("GET", "/v2/info/import", "Import methods"),
    # Glance's metadata definitions catalog (its module lists its operations).
    *(op(m, p, summary, **kw) for m, p, summary, kw in metadefs_api.OPENAPI_OPS),
)

P = "/v3/projects/{project_id}"
U = "/v3/users/{user_id}"
R = "/v3/roles/{role_id}"
IDENTITY_OPS: tuple[Op, ...] = (
    op("POST", "/v3/auth/tokens", "Issue token", body=identity_s.TOKEN_ISSUE, status=201, query=("nocatalog",)),
    op("GET", "/v3/auth/tokens", "Validate token", query=("nocatalog",)),
    op("DELETE", "/v3/auth/tokens", "Revoke token", status=204),
    op("GET", "/v3/auth/projects", "Projects available to the token"),
    op("GET", "/v3/auth/catalog", "Catalog of the token"),
    op("GET", "/v3/auth/domains", "Domains available to the token"),
    op("GET", "/v3/domains", "List domains", query=("name", "enabled")),
    op("GET", "/v3/domains/{domain_id}", "Show domain"),
    op("GET", "/v3/projects", "List projects", query=("name", "domain_id", "enabled", "parent_id", "is_domain", "tags")),
    op("POST", "/v3/projects", "Create project", body=identity_s.PROJECT_CREATE, status=201, admin=True),
    op("GET", P, "Show project"),
    op("PATCH", P, "Update project", body=identity_s.PROJECT_UPDATE, admin=True),
    op("DELETE", P, "Delete project", status=204, admin=True),
    op("GET", f"{P}/users/{{user_id}}/roles", "List a user's roles on a project"),
    op("PUT", f"{P}/users/{{user_id}}/roles/{{role_id}}", "Grant role", status=204, admin=True),
    op("GET", f"{P}/users/{{user_id}}/roles/{{role_id}}", "Check role grant", status=204),
    op("DELETE", f"{P}/users/{{user_id}}/roles/{{role_id}}", "Revoke role", status=204, admin=True),
    op("GET", "/v3/users", "List users", query=("name", "domain_id", "enabled")),
    op("POST", "/v3/users", "Create user", body=identity_s.USER_CREATE, status=201, admin=True),
    op("GET", U, "Show user"),
    op("PATCH", U, "Update user", body=identity_s.USER_UPDATE, admin=True),
    op("DELETE", U, "Delete user", status=204, admin=True),
    op("GET", f"{U}/projects", "List a user's projects"),
    op("POST", f"{U}/password", "Change own password", body=identity_s.PASSWORD_CHANGE, status=204),
    op("GET", "/v3/roles", "List roles", query=("name", "domain_id")),
    op("POST", "/v3/roles", "Create role", body=identity_s.ROLE_CREATE, status=201, admin=True),
    op("GET", R, "Show role"),
    op("PATCH", R, "Update role", body=identity_s.ROLE_UPDATE, admin=True),
    op("DELETE", R, "Delete role", status=204, admin=True),
    op("GET", "/v3/role_assignments", "List role assignments",
       query=("user.id", "scope.project.id", "role.id", "effective", "include_names", "group.id", "scope.domain.id")),
    op("GET", "/v3/services", "List services", query=("type",)),
    op("GET", "/v3/services/{service_id}", "Show service"),
    op("GET", "/v3/endpoints", "List endpoints", query=("interface", "service_id", "region_id")),
    op("GET", "/v3/endpoints/{endpoint_id}", "Show endpoint"),
    op("GET", "/v3/regions", "List regions"),
    op("GET", "/v3/regions/{region_id}", "Show region"),
    # Application and EC2 credentials (their module lists its operations).
    *(op(m, p, summary, **kw) for m, p, summary, kw in identity_credentials_api.OPENAPI_OPS),
)

FAMILIES: dict[str, Family] = {
    "compute": Family("compute", "/compute", "Cumulo Compute API (Nova v2.1)", NOVA_FAULT, COMPUTE_OPS),
    "image": Family("image", "/image", "Cumulo Image API (Glance v2)", GLANCE_FAULT, IMAGE_OPS),
    "identity": Family("identity", "/identity", "Cumulo Identity API (Keystone v3)", KEYSTONE_FAULT, IDENTITY_OPS),
}


# ---- building the document --------------------------------------------------------------------

_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")


def resolve(spec: Spec, version: Version) -> Any:
    """The schema (or list of query names) a spec gives at this compute microversion."""
    if spec is None or isinstance(spec, dict):
        return spec
    if isinstance(spec, Versioned):
        return spec.for_version(version)
    if callable(spec):
        return spec(version)
    items: list[Any] = list(spec)
    if items and all(isinstance(i, tuple) and len(i) == 2 and isinstance(i[0], Version) for i in items):
        return rt.by_version(items, version)
    return items  # a plain list of query parameter names


def _query_parameters(spec: Spec, version: Version) -> list[Schema]:
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


def _operation(fam: Family, o: Op, version: Version) -> Schema:
    params: list[Schema] = [
        {"name": name, "in": "path", "required": True, "schema": fam.path_params.get(name, {"type": "string"})}
        for name in _PARAM.findall(o.path)
    ]
    params += _query_parameters(o.query, version)
    if fam.name == "compute":
        params.append(
            {
                "name": "OpenStack-API-Version",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "enum": [f"compute {version}"]},
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


def _available(o: Op, version: Version) -> bool:
    if o.since and version < v(o.since):
        return False
    return not (o.until and version > v(o.until))


def _parse_version(compute_version: str | Version) -> Version:
    if isinstance(compute_version, Version):
        return compute_version
    if compute_version == "latest":
        return MAX_VERSION
    return v(compute_version)


def build_openapi(
    services_or_none: Services | None,
    *,
    families: Sequence[str] = ("compute", "image"),
    compute_version: str | Version = "latest",
) -> dict[str, Any]:
    """The OpenAPI 3.1 document for `families`; paths are absolute from the cloud's root
    (e.g. /compute/v2.1/servers). With services, `servers` names the public URL."""
    version = _parse_version(compute_version)
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise ValueError(f"compute microversion {version} is outside {MIN_VERSION}..{MAX_VERSION}")
    paths: dict[str, dict[str, Any]] = {}
    components: dict[str, Schema] = {}
    for name in families:
        fam = FAMILIES[name]
        components[f"{name.capitalize()}Fault"] = fam.fault
        for o in fam.ops:
            if name == "compute" and not _available(o, version):
                continue
            path = fam.prefix + _PARAM.sub(r"{\1}", o.path)
            paths.setdefault(path, {})[o.method.lower()] = _operation(fam, o, version)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": " / ".join(FAMILIES[n].title for n in families),
            "version": "1.0",
            "x-openstack-compute-microversion": str(version),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"keystoneToken": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"}},
        },
        "security": [{"keystoneToken": []}],
        "tags": [{"name": n, "description": FAMILIES[n].title} for n in families],
    }
    if services_or_none is not None:
        doc["servers"] = [{"url": services_or_none.conf.public_url}]
    return doc


def openapi_route(family: str) -> Route:
    """GET /openapi.json for one family's app (so /compute/openapi.json, ...). No token needed:
    the document describes the API, not any project's data. ?microversion=X.Y picks another."""
    if family not in FAMILIES:
        raise KeyError(family)
    cache: dict[str, dict[str, Any]] = {}

    async def handler(request: Request) -> Response:
        asked = request.query_params.get("microversion", "latest")
        try:
            version = _parse_version(asked)
        except ValueError:
            raise errors.Invalid(f"Invalid microversion {asked!r}") from None
        if not MIN_VERSION <= version <= MAX_VERSION:
            raise errors.Invalid(f"Microversion {version} is outside {MIN_VERSION}..{MAX_VERSION}")
        key = str(version)
        if key not in cache:
            services = getattr(request.app.state, "services", None)
            cache[key] = build_openapi(services, families=(family,), compute_version=version)
        return json_response(cache[key])

    return Route("/openapi.json", handler, methods=["GET"])
