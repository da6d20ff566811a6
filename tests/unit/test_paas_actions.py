"""DEPLOY's infrastructure step kinds (network, secgroup, server, active, fip, finish) on the
in-process cloud (real services, fake driver), each action run as the runner runs it, through a
StepRun of this file and the engine's ledger (paas_resources): the demo project's network behind
router1, security groups whose rules are the products' open ports, a server made once even when
its step runs twice (adopt), a floating IP on the node's port, and a server going ERROR failing
its "active" step with the fault. Real boots are the system tests' (tests/system/test_paas_*.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from occi_cloud import image

from cumulo.compute.service.listing import ListQuery
from cumulo.context import RequestContext, expand_roles
from cumulo.paas import models
from cumulo.paas.deps import PaasServices
from cumulo.paas.engine import actions, actions_destroy, actions_net, reverter  # noqa: F401  (registers the step kinds)
from cumulo.paas.engine import plan as P
from cumulo.paas.engine.base import ACTIONS, StepFailed, StepSpec
from cumulo.paas.engine.ledger import TaskLedger

INST = "5eedcafe-0000-4000-8000-000000000002"


def env(image_id: str, *, floatingip: bool = True) -> dict[str, Any]:
    web = {"name": "web", "flavour": "m1.tiny", "image": image_id, "keypair": None, "floatingip": floatingip,
           "networks": [], "security_group": None, "min": 1, "max": 3, "initial": 1, "metadata": [], "policies": [],
           "products": [{"name": "httpd-web", "version": "1.0", "attributes": [],
                         "release": {"metadata": [{"key": "open_ports", "value": "80 8000-8010"},
                                                  {"key": "open_ports_udp", "value": "5353"}]}}]}
    return {"name": "shop", "tiers": [web]}


class Run:
    """A StepRun: one step of one task, the outputs of the steps done before it."""

    def __init__(self, services: PaasServices, ctx: RequestContext, spec: StepSpec, outputs: dict[str, Any],
                 attempt: int = 1) -> None:
        self.services, self.ctx, self.outputs = services, ctx, outputs
        self.task = {"id": 7}
        self.step = {"key": spec.key, "kind": spec.kind, "params": dict(spec.params), "attempt": attempt}
        self.instance_id = INST
        self.ledger = TaskLedger(services, ctx, INST, 7, spec.key)

    def output_of(self, key: str) -> Mapping[str, Any]:
        return dict(self.outputs[key])

    async def instance(self) -> dict[str, Any]:
        async with self.services.db.read() as conn:
            row = (await conn.execute(sa.select(models.paas_env_instances)
                                      .where(models.paas_env_instances.c.id == INST))).mappings().one()
        return dict(row)


class World:
    def __init__(self, cloud: Any, ctx: RequestContext, plan: Any) -> None:
        s = cloud.services
        self.cloud, self.ctx = cloud, ctx
        self.services = PaasServices(conf=s.conf, db=s.db, bus=s.bus, identity=s.identity, images=s.images,
                                     compute=s.compute, network=s.network, volume=s.volume)
        self.steps = {st.key: st for st in plan.steps}
        self.outputs: dict[str, Any] = {}

    async def run(self, key: str, attempt: int = 1) -> Mapping[str, Any]:
        spec = self.steps[key]
        out = await ACTIONS[spec.kind](Run(self.services, self.ctx, spec, self.outputs, attempt))
        self.outputs[key] = dict(out or {})
        return self.outputs[key]

    async def node(self) -> dict[str, Any]:
        async with self.services.db.read() as conn:
            return dict((await conn.execute(sa.select(models.paas_tier_instances)
                                            .where(models.paas_tier_instances.c.tier == "web"))).mappings().one())

    async def servers(self, name: str) -> list[dict[str, Any]]:
        q = ListQuery(project_id=self.ctx.project_id, regex={"name": f"^{name}$"})
        rows, _f, _s = await self.services.compute.list_servers(q, with_faults=False, with_host_status=False)
        return [r for r in rows if not r["deleted"]]


async def make_world(cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient], *,
                     tier: Mapping[str, Any] | None = None, **image_props: Any) -> World:
    project = (await cloud.services.identity.directory.list_projects({"name": "demo"}))[0]["id"]
    ctx = RequestContext(user_id="paas-user", project_id=project, roles=expand_roles(["member"]))
    image_id = await image(as_ctx(ctx), "paas-base", **image_props)
    environment = env(image_id)
    environment["tiers"][0].update(tier or {})
    plan = P.deploy_plan(INST, "shop", environment, project_id=project)
    async with cloud.services.db.write() as conn:
        await conn.execute(sa.insert(models.paas_env_instances).values(
            id=INST, project_id=project, user_id=ctx.user_id, name="shop", environment_name="shop",
            environment=environment, status="DEPLOYING"))
        for table, rows in plan.rows.items():
            await conn.execute(sa.insert(getattr(models, table)), rows)
    return World(cloud, ctx, plan)


@pytest.fixture
async def world(cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient]) -> World:
    return await make_world(cloud, as_ctx)


async def test_network_and_security_groups(world: World) -> None:
    net = await world.run("net")
    private = [n for n in await world.services.network.list_networks(world.ctx) if n["name"] == "private"][0]
    public = [n for n in await world.services.network.list_networks(world.ctx) if n["name"] == "public"][0]
    assert net == {"networks": {"web": [private["id"]]}, "external_network_id": public["id"]}
    internal = (await world.run("sg"))["security_group_id"]
    web = (await world.run("sg:web"))["security_group_id"]
    groups = {g["id"]: g for g in await world.services.network.list_groups(world.ctx)}
    assert groups[internal]["name"] == "paas-5eedcafe" and groups[web]["name"] == "paas-5eedcafe-web"

    def ingress(gid: str) -> set[tuple[Any, ...]]:
        return {(r["ethertype"], r["protocol"], r["port_range_min"], r["port_range_max"], r["remote_ip_prefix"],
                 r["remote_group_id"]) for r in groups[gid]["security_group_rules"] if r["direction"] == "ingress"}

    assert ingress(web) == {("IPv4", "tcp", 22, 22, "0.0.0.0/0", None), ("IPv4", "tcp", 80, 80, "0.0.0.0/0", None),
                            ("IPv4", "tcp", 8000, 8010, "0.0.0.0/0", None), ("IPv4", "udp", 5353, 5353, "0.0.0.0/0", None)}
    assert ingress(internal) == {("IPv4", None, None, None, None, internal), ("IPv6", None, None, None, None, internal)}
    # a second attempt adopts the group and keeps its rules as they are
    assert (await world.run("sg:web", attempt=2))["security_group_id"] == web
    again = [g for g in await world.services.network.list_groups(world.ctx) if g["name"] == "paas-5eedcafe-web"]
    assert len(again) == 1 and len(again[0]["security_group_rules"]) == len(groups[web]["security_group_rules"])


async def test_server_made_once_active_and_floating_ip(world: World) -> None:
    for key in ("net", "sg", "sg:web"):
        await world.run(key)
    first = (await world.run("server:web:1"))["server_id"]
    # the step runs again (a crash before it was recorded DONE): the ledger adopts the server
    assert (await world.run("server:web:1", attempt=2))["server_id"] == first
    servers = await world.servers("paas-5eedcafe-web-1")
    assert [s["uuid"] for s in servers] == [first]
    assert servers[0]["metadata"] == {"paas_instance": INST, "paas_node": "shop-web-1"}
    ports = await world.services.network.ports_of_device(first)
    sg = {world.outputs["sg"]["security_group_id"], world.outputs["sg:web"]["security_group_id"]}
    assert len(ports) == 1 and set(ports[0]["security_groups"]) == sg
    assert ports[0]["network_id"] == world.outputs["net"]["networks"]["web"][0]
    active = await world.run("active:web:1")
    assert active["server_id"] == first and active["ip"] == ports[0]["fixed_ips"][0]["ip_address"]
    driver = world.cloud.managers[0].driver
    assert any(u == first and list(req.argv) == ["/bin/sh", "-c", "true"] for u, req in driver.exec_requests), driver.exec_requests
    fip = (await world.run("fip:web:1"))["floating_ip"]
    again = (await world.run("fip:web:1", attempt=2))["floating_ip"]
    fips = [f for f in await world.services.network.list_floatingips(world.ctx) if f["description"] == "paas-5eedcafe-web-1"]
    assert again == fip and [(f["floating_ip_address"], f["port_id"]) for f in fips] == [(fip, ports[0]["id"])]
    node = await world.node()
    assert (node["server_id"], node["ip"], node["floating_ip"], node["status"]) == (first, active["ip"], fip, "DEPLOYED")
    async with world.services.db.read() as conn:
        ledger = {(r.type, r.name, r.state) for r in await conn.execute(sa.select(models.paas_resources))}
    assert ledger == {("security_group", "paas-5eedcafe", "created"), ("security_group", "paas-5eedcafe-web", "created"),
                      ("server", "paas-5eedcafe-web-1", "created"), ("floating_ip", "paas-5eedcafe-web-1", "created")}


async def test_a_server_going_error_fails_active_with_its_fault(
    cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient]
) -> None:
    w = await make_world(cloud, as_ctx, cumulo_fake_fail="spawn")
    for key in ("net", "sg", "sg:web", "server:web:1"):
        await w.run(key)
    with pytest.raises(StepFailed, match="went to ERROR: .*spawn failed"):
        await asyncio.wait_for(w.run("active:web:1"), 60)
    assert (await w.node())["status"] == "ERROR"


async def test_an_adopted_server_in_error_is_made_again(
    cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient]
) -> None:
    w = await make_world(cloud, as_ctx, cumulo_fake_fail="spawn")
    for key in ("net", "sg", "sg:web"):
        await w.run(key)
    first = (await w.run("server:web:1"))["server_id"]

    async def in_error() -> bool:
        return bool((await w.services.compute.get(w.ctx, first))["vm_state"] == "error")

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not await in_error():
        assert loop.time() < deadline, "the server never went to ERROR"
        await asyncio.sleep(0.05)
    # a resumed step finds the server its first attempt made in ERROR: it goes, a new one comes
    second = (await asyncio.wait_for(w.run("server:web:1", attempt=2), 60))["server_id"]
    assert second != first
    assert [s["uuid"] for s in await w.servers("paas-5eedcafe-web-1")] == [second]
    async with w.services.db.read() as conn:
        rows = [(r.type, r.resource_id, r.state) for r in await conn.execute(
            sa.select(models.paas_resources).where(models.paas_resources.c.type == "server"))]
    assert rows == [("server", second, "created")]


async def test_a_tier_on_the_networks_it_names(cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient]
                                              ) -> None:
    w = await make_world(cloud, as_ctx, tier={"networks": [{"name": "private", "subnets": []}]})
    private = [n for n in await w.services.network.list_networks(w.ctx) if n["name"] == "private"][0]
    assert (await w.run("net"))["networks"] == {"web": [private["id"]]}
    async with w.services.db.write() as conn:  # the snapshot names a network the project lacks
        environment = (await conn.execute(sa.select(models.paas_env_instances.c.environment))).scalar_one()
        environment["tiers"][0]["networks"] = [{"name": "nowhere", "subnets": []}]
        await conn.execute(sa.update(models.paas_env_instances).values(environment=environment))
    with pytest.raises(StepFailed, match="tier web: network 'nowhere' is not a network of the project"):
        await w.run("net", attempt=2)


async def test_the_tiers_own_security_group(cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient]
                                            ) -> None:
    w = await make_world(cloud, as_ctx, tier={"security_group": "web-extra"})
    for key in ("net", "sg", "sg:web"):
        await w.run(key)
    with pytest.raises(StepFailed, match="security group 'web-extra' is not a group of the project"):
        await w.run("server:web:1")
    assert await w.servers("paas-5eedcafe-web-1") == []
    extra = await w.services.network.create_group(w.ctx, {"name": "web-extra"})
    server_id = (await w.run("server:web:1", attempt=2))["server_id"]
    ports = await w.services.network.ports_of_device(server_id)
    assert set(ports[0]["security_groups"]) == {w.outputs["sg"]["security_group_id"],
                                                w.outputs["sg:web"]["security_group_id"], extra["id"]}


async def deploy_node(w: World) -> None:
    for key in ("net", "sg", "sg:web", "server:web:1", "active:web:1", "fip:web:1"):
        await w.run(key)


async def test_destroy_plan_deletes_the_whole_ledger(world: World) -> None:
    await deploy_node(world)
    server_id = world.outputs["server:web:1"]["server_id"]
    async with world.services.db.read() as conn:
        resources = [dict(r) for r in (await conn.execute(sa.select(models.paas_resources))).mappings()]
        instance = dict((await conn.execute(sa.select(models.paas_env_instances))).mappings().one())
    plan = P.destroy_plan(instance, [], resources)  # no node rows: no recipe steps (PRODUCTS' kinds)
    world.steps.update({s.key: s for s in plan.steps})
    assert [s.kind for s in plan.steps] == ["delete_resource"] * 4 + ["finish"]
    for spec in plan.steps:  # in plan order, which respects depends_on
        await asyncio.wait_for(world.run(spec.key), 60)
    assert await world.servers("paas-5eedcafe-web-1") == []
    assert not [f for f in await world.services.network.list_floatingips(world.ctx) if f["description"].startswith("paas-")]
    assert not [g for g in await world.services.network.list_groups(world.ctx) if g["name"].startswith("paas-")]
    assert not await world.services.network.ports_of_device(server_id)
    async with world.services.db.read() as conn:
        states = {r.state for r in await conn.execute(sa.select(models.paas_resources))}
        status = (await conn.execute(sa.select(models.paas_env_instances.c.status))).scalar_one()
    assert states == {"deleted"} and status == "UNDEPLOYED"


async def test_delete_resource_by_ledger_name(world: World) -> None:
    await deploy_node(world)
    server_id = world.outputs["server:web:1"]["server_id"]
    for typ in ("floating_ip", "server"):
        spec = StepSpec(f"delete:{typ}:paas-5eedcafe-web-1", "delete_resource", (),
                        {"type": typ, "name": "paas-5eedcafe-web-1", "resource_id": None})
        world.steps[spec.key] = spec
        await asyncio.wait_for(world.run(spec.key), 60)
        assert (await world.run(spec.key, attempt=2)) == {"deleted": []}  # again: nothing left to do
    assert await world.servers("paas-5eedcafe-web-1") == []
    assert not await world.services.network.list_floatingips(world.ctx)
    with pytest.raises(Exception, match="could not be found"):
        await world.services.compute.get(world.ctx, server_id)


def test_ports_in_sdc_syntax() -> None:
    assert actions_net.parse_ports("80 443,8000-8010  22") == [(80, 80), (443, 443), (8000, 8010), (22, 22)]
    assert actions_net.parse_ports("") == [] and actions_net.parse_ports(None) == []
    for bad in ("0", "70000", "90-80", "http", "1-2-3"):
        with pytest.raises(Exception, match="not a port"):
            actions_net.parse_ports(bad)
