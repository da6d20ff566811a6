"""Autoscaling of a PaaS tier on a real runc `cumulo up` (issue 13, acceptance 3).

One tier `web` (the built-in httpd-web product, a floating IP, 1..2 nodes) with two CPU policies in
Heat's terms: `up` (cpu > 20 % for 2 periods of 5 s: +1 node) and `down` (cpu < 5 % for 2 periods:
-1 node), cooldown 10 s; the autoscaler evaluates every 2 s. The demo application's burn CGI, fetched
from the host through the node's floating IP, starts a CPU-burning process on the node for a while:
the tier's mean CPU rises over the threshold and the tier scales out to 2 nodes (not beyond max);
once the burner has ended, the mean falls and the tier scales back in to 1 node, the newest one
removed. The events (raw API and `openstack paas event list`) show each decision with the metric
value and the reason; each scale is a task of its own that ends in SUCCESS.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from _paas_util import (
    DEMO,
    DEPLOY_TIMEOUT,
    demo_app,
    drop_instance,
    elapsed,
    launch_paas,
    nodes,
    paas,
    paas_run,
    paas_servers,
    page,
    project_id,
    write_yaml,
)
from _runc_util import wait_for

if TYPE_CHECKING:
    from conftest import CumuloCloud

INSTANCE = "busy"
ENVIRONMENT = "busy-env"
UP = {"name": "up", "metric": "cpu", "comparison": "gt", "threshold": 20, "period": 5, "evaluation_periods": 2,
      "adjustment_type": "change_in_capacity", "scaling_adjustment": 1, "cooldown": 10}
DOWN = {**UP, "name": "down", "comparison": "lt", "threshold": 5, "scaling_adjustment": -1}
BURN_SECONDS = 30  # ~3x what 2 breaching periods take (8.5 s to the scale-out alone); then the load stops
SCALE_TIMEOUT = 600.0


class World:
    def __init__(self, cloud: CumuloCloud, files: Path) -> None:
        self.cloud, self.files = cloud, files
        self.vdc = ""
        self.instance_ids: set[str] = set()

    def events(self) -> list[dict[str, Any]]:
        """The instance's autoscaling events through the raw API (oldest first)."""
        path = f"/paas/rest/envInst/org/default/vdc/{self.vdc}/environmentInstance/{INSTANCE}/event"
        with self.cloud.client(DEMO) as c:
            r = c.get(path)
        assert r.status_code == 200, r.text
        return list(r.json())

    def task(self, task_id: Any) -> dict[str, Any]:
        with self.cloud.client(DEMO) as c:
            r = c.get(f"/paas/rest/vdc/{self.vdc}/task/{task_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())


@pytest.fixture(scope="module")
def world(cumulo_launcher: Callable[..., CumuloCloud], tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("paas-autoscale")
    cloud = launch_paas(cumulo_launcher, tmp, paas_autoscale_interval=2.0)
    w = World(cloud, tmp)
    w.vdc = project_id(cloud)
    yield w
    drop_instance(cloud, INSTANCE, w.instance_ids)
    cloud.close()


def _scale(world: World, decision: str, after: int) -> dict[str, Any]:
    """The first `decision` event after event id position `after` whose task ended in SUCCESS."""
    def done() -> dict[str, Any] | None:
        for ev in world.events()[after:]:
            if ev["decision"] == decision:
                status = world.task(ev["taskId"])["status"]
                assert status in ("RUNNING", "QUEUED", "SUCCESS"), (ev, world.task(ev["taskId"]))
                return ev if status == "SUCCESS" else None
        return None

    ev: dict[str, Any] = wait_for(done, timeout=SCALE_TIMEOUT, interval=1.0,
                                  what=f"a {decision} of the web tier that succeeds")
    return ev


def test_a_cpu_burner_scales_the_tier_out_and_its_end_scales_it_back_in(world: World) -> None:
    cloud = world.cloud
    env = {"name": ENVIRONMENT, "description": "autoscaling", "tiers": [
        {"name": "web", "image": "busybox", "flavor": "m1.tiny", "min": 1, "max": 2, "initial": 1,
         "floatingip": True,
         "products": [{"name": "httpd-web", "version": "1.0",
                       "attributes": {"BACKENDS": {"value": "", "type": "Plain"}}}],
         "policies": [UP, DOWN]},
    ]}
    shown = paas(cloud, "environment", "create", "--file", str(write_yaml(world.files / "env.yaml", env)))
    assert shown["name"] == ENVIRONMENT
    t0 = time.monotonic()
    done = paas_run(cloud, "environment", "instance", "create", INSTANCE, "--environment", ENVIRONMENT,
                    "--wait", "--timeout", str(DEPLOY_TIMEOUT))
    assert done.returncode == 0, f"{done.stderr}\n{cloud.log()[-4000:]}"
    world.instance_ids = {s["metadata"]["paas_instance"] for s in paas_servers(cloud)}
    done = paas_run(cloud, "application", "deploy", INSTANCE, "--product", "httpd-web",
                    "--file", str(demo_app(world.files)), "--wait", "--timeout", "300")
    assert done.returncode == 0, done.stderr
    print(f"deploy + application: {elapsed(t0)}")
    [first] = nodes(cloud, INSTANCE, "web")

    # Idle at min: the down policy alarms, and the only decision is "at min" (recorded once).
    idle = wait_for(lambda: [e for e in world.events() if e["policy"] == "down" and "min size 1" in e["reason"]],
                    timeout=120, interval=1.0, what="the idle tier's decision 'at min'")
    assert idle[0]["decision"] == "no_action" and idle[0]["value"] < 5 and idle[0]["toSize"] == 1, idle
    assert not [e for e in world.events() if e["decision"] != "no_action"]

    # The load: one CPU burned on the web node for a while (the demo application's burn CGI).
    t1 = time.monotonic()
    r = page(first["Floating IP"], f"/cgi-bin/burn?s={BURN_SECONDS}")
    assert r.status_code == 200 and r.json()["burning"] == BURN_SECONDS, r.text
    before = len(world.events())
    out = _scale(world, "scale_out", before)
    print(f"scale out after the load started: {elapsed(t1)}")
    assert (out["policy"], out["metric"], out["fromSize"], out["toSize"]) == ("up", "cpu", 1, 2), out
    assert out["value"] > 20 and out["threshold"] == 20 and out["comparison"] == "gt", out
    assert "cpu" in out["reason"] and "> 20%" in out["reason"] and "from 1 to 2" in out["reason"], out
    web = nodes(cloud, INSTANCE, "web")
    assert [n["Name"] for n in web] == [f"{INSTANCE}-web-1", f"{INSTANCE}-web-2"], web

    # The burner ends by itself: the mean falls under 5 %, and after the cooldown the tier scales in.
    t2 = time.monotonic()
    after_out = world.events().index(out) + 1
    back = _scale(world, "scale_in", after_out)
    print(f"scale in after the scale out: {elapsed(t2)}")
    assert (back["policy"], back["fromSize"], back["toSize"]) == ("down", 2, 1), back
    assert back["value"] < 5 and "< 5%" in back["reason"] and "from 2 to 1" in back["reason"], back
    left = [n for n in nodes(cloud, INSTANCE, "web") if n["Status"] != "UNDEPLOYED"]  # removed rows stay
    assert [n["Name"] for n in left] == [first["Name"]], left  # the newest node went
    assert back["taskId"] != out["taskId"]

    # Never beyond max: no event ever asked for more than 2 nodes.
    events = world.events()
    for e in events:
        print(f"{e['time']} {e['policy']} {e['decision']} {e['value']} {e['fromSize']}->{e['toSize']}: {e['reason']}")
    assert all((e.get("toSize") or 0) <= 2 for e in events), events
    # The CLI shows the same decisions, with the metric value behind each.
    listed = paas(cloud, "event", "list", INSTANCE, "--tier", "web")
    decisions = [row["Decision"] for row in listed]
    assert "scale_out" in decisions and "scale_in" in decisions, listed
    assert all(row["Value"] is not None for row in listed), listed
