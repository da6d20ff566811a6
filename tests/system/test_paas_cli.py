"""The PaaS manager through the real `openstack paas` CLI and the raw API (issue 13, acceptance 1, 2
and 6), on one runc `cumulo up` with its host link to `public` and one deployment for the module.

1. Two products are registered (copies of the built-in httpd-web and kv-backend releases, made from
   what `paas product show` gives), then a two-tier environment: `web` (the web product, BACKENDS =
   IPALL(backend), a floating IP, 1..3 nodes) depends on `backend` (ALLOW_FROM = MEMBERS(web)).
   `paas environment instance create --wait` reports RUNNING then SUCCESS; the demo application is
   deployed into the web product; the web node's floating IP, fetched from the host, serves the
   application page with the data the node fetched from the backend over the tenant network (the
   backend answers only addresses in its ALLOW_FROM: the page shows its node name and the web
   node's address as the client).
2. `paas tier scale shop web --count 3`: the new nodes boot from the tier's template image, their
   install recipes are SKIPPED (product instance records), configure and start ran; the backend was
   reconfigured (each new node's page shows the backend's data, which a node missing from its
   ALLOW_FROM would not get); `--remove` of a named node removes exactly that one (its server is
   gone from `openstack server list` and its container from runc).
6. A second project gets 404 for the instance, its task and the environment (CLI and raw API);
   the raw API refuses, with a 4xx naming the problem, a tier dependency cycle, an unknown product,
   min > max and a malformed recipe attribute.
At the end the instance is deleted through the CLI and nothing of it is left.

And on the scaled-out cloud (tests/system/cluster.py: the nodes on runc dev hosts, the floating IPs
on its L3 host): the rows of SCALED_SUBSET, with the containers of every dev host in the leftover checks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from _paas_util import (
    DEMO,
    DEPLOY_TIMEOUT,
    backend_ok,
    copy_of_builtin,
    demo_app,
    drop_instance,
    elapsed,
    iaas_view,
    launch_paas,
    nodes,
    orphans,
    paas,
    paas_run,
    paas_servers,
    product_steps,
    project_id,
    statuses_seen,
    wait_no_paas_servers,
    wait_page,
    write_yaml,
)
from _runc_util import leftovers, runc_state, wait_for

if TYPE_CHECKING:
    from conftest import CumuloCloud

OTHER = "paas-other"
INSTANCE = "shop"
ENVIRONMENT = "shop-env"


class World:
    def __init__(self, cloud: CumuloCloud, files: Path) -> None:
        self.cloud, self.files = cloud, files
        self.task: dict[str, Any] = {}
        self.instance_ids: set[str] = set()
        self.vdc = ""
        self.other_vdc = ""

    def paas(self, *args: str, **kw: Any) -> Any:
        return paas(self.cloud, *args, **kw)


def _add_other_project(cloud: CumuloCloud) -> None:
    """A second project with a member user, as a clouds.yaml entry of this cloud."""
    password = "paas-other-password-1"
    cloud.osc("project", "create", OTHER)
    cloud.osc("user", "create", "--password", password, "--project", OTHER, OTHER)
    cloud.osc("role", "add", "--user", OTHER, "--project", OTHER, "member", json=False)
    data = yaml.safe_load(cloud.clouds_yaml.read_text())
    entry = {**data["clouds"][DEMO]}
    entry["auth"] = {**entry["auth"], "username": OTHER, "password": password, "project_name": OTHER}
    data["clouds"][OTHER] = entry
    cloud.clouds_yaml.write_text(yaml.safe_dump(data))


# and on the scaled-out cloud (tests/system/cluster.py): the nodes on the dev hosts, the recipes run by
# `runc exec` there, the floating IPs on the L3 host
cumulo_configs = ("embedded", "scaled")
# Its cross-host essence within the run's time budget: the products, the deploy (install, configure and
# start by `runc exec` on the dev hosts, the web node's floating IP from the L3 host serving what it
# fetched from the backend on another host over VXLAN), the refusals and the delete; the scaling rows
# and the other project's view (API rows the deploy's answer already covers) run embedded only.
SCALED_SUBSET = pytest.mark.configs("embedded", reason="the scaled variant keeps to the deploy and the delete "
                                                       "(the run's time budget)")


@pytest.fixture(scope="module")
def world(cumulo_launcher: Callable[..., CumuloCloud], tmp_path_factory: pytest.TempPathFactory,
          cumulo_config: str) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("paas-cli")
    cloud = launch_paas(cumulo_launcher, tmp, config=cumulo_config)
    w = World(cloud, tmp)
    if cumulo_config == "embedded":  # for test_another_project_sees_none_of_it (SCALED_SUBSET: embedded only)
        _add_other_project(cloud)
    w.vdc = project_id(cloud)
    yield w
    drop_instance(cloud, INSTANCE, w.instance_ids)
    cloud.close()


def test_register_two_products_and_a_two_tier_environment(world: World) -> None:
    files = world.files
    web = copy_of_builtin(world.cloud, "httpd-web-1.0", "shop-web", files)
    kv = copy_of_builtin(world.cloud, "kv-backend-1.0", "shop-kv", files)
    made = world.paas("product", "create", "--file", str(web))
    assert (made["name"], made["version"], made["builtin"]) == ("shop-web", "1.0", False)
    world.paas("product", "create", "--file", str(kv))
    listed = {(p["Name"], p["Version"]): p for p in world.paas("product", "list")}
    assert {("shop-web", "1.0"), ("shop-kv", "1.0"), ("httpd-web", "1.0"), ("kv-backend", "1.0")} <= set(listed)
    assert listed[("shop-kv", "1.0")]["Builtin"] is False

    env = {
        "name": ENVIRONMENT,
        "description": "web depends on backend",
        "tiers": [
            {"name": "backend", "image": "busybox", "flavor": "m1.tiny", "min": 1, "max": 1,
             "products": [{"name": "shop-kv", "version": "1.0", "attributes": {"ALLOW_FROM": "MEMBERS(web)"}}]},
            {"name": "web", "image": "busybox", "flavor": "m1.tiny", "min": 1, "max": 3, "initial": 1,
             "floatingip": True,
             "products": [{"name": "shop-web", "version": "1.0", "attributes": {"BACKENDS": "IPALL(backend)"}}]},
        ],
    }
    shown = world.paas("environment", "create", "--file", str(write_yaml(files / "env.yaml", env)))
    assert shown["name"] == ENVIRONMENT
    tiers = {t["name"]: t for t in shown["tiers"]}
    assert tiers["web"]["products"] == ["shop-web-1.0"] and (tiers["web"]["min"], tiers["web"]["max"]) == (1, 3)
    assert ENVIRONMENT in {e["Name"] for e in world.paas("environment", "list")}


def test_deploy_goes_running_then_success_and_serves_backend_data(world: World) -> None:
    cloud = world.cloud
    t0 = time.monotonic()
    done = paas_run(cloud, "environment", "instance", "create", INSTANCE, "--environment", ENVIRONMENT,
                    "--description", "acceptance 1", "--wait", "--timeout", str(DEPLOY_TIMEOUT))
    assert done.returncode == 0, f"{done.stderr}\n{cloud.log()[-4000:]}"
    seen = statuses_seen(done.stderr)
    assert "RUNNING" in seen and seen[-1] == "SUCCESS" and seen.index("RUNNING") < len(seen) - 1, seen
    task = json.loads(done.stdout)
    assert task["status"] == "SUCCESS" and task["result"].endswith(f"/environmentInstance/{INSTANCE}"), task
    world.task = task
    print(f"deploy: {elapsed(t0)}")
    world.instance_ids = {s["metadata"]["paas_instance"] for s in paas_servers(cloud)}
    assert len(world.instance_ids) == 1

    inst = world.paas("environment", "instance", "show", INSTANCE)
    assert (inst["status"], inst["environment"]) == ("INSTALLED", ENVIRONMENT), inst
    [backend] = nodes(cloud, INSTANCE, "backend")
    [web] = nodes(cloud, INSTANCE, "web")
    assert (backend["Name"], web["Name"]) == (f"{INSTANCE}-backend-1", f"{INSTANCE}-web-1")
    assert web["Floating IP"] and not backend["Floating IP"], (web, backend)
    for node in (backend, web):
        state = runc_state(cloud, node["Server"])
        assert state is not None and state["status"] == "running", (node, state)

    app = demo_app(world.files)
    done = paas_run(cloud, "application", "deploy", INSTANCE, "--product", "shop-web", "--file", str(app),
                    "--wait", "--timeout", "300")
    assert done.returncode == 0, done.stderr
    text = wait_page(web["Floating IP"], lambda t: backend_ok(t, backend["Name"], web["IP"]),
                     "the web node's page to show the backend's data")
    assert backend["IP"] in text


def allow_from(world: World) -> set[str]:
    """The addresses in the backend product's resolved ALLOW_FROM (raw API: the product instance)."""
    path = (f"/paas/rest/envInst/org/default/vdc/{world.vdc}/environmentInstance/{INSTANCE}/tierInstance/"
            f"{INSTANCE}-backend-1/productInstance/shop-kv")
    with world.cloud.client(DEMO) as c:
        r = c.get(path)
    assert r.status_code == 200, r.text
    [value] = [a["value"] for a in r.json()["attributes"] if a["key"] == "ALLOW_FROM"]
    return {v.strip() for v in value.split(",") if v.strip()}


@SCALED_SUBSET
def test_scale_out_boots_from_the_template_and_reconfigures_the_backend(world: World) -> None:
    cloud = world.cloud
    [backend] = nodes(cloud, INSTANCE, "backend")
    t0 = time.monotonic()
    done = paas_run(cloud, "tier", "scale", INSTANCE, "web", "--count", "3", "--wait", "--timeout", str(DEPLOY_TIMEOUT))
    assert done.returncode == 0, f"{done.stderr}\n{cloud.log()[-4000:]}"
    print(f"scale out 1 -> 3: {elapsed(t0)}")
    web = nodes(cloud, INSTANCE, "web")
    assert [n["Name"] for n in web] == [f"{INSTANCE}-web-{i}" for i in (1, 2, 3)], web
    images = {i["ID"]: i["Name"] for i in cloud.osc("image", "list", cloud=DEMO)}
    for node in web[1:]:
        template = node["From Template"]
        assert template and template in images and images[template].endswith("-web-template"), (node, images)
        shown = cloud.osc("server", "show", node["Server"], cloud=DEMO)
        assert template in str(shown["image"]), (node["Name"], shown["image"])
        steps = product_steps(cloud, INSTANCE, node["Name"])
        install = steps[("shop-web", "install")]
        assert install["Step Status"] == "SKIPPED" and template in (install["Skipped Reason"] or ""), steps
        for step in ("configure", "start"):
            assert steps[("shop-web", step)]["Exit Code"] == 0, steps
    # The first node did install: it is what the template was taken from.
    first = product_steps(cloud, INSTANCE, web[0]["Name"])
    assert first[("shop-web", "install")]["Exit Code"] == 0 and not web[0]["From Template"]
    # The backend's ALLOW_FROM now lists every web node: each page gets the backend's data.
    assert {n["IP"] for n in web} <= allow_from(world), allow_from(world)
    for node in web:
        wait_page(node["Floating IP"], lambda t, n=node: backend_ok(t, backend["Name"], n["IP"]),
                  f"{node['Name']}'s page to show the backend's data")


@SCALED_SUBSET
def test_scale_in_removes_the_named_node(world: World) -> None:
    cloud = world.cloud
    web = nodes(cloud, INSTANCE, "web")
    victim = web[1]
    done = paas_run(cloud, "tier", "scale", INSTANCE, "web", "--remove", victim["Name"], "--wait", "--timeout", "600")
    assert done.returncode == 0, done.stderr
    left = nodes(cloud, INSTANCE, "web")
    assert [n["Name"] for n in left] == [web[0]["Name"], web[2]["Name"]], left
    listed = {s["ID"] for s in cloud.osc("server", "list", cloud=DEMO)}
    assert victim["Server"] not in listed and {n["Server"] for n in left} <= listed
    wait_for(lambda: not leftovers(cloud, victim["Server"]), timeout=60,
             what="nothing of the removed node's server on the host (container, mounts, netns, cgroups)")
    # Below min is refused, naming the numbers.
    done = paas_run(cloud, "tier", "scale", INSTANCE, "web", "--count", "0")
    assert done.returncode != 0 and "HTTP 400" in done.stderr and "between min 1 and max 3" in done.stderr, done.stderr
    # The backend was reconfigured without the removed node.
    allowed = allow_from(world)
    assert victim["IP"] not in allowed and {n["IP"] for n in left} <= allowed, (allowed, victim)
    # Every node is INSTALLED (its products started); the hand-made scales are events.
    assert {n["Status"] for n in nodes(cloud, INSTANCE)} == {"INSTALLED"}, nodes(cloud, INSTANCE)
    events = paas(cloud, "event", "list", INSTANCE, "--tier", "web")
    manual = [(e["Decision"], e["From"], e["To"]) for e in events if (e["Reason"] or "").startswith("manual: ")]
    assert ("scale_out", 1, 3) in manual and ("scale_in", 3, 2) in manual, events


@SCALED_SUBSET
def test_another_project_sees_none_of_it(world: World) -> None:
    cloud = world.cloud
    task_id = world.task["id"]
    for args in (("environment", "instance", "show", INSTANCE), ("task", "show", task_id),
                 ("environment", "show", ENVIRONMENT), ("tier", "instance", "list", INSTANCE)):
        done = paas_run(cloud, *args, as_cloud=OTHER, timeout=120)
        assert done.returncode != 0 and "HTTP 404" in done.stderr, (args, done.stderr)
    assert INSTANCE not in {i["Name"] for i in paas(cloud, "environment", "instance", "list", as_cloud=OTHER)}
    assert task_id not in {t["ID"] for t in paas(cloud, "task", "list", as_cloud=OTHER)}
    # The raw API: under the other project's own vdc, and under the owner's vdc (not the caller's).
    other_vdc = project_id(cloud, OTHER)
    with cloud.client(OTHER) as c:
        for vdc in (other_vdc, world.vdc):
            base = f"/paas/rest/envInst/org/default/vdc/{vdc}/environmentInstance/{INSTANCE}"
            for path in (base, f"{base}/tierInstance", f"/paas/rest/vdc/{vdc}/task/{task_id}"):
                r = c.get(path)
                assert r.status_code == 404 and r.json()["code"] == 404 and r.json()["message"], (path, r.text)
            r = c.delete(base)
            assert r.status_code == 404, r.text
        r = c.get(f"/paas/rest/catalog/org/default/environment/{ENVIRONMENT}")
        assert r.status_code == 404, r.text
    # Still there for its owner.
    assert paas(cloud, "environment", "instance", "show", INSTANCE)["status"] == "INSTALLED"


def _tier(name: str, products: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "busybox", "flavour": "m1.tiny", "minimumNumberInstances": 1,
            "maximumNumberInstances": 1, "initialNumberInstances": 1, "productReleaseDtos": products, **extra}


def _product(name: str, **attrs: tuple[str, str]) -> dict[str, Any]:
    return {"productName": name, "version": "1.0",
            "attributes": [{"key": k, "value": v, "type": t} for k, (v, t) in attrs.items()]}


@pytest.mark.parametrize(("case", "tiers", "words"), [
    ("cycle", [_tier("a", [_product("shop-web", BACKENDS=("IPALL(b)", "IPALL"))]),
               _tier("b", [_product("shop-kv", PEERS=("IP(a)", "IP"))])], ["cycle", "a", "b"]),
    ("unknown product", [_tier("a", [_product("no-such-product")])], ["no-such-product"]),
    ("min > max", [_tier("a", [_product("shop-web")], minimumNumberInstances=3, maximumNumberInstances=2,
                         initialNumberInstances=3)], ["3", "2"]),
    ("malformed attribute key", [_tier("a", [_product("shop-web", **{"BAD KEY!": ("x", "Plain")})])], ["BAD KEY!"]),
    ("malformed attribute reference", [_tier("a", [_product("shop-web", BACKENDS=("IPALL(", "IPALL"))])],
     ["IPALL"]),
])
def test_bad_environments_get_a_4xx_naming_the_problem(world: World, case: str, tiers: list[dict[str, Any]],
                                                       words: list[str]) -> None:
    body = {"name": f"bad-{case.replace(' ', '-').replace('>', 'gt')}", "description": case, "tierDtos": tiers}
    with world.cloud.client(DEMO) as c:
        r = c.post("/paas/rest/catalog/org/default/environment", json=body)
    assert 400 <= r.status_code < 500, (case, r.status_code, r.text)
    fault = r.json()
    assert fault["code"] == r.status_code, fault
    for word in words:
        assert word in fault["message"], (case, fault)


def test_catalogue_writes_answer_204_and_a_foreign_network_is_a_400_at_the_deploy(world: World) -> None:
    """Pegasus's answers to catalogue writes (204, no body; Cumulo adds Location); a deploy whose tier
    names a network the project does not have is refused at the POST, naming it (no task)."""
    env = "/paas/rest/catalog/org/default/environment/lost-net"
    insts = f"/paas/rest/envInst/org/default/vdc/{world.vdc}/environmentInstance"
    with world.cloud.client(DEMO) as c:
        r = c.post("/paas/rest/catalog/org/default/environment", json={"name": "lost-net", "tierDtos": [
            _tier("a", [], networkDto=[{"networkName": "nowhere"}])]})
        assert r.status_code == 204 and r.content == b"" and r.headers["location"].endswith(env), r.text
        r = c.put(f"{env}/tier/a", json=_tier("a", [], networkDto=[{"networkName": "nowhere"}], initialNumberInstances=1))
        assert r.status_code == 204 and r.content == b"" and r.headers["location"].endswith(f"{env}/tier/a"), r.text
        r = c.post(insts, json={"blueprintName": "lost1", "environmentDto": {"name": "lost-net"}})
        assert r.status_code == 400, r.text
        assert r.json() == {"message": "tier a: network 'nowhere' is not a network of the project", "code": 400}
        assert c.get(f"{insts}/lost1").status_code == 404
        assert c.delete(env).status_code == 204


def test_a_cycle_through_the_cli_is_refused_with_the_message(world: World) -> None:
    env = {"name": "cyclic", "tiers": [
        {"name": "a", "image": "busybox", "flavor": "m1.tiny", "depends_on": ["b"], "products": ["shop-web:1.0"]},
        {"name": "b", "image": "busybox", "flavor": "m1.tiny", "depends_on": ["a"], "products": ["shop-kv:1.0"]},
    ]}
    done = paas_run(world.cloud, "environment", "create", "--file", str(write_yaml(world.files / "cyclic.yaml", env)))
    assert done.returncode != 0 and "tier dependency cycle" in done.stderr and "HTTP 400" in done.stderr, done.stderr
    assert "cyclic" not in {e["Name"] for e in world.paas("environment", "list")}


def test_delete_instance_leaves_nothing(world: World) -> None:
    cloud = world.cloud
    before = iaas_view(cloud)
    done = paas_run(cloud, "environment", "instance", "delete", INSTANCE, "--wait", "--timeout", "600")
    assert done.returncode == 0, done.stderr
    wait_no_paas_servers(cloud, world.instance_ids)
    after = iaas_view(cloud)
    assert not [s for s in after["servers"] if s.startswith("paas-")], after["servers"]
    assert not [g for g in after["security_groups"] if g.startswith("paas-")], after["security_groups"]
    assert not [i for i in after["images"] if i.startswith("paas-")], after["images"]
    assert len(after["floating_ips"]) < len(before["floating_ips"]) or not before["floating_ips"]
    assert not orphans(cloud)
    done = paas_run(cloud, "environment", "instance", "show", INSTANCE)
    assert done.returncode != 0 and "HTTP 404" in done.stderr
