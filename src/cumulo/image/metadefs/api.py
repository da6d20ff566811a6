"""Routes of the metadata definitions catalog (/v2/metadefs/...) and its schemas
(/v2/schemas/metadefs/...), in Glance's fault format (the image family app renders errors)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cumulo import errors, policy
from cumulo.context import RequestContext
from cumulo.db import Database
from cumulo.image.deps import services_of
from cumulo.image.metadefs import children, namespaces, schemas
from cumulo.web.http import authenticate, base_url, empty, json_body, json_response

# Glance's default metadef policies: reads for any reader (namespace visibility applies), writes admin-only.
POLICY_RULES = {
    "image:get_metadef_namespaces": policy.READER,
    "image:get_metadef_namespace": policy.READER,
    "image:add_metadef_namespace": policy.ADMIN,
    "image:modify_metadef_namespace": policy.ADMIN,
    "image:delete_metadef_namespace": policy.ADMIN,
    "image:get_metadef_objects": policy.READER,
    "image:get_metadef_object": policy.READER,
    "image:add_metadef_object": policy.ADMIN,
    "image:modify_metadef_object": policy.ADMIN,
    "image:delete_metadef_object": policy.ADMIN,
    "image:get_metadef_properties": policy.READER,
    "image:get_metadef_property": policy.READER,
    "image:add_metadef_property": policy.ADMIN,
    "image:modify_metadef_property": policy.ADMIN,
    "image:remove_metadef_property": policy.ADMIN,
    "image:get_metadef_tags": policy.READER,
    "image:get_metadef_tag": policy.READER,
    "image:add_metadef_tag": policy.ADMIN,
    "image:add_metadef_tags": policy.ADMIN,
    "image:modify_metadef_tag": policy.ADMIN,
    "image:delete_metadef_tag": policy.ADMIN,
    "image:delete_metadef_tags": policy.ADMIN,
    "image:list_metadef_resource_types": policy.READER,
    "image:get_metadef_resource_type": policy.READER,
    "image:add_metadef_resource_type_association": policy.ADMIN,
    "image:remove_metadef_resource_type_association": policy.ADMIN,
}
policy.register(POLICY_RULES)

NS = "/v2/metadefs/namespaces"


def _db(request: Request) -> Database:
    db: Database = services_of(request).images.db
    return db


async def _ctx(request: Request, rule: str) -> RequestContext:
    ctx = await authenticate(request)
    policy.authorize(ctx, f"image:{rule}")
    return ctx


def _ns(request: Request) -> str:
    return str(request.path_params["namespace"])


# ---- namespaces -------------------------------------------------------------------------------


async def list_namespaces(request: Request) -> Response:
    ctx = await _ctx(request, "get_metadef_namespaces")
    params = dict(request.query_params)
    found, next_marker = await namespaces.list_namespaces(_db(request), ctx, params)
    without_marker = [(k, v) for k, v in request.query_params.multi_items() if k != "marker"]
    body: dict[str, Any] = {
        "namespaces": found,
        "first": NS + (f"?{urlencode(without_marker)}" if without_marker else ""),
        "schema": "/v2/schemas/metadefs/namespaces",
    }
    if next_marker is not None:
        body["next"] = f"{NS}?" + urlencode([*without_marker, ("marker", next_marker)])
    return json_response(body)


async def create_namespace(request: Request) -> Response:
    ctx = await _ctx(request, "add_metadef_namespace")
    found = await namespaces.create_namespace(_db(request), ctx, await json_body(request))
    location = base_url(request) + namespaces.namespace_href(found["namespace"])
    return json_response(found, status=201, headers={"Location": location})


async def show_namespace(request: Request) -> Response:
    ctx = await _ctx(request, "get_metadef_namespace")
    rt = request.query_params.get("resource_type")
    return json_response(await namespaces.show_namespace(_db(request), ctx, _ns(request), rt))


async def update_namespace(request: Request) -> Response:
    ctx = await _ctx(request, "modify_metadef_namespace")
    return json_response(await namespaces.update_namespace(_db(request), ctx, _ns(request), await json_body(request)))


async def delete_namespace(request: Request) -> Response:
    ctx = await _ctx(request, "delete_metadef_namespace")
    await namespaces.delete_namespace(_db(request), ctx, _ns(request))
    return empty(204)


# ---- resource types ---------------------------------------------------------------------------


async def list_resource_types(request: Request) -> Response:
    await _ctx(request, "list_metadef_resource_types")
    return json_response({"resource_types": await namespaces.list_resource_types(_db(request))})


async def list_associations(request: Request) -> Response:
    ctx = await _ctx(request, "get_metadef_resource_type")
    found = await namespaces.list_associations(_db(request), ctx, _ns(request))
    return json_response({"resource_type_associations": found})


async def create_association(request: Request) -> Response:
    ctx = await _ctx(request, "add_metadef_resource_type_association")
    found = await namespaces.create_association(_db(request), ctx, _ns(request), await json_body(request))
    return json_response(found, status=201)


async def delete_association(request: Request) -> Response:
    ctx = await _ctx(request, "remove_metadef_resource_type_association")
    await namespaces.delete_association(_db(request), ctx, _ns(request), request.path_params["resource_type"])
    return empty(204)


# ---- objects ----------------------------------------------------------------------------------


async def list_objects(request: Request) -> Response:
    ctx = await _ctx(request, "get_metadef_objects")
    found = await children.list_objects(_db(request), ctx, _ns(request))
    return json_response({"objects": found, "schema": "/v2/schemas/metadefs/objects"})


async def create_object(request: Request) -> Response:
    ctx = await _ctx(request, "add_metadef_object")
    found = await children.create_object(_db(request), ctx, _ns(request), await json_body(request))
    return json_response(found, status=201)


async def show_object(request: Request) -> Response:
    ctx = await _ctx(request, "get_metadef_object")
    return json_response(await children.show_object(_db(request), ctx, _ns(request), request.path_params["name"]))


async def update_object(request: Request) -> Response:
    ctx = await _ctx(request, "modify_metadef_object")
    body = await json_body(request)
    return json_response(await children.update_object(_db(request), ctx, _ns(request), request.path_params["name"], body))


async def delete_object(request: Request) -> Response:
    ctx = await _ctx(request, "delete_metadef_object")
    await children.delete_object(_db(request), ctx, _ns(request), request.path_params["name"])
    return empty(204)


async def delete_objects(request: Request) -> Response:
    ctx = await _ctx(request, "delete_metadef_object")
    await children.delete_all(_db(request), ctx, _ns(request), "objects")
    return empty(204)


# ---- properties -------------------------------------------------------------------------------


async def list_properties(request: Request) -> Response:
    ctx = await _ctx(request, "get_metadef_properties")
    return json_response({"properties": await children.list_properties(_db(request), ctx, _ns(request))})


async def create_property(request: Request) -> Response:
    ctx = await _ctx(request, "add_metadef_property")
    found = await children.create_property(_db(request), ctx, _ns(request), await json_body(request))
    return json_response(found, status=201)


async def show_property(request: Request) -> Response:
    ctx = await _ctx(request, "get_metadef_property")
    rt = request.query_params.get("resource_type")
    found = await children.show_property(_db(request), ctx, _ns(request), request.path_params["name"], rt)
    return json_response(found)


async def update_property(request: Request) -> Response:
    ctx = await _ctx(request, "modify_metadef_property")
    body = await json_body(request)
    found = await children.update_property(_db(request), ctx, _ns(request), request.path_params["name"], body)
    return json_response(found)


async def delete_property(request: Request) -> Response:
    ctx = await _ctx(request, "remove_metadef_property")
    await children.delete_property(_db(request), ctx, _ns(request), request.path_params["name"])
    return empty(204)


async def delete_properties(request: Request) -> Response:
    ctx = await _ctx(request, "remove_metadef_property")
    await children.delete_all(_db(request), ctx, _ns(request), "properties")
    return empty(204)


# ---- tags -------------------------------------------------------------------------------------


async def list_tags(request: Request) -> Response:
    ctx = await _ctx(request, "get_metadef_tags")
    return json_response({"tags": await children.list_tags(_db(request), ctx, _ns(request))})


async def create_tags(request: Request) -> Response:
    ctx = await _ctx(request, "add_metadef_tags")
    append = (request.headers.get("x-openstack-append") or "").strip().lower() in ("true", "1", "yes", "on")
    found = await children.create_tags(_db(request), ctx, _ns(request), await json_body(request), append)
    return json_response({"tags": found}, status=201)


async def create_tag(request: Request) -> Response:
    ctx = await _ctx(request, "add_metadef_tag")
    return json_response(
        await children.create_tag(_db(request), ctx, _ns(request), request.path_params["name"]), status=201
    )


async def show_tag(request: Request) -> Response:
    ctx = await _ctx(request, "get_metadef_tag")
    return json_response(await children.show_tag(_db(request), ctx, _ns(request), request.path_params["name"]))


async def update_tag(request: Request) -> Response:
    ctx = await _ctx(request, "modify_metadef_tag")
    body = await json_body(request)
    return json_response(await children.update_tag(_db(request), ctx, _ns(request), request.path_params["name"], body))


async def delete_tag(request: Request) -> Response:
    ctx = await _ctx(request, "delete_metadef_tag")
    await children.delete_tag(_db(request), ctx, _ns(request), request.path_params["name"])
    return empty(204)


async def delete_tags(request: Request) -> Response:
    ctx = await _ctx(request, "delete_metadef_tags")
    await children.delete_all(_db(request), ctx, _ns(request), "tags")
    return empty(204)


# ---- schemas ----------------------------------------------------------------------------------


async def show_schema(request: Request) -> Response:
    await authenticate(request)
    build = schemas.SCHEMAS.get(request.path_params["kind"])
    if build is None:
        raise errors.NotFound("The resource could not be found.")
    return json_response(build())


N = NS + "/{namespace}"
ROUTES: list[BaseRoute] = [
    Route("/v2/schemas/metadefs/{kind}", show_schema, methods=["GET"]),
    Route("/v2/metadefs/resource_types", list_resource_types, methods=["GET"]),
    Route(NS, list_namespaces, methods=["GET"]),
    Route(NS, create_namespace, methods=["POST"]),
    Route(N, show_namespace, methods=["GET"]),
    Route(N, update_namespace, methods=["PUT"]),
    Route(N, delete_namespace, methods=["DELETE"]),
    Route(f"{N}/resource_types", list_associations, methods=["GET"]),
    Route(f"{N}/resource_types", create_association, methods=["POST"]),
    Route(f"{N}/resource_types/{{resource_type}}", delete_association, methods=["DELETE"]),
    Route(f"{N}/objects", list_objects, methods=["GET"]),
    Route(f"{N}/objects", create_object, methods=["POST"]),
    Route(f"{N}/objects", delete_objects, methods=["DELETE"]),
    Route(f"{N}/objects/{{name}}", show_object, methods=["GET"]),
    Route(f"{N}/objects/{{name}}", update_object, methods=["PUT"]),
    Route(f"{N}/objects/{{name}}", delete_object, methods=["DELETE"]),
    Route(f"{N}/properties", list_properties, methods=["GET"]),
    Route(f"{N}/properties", create_property, methods=["POST"]),
    Route(f"{N}/properties", delete_properties, methods=["DELETE"]),
    Route(f"{N}/properties/{{name}}", show_property, methods=["GET"]),
    Route(f"{N}/properties/{{name}}", update_property, methods=["PUT"]),
    Route(f"{N}/properties/{{name}}", delete_property, methods=["DELETE"]),
    Route(f"{N}/tags", list_tags, methods=["GET"]),
    Route(f"{N}/tags", create_tags, methods=["POST"]),
    Route(f"{N}/tags", delete_tags, methods=["DELETE"]),
    Route(f"{N}/tags/{{name}}", show_tag, methods=["GET"]),
    Route(f"{N}/tags/{{name}}", create_tag, methods=["POST"]),
    Route(f"{N}/tags/{{name}}", update_tag, methods=["PUT"]),
    Route(f"{N}/tags/{{name}}", delete_tag, methods=["DELETE"]),
]


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return schemas.inlined(schemas.request_schema(schema))


_LIST_QUERY = ("limit", "marker", "sort_key", "sort_dir", "visibility", "resource_types")
_TAGS_BODY = {
    "type": "object",
    "properties": {"tags": {"type": "array", "items": _body(schemas.tag_schema())}},
    "required": ["tags"],
    "additionalProperties": False,
}
# The catalog's operations for the OpenAPI document (cumulo.web.openapi builds Ops from these):
# (method, path, summary, Op keyword arguments).
OPENAPI_OPS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("GET", "/v2/schemas/metadefs/{kind}", "Metadefs schema", {}),
    ("GET", "/v2/metadefs/resource_types", "List resource types", {}),
    ("GET", NS, "List metadef namespaces", {"query": _LIST_QUERY}),
    ("POST", NS, "Create metadef namespace", {"body": _body(schemas.namespace_schema()), "status": 201, "admin": True}),
    ("GET", N, "Show metadef namespace", {"query": ("resource_type",)}),
    ("PUT", N, "Update metadef namespace", {"body": _body(schemas.namespace_schema()), "admin": True}),
    ("DELETE", N, "Delete metadef namespace", {"status": 204, "admin": True}),
    ("GET", f"{N}/resource_types", "List resource type associations", {}),
    ("POST", f"{N}/resource_types", "Create resource type association",
     {"body": _body(schemas.resource_type_association_schema()), "status": 201, "admin": True}),
    ("DELETE", f"{N}/resource_types/{{resource_type}}", "Delete resource type association",
     {"status": 204, "admin": True}),
    ("GET", f"{N}/objects", "List metadef objects", {}),
    ("POST", f"{N}/objects", "Create metadef object", {"body": _body(schemas.object_schema()), "status": 201,
                                                       "admin": True}),
    ("DELETE", f"{N}/objects", "Delete all metadef objects", {"status": 204, "admin": True}),
    ("GET", f"{N}/objects/{{name}}", "Show metadef object", {}),
    ("PUT", f"{N}/objects/{{name}}", "Update metadef object", {"body": _body(schemas.object_schema()), "admin": True}),
    ("DELETE", f"{N}/objects/{{name}}", "Delete metadef object", {"status": 204, "admin": True}),
    ("GET", f"{N}/properties", "List metadef properties", {}),
    ("POST", f"{N}/properties", "Create metadef property", {"body": _body(schemas.property_schema()), "status": 201,
                                                            "admin": True}),
    ("DELETE", f"{N}/properties", "Delete all metadef properties", {"status": 204, "admin": True}),
    ("GET", f"{N}/properties/{{name}}", "Show metadef property", {"query": ("resource_type",)}),
    ("PUT", f"{N}/properties/{{name}}", "Update metadef property", {"body": _body(schemas.property_schema()),
                                                                    "admin": True}),
    ("DELETE", f"{N}/properties/{{name}}", "Delete metadef property", {"status": 204, "admin": True}),
    ("GET", f"{N}/tags", "List metadef tags", {}),
    ("POST", f"{N}/tags", "Create metadef tags", {"body": _TAGS_BODY, "status": 201, "admin": True}),
    ("DELETE", f"{N}/tags", "Delete all metadef tags", {"status": 204, "admin": True}),
    ("GET", f"{N}/tags/{{name}}", "Show metadef tag", {}),
    ("POST", f"{N}/tags/{{name}}", "Create metadef tag", {"status": 201, "admin": True}),
    ("PUT", f"{N}/tags/{{name}}", "Update metadef tag", {"body": _body(schemas.tag_schema()), "admin": True}),
    ("DELETE", f"{N}/tags/{{name}}", "Delete metadef tag", {"status": 204, "admin": True}),
)
