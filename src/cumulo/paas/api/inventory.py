"""/paas/rest/envInst/org/{org}/vdc/{vdc}/environmentInstance/...: the inventory.

Reads come straight from the tables (paas/inventory.py, scoped to the caller's project); writes go
through the engine (PaasEngineAPI) and answer 202 with the Task JSON and `Location: <task href>`
(Pegasus answered 200). A second operation while the instance has a running task is the engine's
Conflict: 409. Pegasus's paths:
- environmentInstance: GET (?status=, page/pageSize), POST EnvironmentInstanceDto {blueprintName,
  description, environmentDto: {name}, keepOnFailure} (+ `callback` header) -> deploy;
  .../{name}: GET, DELETE -> destroy.
- .../{name}/tierInstance: GET (?status=, ?tier=), POST TierDto {name} -> one more node of that tier;
  .../tierInstance/{node}: GET, DELETE -> remove that node.
- .../tierInstance/{node}/productInstance[/{name}]: GET (name "<node>_<product>_<version>" or the product).
- .../{name}/applicationInstance: GET, POST ApplicationReleaseDto {applicationName, version,
  artifactsDto: [{name, path: "data:application/gzip;base64,...", productReleaseDto: {productName}}]};
  .../applicationInstance/{app}: GET, DELETE.
Cumulo's extensions: POST .../{name}/tier/{tier}/scale {"count": N} or {"remove": "<node>"}, optional
"useTemplate": false; GET .../{name}/event[?tier=] (the autoscaler's decisions, oldest first).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cumulo import errors
from cumulo.paas import shapes
from cumulo.paas import shapes_inventory as views
from cumulo.paas.api.scope import Call, begin
from cumulo.paas.artifacts import discard, store_inline
from cumulo.paas.catalogue import check_name
from cumulo.paas.engine import plan
from cumulo.paas.engine.actions_net import named_networks
from cumulo.paas.engine.plan_scale import live_nodes
from cumulo.paas.inventory import REMOVED, Inventory
from cumulo.web.http import json_response

READ, WRITE = "paas:instance:read", "paas:instance:write"


def accepted(call: Call, task: dict[str, Any]) -> Response:
    body = shapes.render_task(task, call.base)
    return json_response(body, 202, {"Location": body["href"]})


def _inv(call: Call) -> Inventory:
    return Inventory(call.deps.catalogue.db)


def _tier_names(inst: dict[str, Any]) -> list[str]:
    return [t["name"] for t in (inst.get("environment") or {}).get("tiers") or []]


def _check_tier(inst: dict[str, Any], tier: str) -> None:
    if tier not in _tier_names(inst):
        raise errors.NotFound(f"tier {tier[:64]} not found in environment instance {inst['name']}")


async def list_instances(request: Request) -> Response:
    call = await begin(request, READ)
    inv = _inv(call)
    insts = call.page(await inv.instances(call.ctx, call.params("status")))
    ids = [i["id"] for i in insts]
    nodes, products = await inv.nodes(ids), await inv.products(ids)
    return json_response([views.render_env_instance(i, [n for n in nodes if n["env_instance_id"] == i["id"]], products)
                          for i in insts])


async def _check_networks(call: Call, environment: dict[str, Any]) -> None:
    """A tier's named networks must be the project's (or shared) now: a 400 naming the network at the
    POST (the engine's "net" step checks again: a network may vanish in between)."""
    services = call.deps.services
    if services is None:
        return
    for tier in plan.tiers_of(environment):
        await named_networks(services.network, call.ctx, tier)


async def create_instance(request: Request) -> Response:
    call = await begin(request, WRITE)
    body = shapes.as_object(await call.body(), "environmentInstance")
    name = check_name(shapes.as_text(body.get("blueprintName"), "blueprintName", required=True), "blueprintName")
    env = body.get("environmentDto")
    env_name = shapes.as_object(env, "environmentDto").get("name") if env is not None else body.get("environmentName")
    env_name = shapes.as_text(env_name, "environmentDto.name", required=True)
    description = shapes.as_text(body.get("description"), "description", max_len=4096) or ""
    keep = shapes.as_bool(body.get("keepOnFailure"), "keepOnFailure")
    callback = call.callback(body)
    try:
        await _inv(call).instance(call.ctx, name)
    except errors.NotFound:
        pass
    else:
        raise errors.Conflict(f"environment instance {name} already exists")
    try:
        snapshot = await call.deps.catalogue.snapshot(call.ctx, str(env_name))
    except errors.NotFound as exc:
        raise errors.Invalid(exc.message) from None
    await _check_networks(call, snapshot)
    task = await call.engine().deploy(call.ctx, name=name, description=description, environment=snapshot,
                               keep_on_failure=keep, callback=callback)
    return accepted(call, task)


async def show_instance(request: Request) -> Response:
    call = await begin(request, READ)
    inv = _inv(call)
    inst = await inv.instance(call.ctx, call.path("name"))
    return json_response(views.render_env_instance(inst, await inv.nodes([inst["id"]]), await inv.products([inst["id"]])))


async def delete_instance(request: Request) -> Response:
    call = await begin(request, WRITE)
    inst = await _inv(call).instance(call.ctx, call.path("name"))
    callback = call.callback()
    return accepted(call, await call.engine().destroy(call.ctx, inst, callback=callback))


async def list_nodes(request: Request) -> Response:
    call = await begin(request, READ)
    inv = _inv(call)
    inst = await inv.instance(call.ctx, call.path("name"))
    nodes = await inv.nodes([inst["id"]], call.params("status"))
    tier = call.param("tier")
    if tier is not None:
        nodes = [n for n in nodes if n["tier"] == tier]
    products = await inv.products([inst["id"]])
    return json_response([views.render_tier_instance(n, call.vdc, products.get(n["id"], ())) for n in call.page(nodes)])


async def _scale(call: Call, inst: dict[str, Any], tier: str, *, count: int | None = None, remove: str | None = None,
                 use_template: bool = True, callback: str | None = None) -> Response:
    task = await call.engine().scale(call.ctx, inst, tier, count=count, remove=remove, use_template=use_template,
                                     callback=callback)
    return accepted(call, task)


async def _live_count(call: Call, inst: dict[str, Any], tier: str) -> int:
    """The tier's size as the scale plan counts it."""
    return len(live_nodes(await _inv(call).nodes([inst["id"]]), tier))


async def add_node(request: Request) -> Response:
    call = await begin(request, WRITE)
    body = shapes.as_object(await call.body(), "tier")
    raw = body.get("name")
    if raw is None and isinstance(body.get("tierDto"), dict):
        raw = body["tierDto"].get("name")
    tier = str(shapes.as_text(raw, "tier name", required=True))
    callback = call.callback(body)
    inst = await _inv(call).instance(call.ctx, call.path("name"))
    _check_tier(inst, tier)
    return await _scale(call, inst, tier, count=await _live_count(call, inst, tier) + 1, callback=callback)


async def show_node(request: Request) -> Response:
    call = await begin(request, READ)
    inv = _inv(call)
    inst = await inv.instance(call.ctx, call.path("name"))
    node = await inv.node(inst, call.path("node"))
    products = (await inv.products([inst["id"]])).get(node["id"], [])
    records = await inv.records([p["id"] for p in products], tail=views.OUTPUT_TAIL)
    return json_response(views.render_tier_instance(node, call.vdc, products, records))


async def delete_node(request: Request) -> Response:
    call = await begin(request, WRITE)
    inv = _inv(call)
    inst = await inv.instance(call.ctx, call.path("name"))
    node = await inv.node(inst, call.path("node"))
    if node["status"] == REMOVED:
        raise errors.NotFound(f"tier instance {node['name']} was removed")
    return await _scale(call, inst, node["tier"], remove=node["name"], callback=call.callback())


async def _node_products(call: Call) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    inv = _inv(call)
    inst = await inv.instance(call.ctx, call.path("name"))
    node = await inv.node(inst, call.path("node"))
    return node, (await inv.products([inst["id"]])).get(node["id"], [])


async def list_products(request: Request) -> Response:
    call = await begin(request, READ)
    node, products = await _node_products(call)
    status = call.params("status")
    products = [p for p in products if not status or p["status"] in status]
    records = await _inv(call).records([p["id"] for p in products], tail=views.OUTPUT_TAIL)
    return json_response([views.render_product_instance(p, node, call.vdc, records.get(p["id"], ()))
                          for p in call.page(products)])


async def show_product(request: Request) -> Response:
    call = await begin(request, READ)
    node, products = await _node_products(call)
    wanted = call.path("product")
    for p in products:
        if wanted in (p["product"], views.product_instance_name(node["name"], p["product"], p["version"])):
            records = await _inv(call).records([p["id"]], tail=views.OUTPUT_TAIL)
            return json_response(views.render_product_instance(p, node, call.vdc, records.get(p["id"], ())))
    raise errors.NotFound(f"product instance {wanted[:64]} not found on tier instance {node['name']}")


async def list_applications(request: Request) -> Response:
    call = await begin(request, READ)
    inv = _inv(call)
    inst = await inv.instance(call.ctx, call.path("name"))
    apps = await inv.applications(inst)
    name = call.param("applicationName")
    status = call.params("status")
    apps = [a for a in apps if (name is None or a["name"] == name) and (not status or a["status"] in status)]
    return json_response([views.render_application(a) for a in call.page(apps)])


async def show_application(request: Request) -> Response:
    call = await begin(request, READ)
    inv = _inv(call)
    inst = await inv.instance(call.ctx, call.path("name"))
    return json_response(views.render_application(await inv.application(inst, call.path("app"))))


def _artifact_product(art: dict[str, Any], where: str) -> str:
    prod = art.get("productReleaseDto")
    name = shapes.as_object(prod, f"{where}: productReleaseDto").get("productName") if prod is not None else (
        art.get("productName"))
    return str(shapes.as_text(name, f"{where}: productReleaseDto.productName", required=True))


async def deploy_application(request: Request) -> Response:
    call = await begin(request, WRITE)
    body = shapes.as_object(await call.body(), "applicationRelease")
    name = check_name(shapes.as_text(body.get("applicationName"), "applicationName", required=True), "application")
    version = shapes.as_text(body.get("version"), "version", max_len=64) or ""
    arts = shapes.as_list(body.get("artifactsDto", body.get("artifacts")), "artifactsDto")
    if len(arts) != 1:
        raise errors.Invalid(f"an application carries exactly one artifact in artifactsDto, not {len(arts)}")
    art = shapes.as_object(arts[0], "artifactsDto[0]")
    product = _artifact_product(art, "artifactsDto[0]")
    path = art.get("path")
    if not isinstance(path, str) or not path:
        raise errors.Invalid("artifactsDto[0]: path is required (data:application/gzip;base64,<data>)")
    callback = call.callback(body)
    inst = await _inv(call).instance(call.ctx, call.path("name"))
    held = {p["name"] for t in (inst.get("environment") or {}).get("tiers") or [] for p in t.get("products") or []}
    if product not in held:
        raise errors.Invalid(f"product {product[:64]} is not installed in environment instance {inst['name']}")
    engine = call.engine()
    artifact = await store_inline(call.deps.conf, path)
    try:
        task = await engine.deploy_application(
            call.ctx, inst, {"name": name, "version": version, "product": product, "artifact": artifact},
            callback=callback)
    except errors.CumuloError:  # refused (busy, deployed already): the upload goes too
        await discard(call.deps.conf, call.deps.catalogue.db, artifact["sha256"])
        raise
    return accepted(call, task)


async def undeploy_application(request: Request) -> Response:
    call = await begin(request, WRITE)
    inv = _inv(call)
    inst = await inv.instance(call.ctx, call.path("name"))
    app = await inv.application(inst, call.path("app"))
    return accepted(call, await call.engine().undeploy_application(call.ctx, inst, app["name"],
                                                                   callback=call.callback()))


async def scale(request: Request) -> Response:
    call = await begin(request, WRITE)
    body = shapes.as_object(await call.body(), "scale")
    unknown = sorted(set(body) - {"count", "remove", "useTemplate", "callback"})
    if unknown:
        raise errors.Invalid(f"scale: unknown field {unknown[0][:64]!r} (count, remove, useTemplate)")
    count = shapes.as_int(body.get("count"), "count")
    remove = shapes.as_text(body.get("remove"), "remove")
    if (count is None) == (remove is None):
        raise errors.Invalid("scale: give either count (the tier's new number of nodes) or remove (a node's name)")
    if count is not None and count < 0:
        raise errors.Invalid(f"scale: count must be zero or more, not {count}")
    use_template = shapes.as_bool(body.get("useTemplate"), "useTemplate", default=True)
    callback = call.callback(body)
    inst = await _inv(call).instance(call.ctx, call.path("name"))
    tier = call.path("tier")
    _check_tier(inst, tier)
    if remove is not None:
        node = await _inv(call).node(inst, remove)
        if node["status"] == REMOVED:
            raise errors.NotFound(f"tier instance {remove} was removed")
        if node["tier"] != tier:
            raise errors.Invalid(f"node {remove} is in tier {node['tier']}, not {tier}")
    return await _scale(call, inst, tier, count=count, remove=remove, use_template=use_template, callback=callback)


async def list_events(request: Request) -> Response:
    call = await begin(request, READ)
    inv = _inv(call)
    inst = await inv.instance(call.ctx, call.path("name"))
    events = await inv.events(call.ctx, inst, call.param("tier"))
    return json_response([views.render_event(e) for e in call.page(events)])


def routes(root: str) -> list[BaseRoute]:
    inst = f"{root}/envInst/org/{{org}}/vdc/{{vdc}}/environmentInstance"
    one = f"{inst}/{{name}}"
    node = f"{one}/tierInstance/{{node}}"
    return [
        Route(inst, list_instances, methods=["GET"]),
        Route(inst, create_instance, methods=["POST"]),
        Route(one, show_instance, methods=["GET"]),
        Route(one, delete_instance, methods=["DELETE"]),
        Route(f"{one}/tierInstance", list_nodes, methods=["GET"]),
        Route(f"{one}/tierInstance", add_node, methods=["POST"]),
        Route(node, show_node, methods=["GET"]),
        Route(node, delete_node, methods=["DELETE"]),
        Route(f"{node}/productInstance", list_products, methods=["GET"]),
        Route(f"{node}/productInstance/{{product}}", show_product, methods=["GET"]),
        Route(f"{one}/applicationInstance", list_applications, methods=["GET"]),
        Route(f"{one}/applicationInstance", deploy_application, methods=["POST"]),
        Route(f"{one}/applicationInstance/{{app}}", show_application, methods=["GET"]),
        Route(f"{one}/applicationInstance/{{app}}", undeploy_application, methods=["DELETE"]),
        Route(f"{one}/tier/{{tier}}/scale", scale, methods=["POST"]),
        Route(f"{one}/event", list_events, methods=["GET"]),
    ]
