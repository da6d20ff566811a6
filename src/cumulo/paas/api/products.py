"""Pegasus's product-level inventory writes (PAAS.md 1.2), each an engine task answered 202 with the
Task JSON (engine/plan_products.py has the semantics):

- PUT .../environmentInstance/{name}/tierInstance, a TierInstanceDto: "scale reconfigure".
  `tierDto.name` names the tier (or `tierInstanceName` one of its nodes: its tier is meant; the
  values are the tier's, so every node of it is reconfigured). New values:
  `productInstanceDtos: [{productReleaseDto: {productName}, attributes: [{key, value[, type]}]}]`
  for one product each, and/or `attributes: [...]` for every product of the tier holding that key.
- POST .../tierInstance/{node}/productInstance, a ProductInstanceDto
  {productReleaseDto: {productName, version}, attributes}: install that release on that node.
- DELETE .../tierInstance/{node}/productInstance/{name} (name "<node>_<product>_<version>" or the
  product's): stop and uninstall a product POST added.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cumulo import errors
from cumulo.paas import shapes
from cumulo.paas import shapes_inventory as views
from cumulo.paas.api.inventory import WRITE, accepted
from cumulo.paas.api.scope import begin
from cumulo.paas.catalogue import check_attributes
from cumulo.paas.inventory import REMOVED, Inventory


def _attrs(value: Any, where: str) -> list[dict[str, Any]]:
    attrs = [shapes.parse_attribute(a, f"{where}[{i}]") for i, a in enumerate(shapes.as_list(value, where))]
    check_attributes(attrs, where)
    return attrs


def _product_name(dto: dict[str, Any], where: str) -> tuple[str, str | None]:
    rel = dto.get("productReleaseDto")
    src = shapes.as_object(rel, f"{where}.productReleaseDto") if rel is not None else dto
    name = shapes.as_text(src.get("productName", src.get("name")), f"{where}.productReleaseDto.productName",
                          required=True)
    version = shapes.as_text(src.get("version"), f"{where}.productReleaseDto.version", max_len=64)
    return str(name), version


async def reconfigure(request: Request) -> Response:
    call = await begin(request, WRITE)
    body = shapes.as_object(await call.body(), "tierInstance")
    inv = Inventory(call.deps.catalogue.db)
    inst = await inv.instance(call.ctx, call.path("name"))
    tier = None
    if body.get("tierDto") is not None:
        tier = shapes.as_text(shapes.as_object(body["tierDto"], "tierDto").get("name"), "tierDto.name")
    node_name = shapes.as_text(body.get("tierInstanceName"), "tierInstanceName")
    if node_name is not None:
        node = await inv.node(inst, node_name)
        if node["status"] == REMOVED:
            raise errors.NotFound(f"tier instance {node_name} was removed")
        if tier is not None and tier != node["tier"]:
            raise errors.Invalid(f"tier instance {node_name} is in tier {node['tier']}, not {tier}")
        tier = str(node["tier"])
    if tier is None:
        raise errors.Invalid("tierInstance: name the tier (tierDto.name) or a node of it (tierInstanceName)")
    spec = next((t for t in (inst.get("environment") or {}).get("tiers") or [] if t["name"] == tier), None)
    if spec is None:
        raise errors.NotFound(f"tier {tier[:64]} not found in environment instance {inst['name']}")
    values: dict[str, list[dict[str, Any]]] = {}
    for i, dto in enumerate(shapes.as_list(body.get("productInstanceDtos"), "productInstanceDtos")):
        where = f"productInstanceDtos[{i}]"
        d = shapes.as_object(dto, where)
        product, _version = _product_name(d, where)
        values.setdefault(product, []).extend(_attrs(d.get("attributes"), f"{where}.attributes"))
    for attr in _attrs(body.get("attributes"), "attributes"):
        holders = [p["name"] for p in spec.get("products") or []
                   if any(a.get("key") == attr["key"] for a in p.get("attributes") or [])]
        if not holders:
            raise errors.Invalid(f"attributes: no product of tier {tier} has attribute {attr['key']}")
        for product in holders:
            values.setdefault(product, []).append(attr)
    values = {p: a for p, a in values.items() if a}
    task = await call.engine().reconfigure_tier(call.ctx, inst, tier, values, callback=call.callback(body))
    return accepted(call, task)


async def install(request: Request) -> Response:
    call = await begin(request, WRITE)
    body = shapes.as_object(await call.body(), "productInstance")
    product, version = _product_name(body, "productInstance")
    attrs = _attrs(body.get("attributes"), "attributes")
    inv = Inventory(call.deps.catalogue.db)
    inst = await inv.instance(call.ctx, call.path("name"))
    node = await inv.node(inst, call.path("node"))
    entry = await call.deps.catalogue.product_entry(call.ctx, product, version, attrs, f"tier instance {node['name']}")
    task = await call.engine().install_product(call.ctx, inst, node["name"], entry, callback=call.callback(body))
    return accepted(call, task)


async def uninstall(request: Request) -> Response:
    call = await begin(request, WRITE)
    inv = Inventory(call.deps.catalogue.db)
    inst = await inv.instance(call.ctx, call.path("name"))
    node = await inv.node(inst, call.path("node"))
    wanted = call.path("product")
    for p in (await inv.products([inst["id"]])).get(node["id"], []):
        if wanted in (p["product"], views.product_instance_name(node["name"], p["product"], p["version"])):
            task = await call.engine().uninstall_product(call.ctx, inst, node["name"], p["product"],
                                                         callback=call.callback())
            return accepted(call, task)
    raise errors.NotFound(f"product instance {wanted[:64]} not found on tier instance {node['name']}")


def routes(root: str) -> list[BaseRoute]:
    one = f"{root}/envInst/org/{{org}}/vdc/{{vdc}}/environmentInstance/{{name}}"
    node = f"{one}/tierInstance/{{node}}"
    return [
        Route(f"{one}/tierInstance", reconfigure, methods=["PUT"]),
        Route(f"{node}/productInstance", install, methods=["POST"]),
        Route(f"{node}/productInstance/{{product}}", uninstall, methods=["DELETE"]),
    ]
