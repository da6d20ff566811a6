"""The deploy and destroy plans (pure): keys, dependencies, the tier order (web -> backend),
independent tiers in parallel, the template step, the membership reconfigure and the destroy order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from cumulo.errors import Invalid
from cumulo.paas.engine import plan as P
from cumulo.paas.engine.base import StepSpec

INST = "0123abcd-0000-4000-8000-000000000001"


def product(name: str, *, attributes: list[dict[str, Any]] | None = None, metadata: list[dict[str, Any]] | None = None
            ) -> dict[str, Any]:
    return {"name": name, "version": "1.0", "attributes": attributes or [],
            "release": {"metadata": metadata or [], "attributes": [], "recipes": {}}}


def tier(name: str, products: list[dict[str, Any]], *, initial: int = 1, min_: int = 1, max_: int = 1,
         floatingip: bool = False, policies: list[dict[str, Any]] | None = None,
         metadata: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"name": name, "flavour": "m1.tiny", "image": "busybox", "keypair": None, "floatingip": floatingip,
            "region": None, "networks": [], "security_group": None, "affinity": None, "min": min_, "max": max_,
            "initial": initial, "products": products, "metadata": metadata or [], "policies": policies or []}


def two_tiers(web_initial: int = 1, backend_initial: int = 2) -> dict[str, Any]:
    web = tier("web", [product("httpd-web", attributes=[{"key": "BACKENDS", "value": "IPALL(backend)", "type": "IPALL"}])],
               initial=web_initial, max_=3, floatingip=True)
    backend = tier("backend", [product("kv-backend", attributes=[{"key": "ALLOW_FROM", "value": "MEMBERS(web)",
                                                                   "type": "MEMBERS"}])], initial=backend_initial, max_=2)
    return {"name": "demo", "tiers": [web, backend]}


def by_key(steps: list[StepSpec]) -> dict[str, StepSpec]:
    keys = [s.key for s in steps]
    assert len(keys) == len(set(keys)), "step keys must be unique"
    return {s.key: s for s in steps}


def ancestors(steps: Mapping[str, StepSpec], key: str) -> set[str]:
    out: set[str] = set()
    todo = list(steps[key].depends_on)
    while todo:
        k = todo.pop()
        if k not in out:
            out.add(k)
            todo += steps[k].depends_on
    return out


def test_deploy_two_tiers_web_waits_for_every_backend_node() -> None:
    plan = P.deploy_plan(INST, "shop", two_tiers(), project_id="p1")
    steps = by_key(plan.steps)
    for s in steps.values():  # every dependency is a step of the plan
        assert set(s.depends_on) <= set(steps), s
    assert plan.instance_status == "DEPLOYING"
    nodes = plan.rows["paas_tier_instances"]
    assert sorted((n["tier"], n["replica"], n["name"], n["status"]) for n in nodes) == [
        ("backend", 1, "shop-backend-1", "INIT"), ("backend", 2, "shop-backend-2", "INIT"), ("web", 1, "shop-web-1", "INIT")]
    assert {p["product"] for p in plan.rows["paas_product_instances"]} == {"httpd-web", "kv-backend"}
    assert len(plan.rows["paas_product_instances"]) == 3
    assert steps["server:web:1"].params["server"] == "paas-0123abcd-web-1"
    assert steps["server:web:1"].params["node"] == "shop-web-1"
    assert set(steps["server:web:1"].depends_on) == {"net", "sg", "sg:web"}
    assert steps["active:web:1"].depends_on == ("server:web:1",)
    assert steps["fip:web:1"].depends_on == ("active:web:1",)
    assert "fip:backend:1" not in steps  # backend has no floating IPs
    # web's products wait for every backend node's start; backend's wait only for their own node
    assert set(steps["install:web:1:httpd-web"].depends_on) == {
        "active:web:1", "start:backend:1:kv-backend", "start:backend:2:kv-backend"}
    assert steps["install:backend:2:kv-backend"].depends_on == ("active:backend:2",)
    assert steps["configure:web:1:httpd-web"].depends_on == ("install:web:1:httpd-web",)
    assert steps["start:web:1:httpd-web"].depends_on == ("configure:web:1:httpd-web",)
    # the servers of both tiers start at once: web's server does not wait for the backend
    assert not any(k.startswith(("server:backend", "start:backend")) for k in ancestors(steps, "server:web:1"))
    # backend's MEMBERS(web) is completed at the end, after web's node
    reconf = steps["reconfigure:backend:2:kv-backend"]
    assert set(reconf.depends_on) == {"start:backend:2:kv-backend", "start:web:1:httpd-web"}
    assert reconf.kind == "reconfigure" and reconf.params["product"] == "kv-backend"
    assert "reconfigure:web:1:httpd-web" not in steps  # IPALL(backend) is ordered, not reconfigured
    # templates: web scales (max 3 > min 1), from its first node once started
    assert steps["template:web"].depends_on == ("start:web:1:httpd-web",)
    assert steps["template:web"].params["image_name"] == "paas-0123abcd-web-template"
    # backend's template waits for its first node's reconfigure too (a snapshot pauses the node)
    assert set(steps["template:backend"].depends_on) == {"start:backend:1:kv-backend", "reconfigure:backend:1:kv-backend"}


def test_deploy_plan_is_deterministic_and_rows_link() -> None:
    a = P.deploy_plan(INST, "shop", two_tiers(), project_id="p1")
    b = P.deploy_plan(INST, "shop", two_tiers(), project_id="p1")
    assert a.steps == b.steps and a.rows == b.rows
    tids = {n["id"] for n in a.rows["paas_tier_instances"]}
    assert all(p["tier_instance_id"] in tids and p["env_instance_id"] == INST for p in a.rows["paas_product_instances"])


def test_independent_tiers_run_in_parallel() -> None:
    env = {"tiers": [tier("a", [product("pa")]), tier("b", [product("pb")])]}
    steps = by_key(P.deploy_plan(INST, "x", env, project_id="p").steps)
    assert steps["install:a:1:pa"].depends_on == ("active:a:1",)
    assert steps["install:b:1:pb"].depends_on == ("active:b:1",)
    assert not [k for k in steps if k.startswith(("template:", "reconfigure:", "fip:"))]


def test_tier_metadata_dep_and_product_dep_order() -> None:
    front = tier("front", [product("app", metadata=[{"key": "dep1", "value": "runtime-1.0"}]), product("runtime")],
                 metadata=[{"key": "dep", "value": "db"}])
    env = {"tiers": [front, tier("db", [])]}
    steps = by_key(P.deploy_plan(INST, "x", env, project_id="p").steps)
    # runtime before app inside the node (app's dep names runtime-1.0), although listed after it
    assert steps["install:front:1:runtime"].depends_on == ("active:front:1", "active:db:1")
    assert steps["install:front:1:app"].depends_on == ("start:front:1:runtime",)
    # db has no products: its node is done once active
    assert P.node_last_key(env["tiers"][1], 1) == "active:db:1"


def test_cycles_are_invalid() -> None:
    a = tier("a", [product("pa", attributes=[{"key": "X", "value": "IP(b)", "type": "IP"}])])
    b = tier("b", [product("pb", attributes=[{"key": "Y", "value": "IP(a)", "type": "IP"}])])
    with pytest.raises(Invalid, match="cycle"):
        P.deploy_plan(INST, "x", {"tiers": [a, b]}, project_id="p")
    c = tier("c", [product("p1", metadata=[{"key": "dep", "value": "p2"}]),
                   product("p2", metadata=[{"key": "dep", "value": "p1"}])])
    with pytest.raises(Invalid, match="product dependency cycle"):
        P.deploy_plan(INST, "x", {"tiers": [c]}, project_id="p")


def test_template_step_placement() -> None:
    fixed = tier("f", [product("p")], min_=2, max_=2, initial=2)
    policy = tier("g", [product("p")], policies=[{"name": "up"}])
    never = tier("h", [product("p", metadata=[{"key": "template", "value": "no"}])], max_=4)
    env = {"tiers": [fixed, policy, never]}
    steps = by_key(P.deploy_plan(INST, "x", env, project_id="p").steps)
    assert "template:f" not in steps and "template:h" not in steps
    assert steps["template:g"].depends_on == ("start:g:1:p",) and steps["template:g"].kind == "template"
    off = by_key(P.deploy_plan(INST, "x", env, project_id="p", templates=False).steps)
    assert not [k for k in off if k.startswith("template:")]


def test_node_steps_from_template_skip_install() -> None:
    t = tier("web", [product("httpd-web")], floatingip=True)
    steps = by_key(P.node_steps(INST, t, 4, "shop-web-4", from_template="img-1"))
    assert steps["server:web:4"].depends_on == ()
    assert steps["server:web:4"].params["image"] == "img-1"
    assert steps["install:web:4:httpd-web"].params["skip"] == "template image img-1"
    assert steps["install:web:4:httpd-web"].kind == "install"
    assert steps["configure:web:4:httpd-web"].depends_on == ("install:web:4:httpd-web",)
    assert "skip" not in steps["configure:web:4:httpd-web"].params
    assert list(steps)[:3] == ["server:web:4", "active:web:4", "fip:web:4"]


def test_destroy_plan_order() -> None:
    env = two_tiers(web_initial=1, backend_initial=1)
    instance = {"id": INST, "name": "shop", "environment": env}
    nodes = [{"tier": "web", "replica": 1, "name": "shop-web-1", "server_id": "s-web"},
             {"tier": "backend", "replica": 1, "name": "shop-backend-1", "server_id": "s-back"},
             {"tier": "backend", "replica": 2, "name": "shop-backend-2", "server_id": None}]
    resources = [
        {"id": 1, "type": "security_group", "name": "paas-0123abcd", "resource_id": "g0", "state": "created"},
        {"id": 2, "type": "security_group", "name": "paas-0123abcd-web", "resource_id": "g1", "state": "created"},
        {"id": 3, "type": "server", "name": "paas-0123abcd-web-1", "resource_id": "s-web", "state": "created"},
        {"id": 4, "type": "server", "name": "paas-0123abcd-backend-1", "resource_id": "s-back", "state": "created"},
        {"id": 5, "type": "server", "name": "paas-0123abcd-backend-2", "resource_id": None, "state": "creating"},
        {"id": 6, "type": "floating_ip", "name": "paas-0123abcd-web-1", "resource_id": "f1", "state": "created"},
        {"id": 7, "type": "image", "name": "paas-0123abcd-web-template", "resource_id": "i1", "state": "created"},
        {"id": 8, "type": "server", "name": "paas-0123abcd-web-9", "resource_id": "gone", "state": "deleted"},
    ]
    plan = P.destroy_plan(instance, nodes, resources)
    steps = by_key(plan.steps)
    assert plan.instance_status == "UNINSTALLING"
    assert steps["stop:web:1:httpd-web"].params["best_effort"] is True
    assert steps["uninstall:web:1:httpd-web"].depends_on == ("stop:web:1:httpd-web",)
    # the backend stops after web (web depends on it); a node without a server has no recipe steps
    assert steps["stop:backend:1:kv-backend"].depends_on == ("uninstall:web:1:httpd-web",)
    assert "stop:backend:2:kv-backend" not in steps
    # then every live ledger name is deleted, type after type: the floating IP first
    fip = steps["delete:floating_ip:paas-0123abcd-web-1"]
    assert set(fip.depends_on) == {"uninstall:web:1:httpd-web", "uninstall:backend:1:kv-backend"}
    assert fip.kind == "delete_resource"
    assert fip.params == {"type": "floating_ip", "name": "paas-0123abcd-web-1", "resource_id": "f1"}
    # the servers: the intent without an id too (found by name), not the deleted row
    servers = {"delete:server:paas-0123abcd-web-1", "delete:server:paas-0123abcd-backend-1",
               "delete:server:paas-0123abcd-backend-2"}
    assert {k for k in steps if k.startswith("delete:server:")} == servers
    assert steps["delete:server:paas-0123abcd-backend-2"].params["resource_id"] is None
    assert all(steps[k].depends_on == (fip.key,) for k in servers)
    image = steps["delete:image:paas-0123abcd-web-template"]
    assert set(image.depends_on) == servers
    groups = {"delete:security_group:paas-0123abcd", "delete:security_group:paas-0123abcd-web"}
    assert all(steps[k].depends_on == (image.key,) for k in groups)
    assert set(steps["finish"].depends_on) == groups and plan.steps[-1].key == "finish"
    assert not [k for k in steps if k.startswith("revert:")]  # the runner's rollback keys stay its own


def test_destroy_of_an_empty_instance_just_finishes() -> None:
    plan = P.destroy_plan({"id": INST, "environment": {"tiers": []}}, [], [])
    assert [(s.key, s.depends_on) for s in plan.steps] == [("finish", ())]
