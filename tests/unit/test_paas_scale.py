"""The scale plan (cumulo.paas.engine.plan_scale), pure: numbering, template vs fresh nodes, bounds,
named removal, and the reconfigure of the tiers that depend on the scaled tier's membership."""

from __future__ import annotations

from typing import Any

import pytest

from cumulo import errors
from cumulo.paas.engine import plan as deploy
from cumulo.paas.engine.base import Plan, StepSpec
from cumulo.paas.engine.plan_scale import membership_products, next_replica, scale_plan

INST = "0123abcd-0000-4000-8000-000000000001"


def product(name: str, *attrs: dict[str, str], metadata: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"name": name, "version": "1.0", "attributes": list(attrs),
            "release": {"metadata": metadata or [], "recipes": {}, "attributes": []}}


def env(web_max: int = 3, web_min: int = 1, **web: Any) -> dict[str, Any]:
    return {"name": "shop", "tiers": [
        {"name": "backend", "min": 1, "max": 2, "initial": 1, "floatingip": False, "products": [
            product("kv-backend", {"key": "ALLOW_FROM", "value": "MEMBERS(web)", "type": "MEMBERS"})]},
        {"name": "web", "min": web_min, "max": web_max, "initial": 1, "floatingip": True, "products": [
            product("httpd-web", {"key": "BACKENDS", "value": "IPALL(backend)", "type": "IPALL"}),
            product("tools")], **web},
    ]}


def instance(environment: dict[str, Any] | None = None, app_generation: int = 0) -> dict[str, Any]:
    return {"id": INST, "name": "demo", "environment": environment or env(), "app_generation": app_generation}


def node(tier: str, replica: int, status: str = "INSTALLED", server: bool = True) -> dict[str, Any]:
    return {"id": deploy.tier_instance_id(INST, tier, replica), "tier": tier, "replica": replica,
            "name": f"demo-{tier}-{replica}", "status": status,
            "server_id": f"srv-{tier}-{replica}" if server else None}


TEMPLATE = {"tier": "web", "status": "active", "image_id": "img-tpl", "app_generation": 0}


def keys(plan: Plan, prefix: str = "") -> list[str]:
    return [s.key for s in plan.steps if s.key.startswith(prefix)]


def step(plan: Plan, key: str) -> StepSpec:
    return next(s for s in plan.steps if s.key == key)


def assert_closed(plan: Plan) -> None:
    """Every dependency is a step of the plan, and keys are unique (what the runner checks)."""
    ks = [s.key for s in plan.steps]
    assert len(ks) == len(set(ks))
    for s in plan.steps:
        assert set(s.depends_on) <= set(ks), s


def test_new_replicas_follow_the_highest_ever_used() -> None:
    nodes = [node("backend", 1), node("web", 1), node("web", 2, status="UNDEPLOYED", server=False), node("web", 3)]
    assert next_replica(nodes, "web") == 4
    plan = scale_plan(instance(), nodes, "web", count=3, template=TEMPLATE)
    rows = plan.rows["paas_tier_instances"]
    assert [(r["replica"], r["name"]) for r in rows] == [(4, "demo-web-4")]  # 2 is never reused
    assert rows[0]["id"] == deploy.tier_instance_id(INST, "web", 4)
    assert {r["product"] for r in plan.rows["paas_product_instances"]} == {"httpd-web", "tools"}
    assert all(r["tier_instance_id"] == rows[0]["id"] for r in plan.rows["paas_product_instances"])
    assert keys(plan, "server:") == ["server:web:4"]
    assert_closed(plan)


def test_template_nodes_boot_from_the_image_and_skip_install() -> None:
    plan = scale_plan(instance(), [node("backend", 1), node("web", 1)], "web", count=3, template=TEMPLATE)
    for r in (2, 3):
        server = step(plan, f"server:web:{r}")
        assert server.params["image"] == server.params["from_template"] == "img-tpl"
        for p in ("httpd-web", "tools"):
            install = step(plan, f"install:web:{r}:{p}")
            assert install.params["skip"] == "template image img-tpl"  # the skip record the install step writes
            assert "skip" not in step(plan, f"configure:web:{r}:{p}").params
            assert "skip" not in step(plan, f"start:web:{r}:{p}").params
    assert {r["from_template"] for r in plan.rows["paas_tier_instances"]} == {"img-tpl"}
    assert not keys(plan, "template:")  # the tier has one already
    assert not keys(plan, "artifact:")
    assert_closed(plan)


@pytest.mark.parametrize("why", ["use_template", "setting", "inactive", "no_template", "product_says_no"])
def test_fresh_nodes_without_a_usable_template(why: str) -> None:
    environment = env()
    template: dict[str, Any] | None = dict(TEMPLATE)
    kw: dict[str, Any] = {}
    if why == "use_template":
        kw["use_template"] = False
    elif why == "setting":
        kw["templates"] = "off"
    elif why == "inactive":
        template = {**TEMPLATE, "status": "creating"}
    elif why == "no_template":
        template = None
    else:
        environment["tiers"][1]["products"][1] = product("tools", metadata=[{"key": "template", "value": "no"}])
    plan = scale_plan(instance(environment), [node("backend", 1), node("web", 1)], "web", count=2,
                      template=template, **kw)
    server = step(plan, "server:web:2")
    assert "from_template" not in server.params and "image" not in server.params
    assert "skip" not in step(plan, "install:web:2:httpd-web").params
    assert plan.rows["paas_tier_instances"][0]["from_template"] is None
    # a tier that should have a template and has no usable one gets it from its first new node
    # (a "creating" row at plan time is a dead attempt: one task at a time runs on an instance)
    assert keys(plan, "template:") == (["template:web"] if why in ("no_template", "inactive") else [])
    assert_closed(plan)


def test_the_ledger_says_whether_the_template_image_lives() -> None:
    nodes = [node("backend", 1), node("web", 1)]
    live = [{"type": "image", "name": "paas-0123abcd-web-template", "resource_id": "img-tpl", "state": "created"}]
    plan = scale_plan(instance(), nodes, "web", count=2, template=TEMPLATE, resources=live)
    assert step(plan, "server:web:2").params["from_template"] == "img-tpl" and not keys(plan, "template:")
    # a rollback deleted the image: the template row still says active, the ledger does not
    gone = [{**live[0], "state": "deleted"}]
    plan = scale_plan(instance(), nodes, "web", count=2, template=TEMPLATE, resources=gone)
    assert "from_template" not in step(plan, "server:web:2").params
    assert keys(plan, "template:") == ["template:web"]
    # useTemplate false with a live template: a fresh install, and no new template
    plan = scale_plan(instance(), nodes, "web", count=2, template=TEMPLATE, resources=live, use_template=False)
    assert "from_template" not in step(plan, "server:web:2").params and not keys(plan, "template:")


def test_a_missing_template_is_taken_after_the_first_new_node_and_its_reconfigures() -> None:
    environment = env()
    web = environment["tiers"][1]
    web["products"][0]["attributes"].append({"key": "PEERS", "value": "MEMBERS(web)", "type": "MEMBERS"})
    plan = scale_plan(instance(environment), [node("backend", 1), node("web", 1)], "web", count=3, template=None)
    tpl = step(plan, "template:web")
    assert tpl.params["replica"] == 2 and tpl.params["image_name"] == deploy.template_name(INST, "web")
    assert deploy.node_last_key(web, 2) in tpl.depends_on
    assert "reconfigure:web:2:httpd-web" in tpl.depends_on  # no snapshot while its configure runs
    assert_closed(plan)


def test_applications_newer_than_the_template_are_deployed_on_its_nodes() -> None:
    apps = [{"name": "old", "product": "httpd-web", "generation": 1, "status": "ARTEFACT_DEPLOYED"},
            {"name": "shopapp", "product": "httpd-web", "version": "2", "generation": 2, "status": "ARTEFACT_DEPLOYED"},
            {"name": "kvdata", "product": "kv-backend", "generation": 3, "status": "ARTEFACT_DEPLOYED"},
            {"name": "broken", "product": "httpd-web", "generation": 4, "status": "ERROR"}]
    nodes = [node("backend", 1), node("web", 1)]
    current = scale_plan(instance(), nodes, "web", count=2, applications=apps,
                         template={**TEMPLATE, "app_generation": 3})
    assert not keys(current, "artifact:")  # the image holds them already
    # the application deployed after the template was taken (the instance's counter is not needed)
    stale = scale_plan(instance(), nodes, "web", count=2, applications=apps, template={**TEMPLATE, "app_generation": 1})
    assert keys(stale, "artifact:") == ["artifact:web:2:shopapp"]
    last = deploy.node_last_key(env()["tiers"][1], 2)
    assert step(stale, "artifact:web:2:shopapp").depends_on == (last,)
    # a fresh node gets every deployed application of its tier's products, one after another
    fresh = scale_plan(instance(), nodes, "web", count=2, applications=apps, template=None)
    assert keys(fresh, "artifact:") == ["artifact:web:2:old", "artifact:web:2:shopapp"]
    assert step(fresh, "artifact:web:2:shopapp").depends_on == ("artifact:web:2:old",)
    for plan, end in ((stale, "artifact:web:2:shopapp"), (fresh, "artifact:web:2:shopapp")):
        art = step(plan, "artifact:web:2:shopapp")
        assert art.kind == "deploy_artifact" and art.params["product"] == "httpd-web" and art.params["version"] == "2"
        assert end in step(plan, "reconfigure:backend:1:kv-backend").depends_on  # the node is done after it
        assert_closed(plan)


def test_scale_out_reconfigures_the_membership_dependents() -> None:
    nodes = [node("backend", 1), node("backend", 2), node("web", 1)]
    plan = scale_plan(instance(), nodes, "web", count=3, template=TEMPLATE)
    recon = [s for s in plan.steps if s.kind == "reconfigure"]
    # kv-backend holds MEMBERS(web): every backend node re-runs it, after both new web nodes
    assert [s.key for s in recon] == ["reconfigure:backend:1:kv-backend", "reconfigure:backend:2:kv-backend"]
    web = env()["tiers"][1]
    for s in recon:
        assert set(s.depends_on) == {deploy.node_last_key(web, 2), deploy.node_last_key(web, 3)}
        assert s.params["scaled_tier"] == "web" and s.params["node"].startswith("demo-backend-")
    # scaling the backend reconfigures httpd-web (IPALL(backend)) on the web node, not "tools"
    plan = scale_plan(instance(), nodes[:1] + nodes[2:], "backend", count=2)
    assert keys(plan, "reconfigure:") == ["reconfigure:web:1:httpd-web"]
    assert_closed(plan)


def test_membership_products_follow_refs_and_balancer() -> None:
    tiers = env()["tiers"]
    assert membership_products(tiers, "web") == [("backend", "kv-backend", "1.0")]
    assert membership_products(tiers, "backend") == [("web", "httpd-web", "1.0")]
    # Pegasus's balancer: a web product naming the balancer product makes the lb tier reconfigure
    tiers = [*tiers, {"name": "lb", "min": 1, "max": 1, "products": [product("haproxy")]}]
    tiers[1]["products"][1]["attributes"] = [{"key": "balancer", "value": "haproxy"}]
    assert ("lb", "haproxy", "1.0") in membership_products(tiers, "web")


def test_scale_in_by_count_removes_failed_then_newest() -> None:
    nodes = [node("backend", 1), node("web", 1), node("web", 2, status="ERROR"), node("web", 3), node("web", 4)]
    plan = scale_plan(instance(env(web_max=4)), nodes, "web", count=2)
    assert keys(plan, "removed:") == ["removed:web:2", "removed:web:4"]
    # both leave first; backend's reconfigure waits for both
    assert set(step(plan, "reconfigure:backend:1:kv-backend").depends_on) == {"leave:web:2", "leave:web:4"}


def test_a_node_left_draining_is_no_member_and_the_next_scale_removes_it() -> None:
    nodes = [node("backend", 1), node("web", 1), node("web", 2, status="UNINSTALLING"), node("web", 3)]
    # the size is 2: scaling out to 3 adds one (replica 4) and finishes removing node 2
    plan = scale_plan(instance(), nodes, "web", count=3, template=TEMPLATE)
    assert [r["replica"] for r in plan.rows["paas_tier_instances"]] == [4]
    assert keys(plan, "removed:") == ["removed:web:2"] and not keys(plan, "leave:")
    assert step(plan, "stop:web:2:tools").depends_on == ()
    assert_closed(plan)
    # the same size only finishes it; a removal of it by name too (no min check: it is no member)
    requests: list[dict[str, Any]] = [{"count": 2}, {"remove": "demo-web-2"}]
    for kw in requests:
        plan = scale_plan(instance(), nodes, "web", **kw)
        assert keys(plan, "removed:") == ["removed:web:2"] and not keys(plan, "reconfigure:"), kw
        assert_closed(plan)
    # scaling in picks among the members only
    plan = scale_plan(instance(), nodes, "web", count=1)
    assert keys(plan, "removed:") == ["removed:web:2", "removed:web:3"] and keys(plan, "leave:") == ["leave:web:3"]
    assert_closed(plan)
    assert "paas_tier_instances" not in plan.rows
    assert_closed(plan)


def test_scale_in_steps_of_a_node() -> None:
    resources = [
        {"type": "server", "name": "paas-0123abcd-web-2", "resource_id": "srv-web-2", "step_key": "server:web:2",
         "state": "created"},
        {"type": "floating_ip", "name": "paas:0123abcd:fip:web:2", "resource_id": "fip-2", "step_key": "fip:web:2",
         "state": "created"},
        {"type": "floating_ip", "name": "old", "resource_id": "fip-x", "step_key": "fip:web:1", "state": "created"},
    ]
    plan = scale_plan(instance(), [node("backend", 1), node("web", 1), node("web", 2)], "web", remove="demo-web-2",
                      resources=resources)
    order = [s.key for s in plan.steps]
    assert order == [
        "leave:web:2", "reconfigure:backend:1:kv-backend",  # drained: out of MEMBERS(web) first
        "stop:web:2:tools", "stop:web:2:httpd-web",  # reverse install order
        "delete:floating_ip:paas:0123abcd:fip:web:2", "delete:server:paas-0123abcd-web-2",
        "removed:web:2",
    ]
    for i, s in enumerate(plan.steps[1:], 1):
        assert s.depends_on == (order[i - 1],)
    assert all(step(plan, k).params["best_effort"] for k in order[2:4])
    srv = step(plan, "delete:server:paas-0123abcd-web-2")
    assert srv.kind == "delete_resource"
    assert srv.params == {"type": "server", "name": "paas-0123abcd-web-2", "resource_id": "srv-web-2"}
    assert (step(plan, "leave:web:2").kind, step(plan, "removed:web:2").kind) == ("node_leaving", "node_removed")
    assert_closed(plan)


def test_scale_in_without_dependents_stops_after_leaving() -> None:
    environment = env()
    environment["tiers"][0]["products"][0]["attributes"] = []  # nothing refers to web's membership
    plan = scale_plan(instance(environment), [node("backend", 1), node("web", 1), node("web", 2)], "web", count=1)
    assert not keys(plan, "reconfigure:")
    assert step(plan, "stop:web:2:tools").depends_on == ("leave:web:2",)
    assert_closed(plan)


def test_scale_in_of_a_server_missing_from_the_ledger() -> None:
    plan = scale_plan(instance(), [node("backend", 1), node("web", 1), node("web", 2)], "web", count=1)
    srv = step(plan, f"delete:server:{deploy.server_name(INST, 'web', 2)}")
    assert srv.params["resource_id"] == "srv-web-2"
    assert not keys(plan, "delete:floating_ip:")


def test_named_removal_may_pick_any_node() -> None:
    nodes = [node("backend", 1), node("web", 1), node("web", 2), node("web", 3)]
    plan = scale_plan(instance(), nodes, "web", remove="demo-web-1")
    assert keys(plan, "removed:") == ["removed:web:1"]
    # the removed node's neighbours are not reconfigured as members of web: backend is
    assert keys(plan, "reconfigure:") == ["reconfigure:backend:1:kv-backend"]


@pytest.mark.parametrize(("count", "message"), [
    (4, "desired size 4 must be between min 1 and max 3"),
    (0, "desired size 0 must be between min 1 and max 3"),
    (-1, "desired size -1 must be between min 1 and max 3"),
    (2, "tier web already has 2 nodes"),
])
def test_counts_outside_the_bounds_are_invalid_naming_the_numbers(count: int, message: str) -> None:
    with pytest.raises(errors.Invalid, match=message):
        scale_plan(instance(), [node("backend", 1), node("web", 1), node("web", 2)], "web", count=count)


def test_a_named_removal_below_min_is_a_conflict() -> None:
    with pytest.raises(errors.Conflict, match="leave tier web with 0 nodes, below its min size 1"):
        scale_plan(instance(), [node("backend", 1), node("web", 1)], "web", remove="demo-web-1")


@pytest.mark.parametrize("name", ["demo-web-9", "demo-backend-1", "demo-web-2"])
def test_a_named_removal_of_no_live_node_of_the_tier_is_not_found(name: str) -> None:
    nodes = [node("backend", 1), node("web", 1), node("web", 2, status="UNDEPLOYED", server=False), node("web", 3)]
    with pytest.raises(errors.NotFound, match=f"tier web has no node named '{name}'"):
        scale_plan(instance(), nodes, "web", remove=name)


@pytest.mark.parametrize(("kw", "exc", "message"), [
    ({}, errors.Invalid, "either count"),
    ({"count": 2, "remove": "demo-web-1"}, errors.Invalid, "not both"),
    ({"count": True}, errors.Invalid, "whole number"),
    ({"count": 2, "tier": "db"}, errors.NotFound, "no tier 'db'"),
])
def test_bad_requests(kw: dict[str, Any], exc: type[Exception], message: str) -> None:
    tier = kw.pop("tier", "web")
    with pytest.raises(exc, match=message):
        scale_plan(instance(), [node("backend", 1), node("web", 1)], tier, **kw)


def test_removed_nodes_do_not_count_toward_the_size() -> None:
    nodes = [node("backend", 1), node("web", 1), node("web", 2, status="UNDEPLOYED", server=False)]
    plan = scale_plan(instance(), nodes, "web", count=3, template=TEMPLATE)
    assert [r["replica"] for r in plan.rows["paas_tier_instances"]] == [3, 4]
