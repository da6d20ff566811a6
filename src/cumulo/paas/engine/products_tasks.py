"""The engine's product-level tasks (Pegasus's PUT tierInstance, POST and DELETE productInstance):
each validates against the inventory, plans (engine/plan_products.py) and submits through the
engine's one-write `_submit` (task, rows, steps, the new snapshot) like every other task. Only an
INSTALLED instance takes them (Conflict otherwise, or while another task runs on it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.paas.engine import plan_products as pp
from cumulo.paas.engine.base import Status, TaskKind
from cumulo.paas.models import paas_product_instances

PaasEngine = Any  # engine/runner.py's PaasEngine (its _check_callback, _inventory, _submit); no import circle


async def _installed(engine: PaasEngine, ctx: RequestContext, instance: Mapping[str, Any],
                     callback: str | None) -> dict[str, Any]:
    await engine._check_callback(callback)
    inv: dict[str, Any] = await engine._inventory(str(instance["id"]), ctx.project_id)
    inst = inv["instance"]
    if inst["status"] != Status.INSTALLED.value:
        raise errors.Conflict(f"environment instance {inst['name']} is {inst['status']}; only an INSTALLED "
                              "instance takes product changes")
    return inv


def _node(inv: Mapping[str, Any], name: str) -> dict[str, Any]:
    node = next((n for n in inv["nodes"] if n["name"] == name), None)
    if node is None or node["status"] == Status.UNDEPLOYED.value:
        raise errors.NotFound(f"tier instance {name[:80]} not found in environment instance {inv['instance']['name']}")
    return dict(node)


async def _products_of(engine: PaasEngine, node_id: str) -> list[dict[str, Any]]:
    pi = paas_product_instances.c
    async with engine.db.read() as conn:
        rows = (await conn.execute(sa.select(paas_product_instances).where(pi.tier_instance_id == node_id))).mappings()
        return [dict(r) for r in rows]


async def reconfigure_tier(engine: PaasEngine, ctx: RequestContext, instance: Mapping[str, Any], tier: str,
                           values: Mapping[str, Sequence[Mapping[str, Any]]], *, callback: str | None = None
                           ) -> dict[str, Any]:
    inv = await _installed(engine, ctx, instance, callback)
    inst = inv["instance"]
    plan, env = pp.reconfigure_plan(inst, inv["nodes"], tier, values)
    keys = sorted({str(a["key"]) for attrs in values.values() for a in attrs})
    task: dict[str, Any] = await engine._submit(
        ctx, inst, TaskKind.RECONFIGURE, plan, callback=callback, tier=tier,
        description=f"Scale reconfigure tier {tier} of {inst['name']}: {', '.join(keys)}",
        params={"products": sorted(values)}, environment=env)
    return task


async def install_product(engine: PaasEngine, ctx: RequestContext, instance: Mapping[str, Any], node: str,
                          entry: Mapping[str, Any], *, callback: str | None = None) -> dict[str, Any]:
    inv = await _installed(engine, ctx, instance, callback)
    inst = inv["instance"]
    row = _node(inv, node)
    plan, env = pp.install_plan(inst, row, await _products_of(engine, str(row["id"])), entry)
    task: dict[str, Any] = await engine._submit(
        ctx, inst, TaskKind.INSTALL_PRODUCT, plan, callback=callback, tier=str(row["tier"]),
        description=f"Install product {entry['name']}-{entry.get('version')} on {node}",
        params={"node": node, "product": str(entry["name"])}, environment=env)
    return task


async def uninstall_product(engine: PaasEngine, ctx: RequestContext, instance: Mapping[str, Any], node: str,
                            product: str, *, callback: str | None = None) -> dict[str, Any]:
    inv = await _installed(engine, ctx, instance, callback)
    inst = inv["instance"]
    row = _node(inv, node)
    pi = next((p for p in await _products_of(engine, str(row["id"])) if p["product"] == product), None)
    if pi is None:
        raise errors.NotFound(f"product instance {product[:80]} not found on tier instance {node}")
    plan = pp.uninstall_plan(inst, row, pi)
    task: dict[str, Any] = await engine._submit(
        ctx, inst, TaskKind.UNINSTALL_PRODUCT, plan, callback=callback, tier=str(row["tier"]),
        description=f"Uninstall product {product} from {node}", params={"node": node, "product": product})
    return task
