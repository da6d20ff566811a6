"""A deploy and a destroy through the cloud's own PaaS engine with DEPLOY's real plans and step kinds,
on the in-process cloud (fake driver): a tier without products (the recipes are PRODUCTS' kinds),
two nodes with floating IPs on the demo project's network, then the destroy that leaves nothing;
and a server that goes ERROR: the task fails at its "active" step with the fault and the rollback
leaves nothing of the deploy in Nova or Neutron. Real boots: tests/system/test_paas_*.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import sqlalchemy as sa
from occi_cloud import image

from cumulo.compute.service.listing import ListQuery
from cumulo.context import RequestContext, expand_roles
from cumulo.paas import models


async def demo_ctx(cloud: Any) -> RequestContext:
    project = (await cloud.services.identity.directory.list_projects({"name": "demo"}))[0]["id"]
    return RequestContext(user_id="paas-user", project_id=project, roles=expand_roles(["member"]))


def environment(image_id: str, initial: int = 2) -> dict[str, Any]:
    return {"name": "bare", "description": "", "tiers": [{
        "name": "web", "flavour": "m1.tiny", "image": image_id, "keypair": None, "floatingip": True, "region": None,
        "networks": [], "security_group": None, "affinity": None, "min": 1, "max": 3, "initial": initial,
        "products": [], "metadata": [], "policies": []}]}


async def leftovers(cloud: Any, ctx: RequestContext) -> dict[str, list[str]]:
    s = cloud.services
    rows, _f, _s = await s.compute.list_servers(ListQuery(project_id=ctx.project_id), with_faults=False,
                                                with_host_status=False)
    return {
        "servers": [r["display_name"] for r in rows if not r["deleted"] and r["display_name"].startswith("paas-")],
        "groups": [g["name"] for g in await s.network.list_groups(ctx) if g["name"].startswith("paas-")],
        "fips": [f["floating_ip_address"] for f in await s.network.list_floatingips(ctx)],
    }


async def test_deploy_then_destroy_leaves_nothing(cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient]
                                                  ) -> None:
    ctx = await demo_ctx(cloud)
    engine = cloud.paas_engine
    image_id = await image(as_ctx(ctx), "paas-bare")
    task = await engine.deploy(ctx, name="bare1", description="", environment=environment(image_id))
    final = await engine.wait(task["id"], timeout=120)
    assert final["status"] == "SUCCESS", final["error"]
    async with cloud.services.db.read() as conn:
        inst = dict((await conn.execute(sa.select(models.paas_env_instances))).mappings().one())
        nodes = [dict(r) for r in (await conn.execute(sa.select(models.paas_tier_instances)
                                                      .order_by(models.paas_tier_instances.c.replica))).mappings()]
    assert inst["status"] == "INSTALLED"
    assert [n["name"] for n in nodes] == ["bare1-web-1", "bare1-web-2"]
    assert all(n["server_id"] and n["ip"] and n["floating_ip"] for n in nodes)
    left = await leftovers(cloud, ctx)
    prefix = f"paas-{inst['id'][:8]}"
    assert sorted(left["servers"]) == [f"{prefix}-web-1", f"{prefix}-web-2"]
    assert sorted(left["groups"]) == [prefix, f"{prefix}-web"]
    assert sorted(left["fips"]) == sorted(n["floating_ip"] for n in nodes)

    task = await engine.destroy(ctx, inst)
    final = await engine.wait(task["id"], timeout=120)
    assert final["status"] == "SUCCESS", final["error"]
    assert await leftovers(cloud, ctx) == {"servers": [], "groups": [], "fips": []}
    async with cloud.services.db.read() as conn:
        assert not (await conn.execute(sa.select(models.paas_env_instances))).first()


async def test_a_server_in_error_fails_the_deploy_and_rolls_back(
    cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient]
) -> None:
    ctx = await demo_ctx(cloud)
    engine = cloud.paas_engine
    image_id = await image(as_ctx(ctx), "paas-broken", cumulo_fake_fail="spawn")
    task = await engine.deploy(ctx, name="broken", description="", environment=environment(image_id, initial=1))
    final = await engine.wait(task["id"], timeout=120)
    assert final["status"] == "ERROR"
    assert final["error"]["step"] == "active:web:1" and final["error"]["majorErrorCode"] == "active"
    assert "went to ERROR" in final["error"]["message"] and "spawn failed" in final["error"]["message"]
    assert await leftovers(cloud, ctx) == {"servers": [], "groups": [], "fips": []}
    async with cloud.services.db.read() as conn:
        inst = dict((await conn.execute(sa.select(models.paas_env_instances))).mappings().one())
    assert inst["status"] == "ERROR"
