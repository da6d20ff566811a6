"""The network family's OpenAPI operations (`cumulo.web.openapi` builds the document from them).

One `Op` per route of `network.api` (L3's facets add theirs to `L3_OPS`). Bodies are Neutron's
`{"<resource>": {...}}` objects; the service checks the attributes (see docs/api-coverage.md).
"""

from __future__ import annotations

from cumulo.web.openapi import Family, Op, Schema, op

NEUTRON_FAULT: Schema = {
    "description": 'Neutron fault: {"NeutronError": {"type": "NetworkNotFound", "message": "...", "detail": ""}}',
    "type": "object",
    "properties": {
        "NeutronError": {
            "type": "object",
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}, "detail": {"type": "string"}},
            "required": ["type", "message", "detail"],
        }
    },
    "required": ["NeutronError"],
}

_LIST_QUERY = ("fields", "sort_key", "sort_dir", "limit", "marker", "page_reverse", "tags", "tags-any", "not-tags",
               "not-tags-any", "name", "id", "project_id", "tenant_id")


def _wrapped(resource: str) -> Schema:
    return {"type": "object", "properties": {resource: {"type": "object"}}, "required": [resource]}


def _crud(resource: str, collection: str) -> tuple[Op, ...]:
    item = f"/v2.0/{collection}/{{{resource}_id}}"
    return (
        op("GET", f"/v2.0/{collection}", f"List {collection}", query=_LIST_QUERY),
        op("POST", f"/v2.0/{collection}", f"Create {resource}", body=_wrapped(resource), status=201),
        op("GET", item, f"Show {resource}", query=("fields",)),
        op("PUT", item, f"Update {resource}", body=_wrapped(resource)),
        op("DELETE", item, f"Delete {resource}", status=204),
    )


_TAGS = "/v2.0/{collection}/{resource_id}/tags"

NETWORK_OPS: tuple[Op, ...] = (
    op("GET", "/", "List API versions"),  # (GET /v2.0/ would share its operation id; left out)
    op("GET", "/v2.0/extensions", "List extensions"),
    op("GET", "/v2.0/extensions/{alias}", "Show extension"),
    *_crud("network", "networks"),
    *_crud("subnet", "subnets"),
    *_crud("port", "ports"),
    op("GET", "/v2.0/quotas", "List quotas", admin=True),
    op("GET", "/v2.0/quotas/{project_id}", "Show quota"),
    op("PUT", "/v2.0/quotas/{project_id}", "Update quota", body=_wrapped("quota"), admin=True),
    op("DELETE", "/v2.0/quotas/{project_id}", "Reset quota", status=204, admin=True),
    op("GET", "/v2.0/quotas/{project_id}/default", "Show default quota"),
    op("GET", "/v2.0/quotas/{project_id}/details.json", "Show quota details"),
    op("GET", _TAGS, "List tags"),
    op("PUT", _TAGS, "Replace tags", body={"type": "object", "properties": {"tags": {"type": "array"}}}),
    op("DELETE", _TAGS, "Remove all tags", status=204),
    op("GET", _TAGS + "/{tag}", "Confirm tag", status=204),
    op("PUT", _TAGS + "/{tag}", "Add a tag", status=201),
    op("DELETE", _TAGS + "/{tag}", "Remove a tag", status=204),
    *_crud("subnetpool", "subnetpools"),
    op("GET", "/v2.0/auto-allocated-topology/{project_id}", "Show (and make) the auto-allocated topology",
       query=("fields",)),
    op("DELETE", "/v2.0/auto-allocated-topology/{project_id}", "Delete the auto-allocated topology", status=204),
)

# Routers, floating IPs and security groups (L3API) append their operations here.
L3_OPS: list[Op] = [
    *_crud("router", "routers"),
    op("PUT", "/v2.0/routers/{router_id}/add_router_interface", "Add an interface to a router",
       body={"type": "object", "properties": {"subnet_id": {"type": "string"}, "port_id": {"type": "string"}}}),
    op("PUT", "/v2.0/routers/{router_id}/remove_router_interface", "Remove an interface from a router",
       body={"type": "object", "properties": {"subnet_id": {"type": "string"}, "port_id": {"type": "string"}}}),
    *_crud("floatingip", "floatingips"),
    *_crud("security_group", "security-groups"),
    *_crud("security_group_rule", "security-group-rules"),
]


def family() -> Family:
    return Family("network", "/networking", "Cumulo Networking API (Neutron v2.0)", NEUTRON_FAULT,
                  (*NETWORK_OPS, *L3_OPS))
