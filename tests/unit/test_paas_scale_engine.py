"""A scale through the cloud's own PaaS engine with the real plans and step kinds, on the in-process
cloud (fake driver): the deploy takes the tier's template image; a scale-out boots the new nodes from
it with install skipped (the records say so) and reconfigures the tier that holds MEMBERS(web); a
named scale-in drains and removes exactly that node, keeping its row; the numbers are never reused;
the destroy deletes the template image with the rest. The fake driver's exec runs no recipe: that a
template image carries the installed files is tests/contract/test_paas_template_runc.py's, and the
whole path on runc is tests/system/test_paas_cli.py's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from occi_cloud import image
from test_paas_deploy_infra import demo_ctx, leftovers

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.paas import models

RECIPES = {"install": "echo install\n", "configure": "echo configure\n", "start": "echo start\n",
           "stop": "echo stop\n"}


def product(name: str, *attrs: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "version": "1.0", "attributes": list(attrs),
            "release": {"name": name, "version": "1.0", "metadata": [], "attributes": [], "recipes": RECIPES,
                        "builtin": False}}


def environment(image_id: str) -> dict[str, Any]:
    def tier(name: str, lo: int, hi: int, products: list[dict[str, Any]]) -> dict[str, Any]:
        return {"name": name, "flavour": "m1.tiny", "image": image_id, "keypair": None, "floatingip": name == "web",
                "region": None, "networks": [], "security_group": None, "affinity": None, "min": lo, "max": hi,
                "initial": 1, "products": products, "metadata": [], "policies": []}
    return {"name": "shop", "description": "", "tiers": [
        tier("backend", 1, 1, [product("kv", {"key": "ALLOW_FROM", "value": "MEMBERS(web)", "type": "MEMBERS"})]),
        tier("web", 1, 3, [product("www", {"key": "BACKENDS", "value": "IPALL(backend)", "type": "IPALL"})]),
    ]}


async def table(cloud: Any, t: sa.Table, *order: Any) -> list[dict[str, Any]]:
    async with cloud.services.db.read() as conn:
        return [dict(r) for r in (await conn.execute(sa.select(t).order_by(*order))).mappings()]


async def steps_of(cloud: Any, task_id: int) -> dict[str, dict[str, Any]]:
    s = models.paas_steps
    async with cloud.services.db.read() as conn:
        rows = (await conn.execute(sa.select(s).where(s.c.task_id == task_id))).mappings()
        return {r["key"]: dict(r) for r in rows}


async def test_scale_out_from_the_template_then_remove_a_named_node(
    cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient]
) -> None:
    ctx = await demo_ctx(cloud)
    engine = cloud.paas_engine
    image_id = await image(as_ctx(ctx), "paas-base")
    task = await engine.deploy(ctx, name="shop1", description="", environment=environment(image_id))
    final = await engine.wait(task["id"], timeout=120)
    assert final["status"] == "SUCCESS", final["error"]
    [tpl] = await table(cloud, models.paas_templates)
    assert (tpl["tier"], tpl["status"], tpl["source_node"]) == ("web", "active", "shop1-web-1")
    tpl_image = await cloud.services.images.get(ctx, tpl["image_id"])
    assert tpl_image["status"] == "active" and tpl_image["name"].endswith("-web-template")
    [inst] = await table(cloud, models.paas_env_instances)

    task = await engine.scale(ctx, inst, "web", count=3)
    final = await engine.wait(task["id"], timeout=120)
    assert final["status"] == "SUCCESS", final["error"]
    steps = await steps_of(cloud, task["id"])
    assert {k for k in steps if k.startswith("reconfigure:")} == {"reconfigure:backend:1:kv"}
    assert all(s["state"] == "DONE" for s in steps.values()), {k: s["state"] for k, s in steps.items()}
    ti = models.paas_tier_instances
    nodes = [n for n in await table(cloud, ti, ti.c.tier, ti.c.replica) if n["tier"] == "web"]
    assert [(n["replica"], n["from_template"]) for n in nodes] == [(1, None), (2, tpl["image_id"]), (3, tpl["image_id"])]
    servers = {n["server_id"]: n for n in nodes}
    for sid in servers:
        assert (await cloud.services.compute.get(ctx, sid))["vm_state"] == "active"
    new_servers = {nodes[1]["server_id"], nodes[2]["server_id"]}
    for sid in new_servers:  # booted from the template image
        assert (await cloud.services.compute.get(ctx, sid))["image_ref"] == tpl["image_id"]
    # the product records: install skipped on the template nodes, configure and start ran
    pi, er = models.paas_product_instances, models.paas_exec_records
    async with cloud.services.db.read() as conn:
        rows = (await conn.execute(
            sa.select(ti.c.replica, er.c.step, er.c.skipped_reason, er.c.exit_code)
            .select_from(er.join(pi, er.c.product_instance_id == pi.c.id).join(ti, pi.c.tier_instance_id == ti.c.id))
            .where(ti.c.tier == "web").order_by(er.c.id)
        )).all()
    for replica in (2, 3):
        mine = {step: (reason, code) for r, step, reason, code in rows if r == replica}
        assert mine["install"] == (f"template image {tpl['image_id']}", None), rows
        assert mine["configure"][0] is None and mine["start"][0] is None, rows
    assert [step for r, step, reason, _c in rows if r == 1 and step == "install" and reason is None] == ["install"]

    victim = nodes[1]
    task = await engine.scale(ctx, inst, "web", remove=victim["name"])
    final = await engine.wait(task["id"], timeout=120)
    assert final["status"] == "SUCCESS", final["error"]
    nodes = [n for n in await table(cloud, ti, ti.c.tier, ti.c.replica) if n["tier"] == "web"]
    assert [(n["replica"], n["status"], bool(n["server_id"])) for n in nodes] == [
        (1, nodes[0]["status"], True), (2, "UNDEPLOYED", False), (3, nodes[2]["status"], True)]
    with pytest.raises(errors.NotFound):
        await cloud.services.compute.get(ctx, victim["server_id"])
    assert victim["floating_ip"] not in {f["floating_ip_address"] for f in await cloud.services.network.list_floatingips(ctx)}
    # numbers are never reused; min is kept
    task = await engine.scale(ctx, inst, "web", count=3)
    assert (await engine.wait(task["id"], timeout=120))["status"] == "SUCCESS"
    nodes = [n for n in await table(cloud, ti, ti.c.tier, ti.c.replica) if n["tier"] == "web"]
    assert [n["replica"] for n in nodes if n["status"] != "UNDEPLOYED"] == [1, 3, 4]
    with pytest.raises(errors.Invalid, match="desired size 4 must be between min 1 and max 3"):
        await engine.scale(ctx, inst, "web", count=4)

    task = await engine.destroy(ctx, inst)
    final = await engine.wait(task["id"], timeout=120)
    assert final["status"] == "SUCCESS", final["error"]
    assert await leftovers(cloud, ctx) == {"servers": [], "groups": [], "fips": []}
    with pytest.raises(errors.NotFound):  # the template image went with the instance
        await cloud.services.images.get(ctx, tpl["image_id"])
