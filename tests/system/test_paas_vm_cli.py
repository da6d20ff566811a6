"""PaaS on QEMU VMs through the real engine (`cumulo up` with the QEMU driver, the `openstack paas`
CLI as the demo project): a one-tier environment of the built-in httpd-web on the `tiny-vm` image
(hw_qemu_guest_agent=yes: recipes through the QEMU guest agent), min 1 max 2, a floating IP per node,
tier metadata bootstrap=user_data.

1. The deploy reaches SUCCESS; the node's page, fetched from the host through its floating IP, is the
   one the install wrote, kept on the VM's persistent disk (the "prepare" step formatted the blank
   root disk, label cumulo-root, and mounted it on /mnt/root: PAAS_ROOT=/mnt/root/paas).
2. A scale to 2: the new node boots from the tier's template image (the qcow2 of node 1's disk),
   its install is SKIPPED, and its configure and start ran AT BOOT from its user_data (its console
   says so), the engine's steps only collecting their results through exec; its page is served with
   the files of node 1's install.
3. The instance's delete leaves no server, no QEMU process and no template image.

Two tiny VMs under TCG. Everything goes with the instance's delete; any QEMU left is killed by its pidfile.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from _paas_util import (
    DEMO,
    DEPLOY_TIMEOUT,
    elapsed,
    nodes,
    paas,
    paas_run,
    paas_servers,
    product_steps,
    wait_no_paas_servers,
    write_yaml,
)
from _runc_util import kill_our_qemus, qemu_processes_of, wait_for, wait_tiny_vm, write_config

from cumulo.image.demo import tinyvm

if TYPE_CHECKING:
    from conftest import CumuloCloud

INSTANCE = "vmweb"
BUILD_CACHE = os.environ.get("CUMULO_TEST_BUILD_CACHE") or str(tinyvm.default_cache())


class World:
    def __init__(self, cloud: CumuloCloud, files: Path) -> None:
        self.cloud, self.files = cloud, files
        self.instance_ids: set[str] = set()


@pytest.fixture(scope="module")
def world(cumulo_launcher: Callable[..., CumuloCloud], tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("paas-vm")
    config = write_config(tmp, {"power_sync_interval": 3.0}, image_build_cache=BUILD_CACHE, qemu_stop_timeout=5,
                          paas_boot_timeout=600.0)
    cloud = cumulo_launcher(driver="qemu", args=["--config", str(config)])
    w = World(cloud, tmp)
    try:
        wait_tiny_vm(cloud)
        yield w
    finally:
        cloud.osc_run("paas", "environment", "instance", "delete", INSTANCE, "--wait", cloud=DEMO, timeout=600)
        with contextlib.suppress(AssertionError):
            wait_no_paas_servers(cloud, w.instance_ids, timeout=180)
        cloud.stop()
        kill_our_qemus(cloud.state_dir)
        cloud.close()


def page(ip: str) -> str | None:
    import httpx

    try:
        r = httpx.get(f"http://{ip}/", timeout=10)
    except httpx.HTTPError:
        return None
    return r.text if r.status_code == 200 else None


def test_a_vm_tier_deploys_then_scales_from_its_template_with_user_data(world: World) -> None:
    cloud = world.cloud
    env = {
        "name": "vm-env",
        "description": "httpd-web on the tiny VM",
        "tiers": [{"name": "web", "image": "tiny-vm", "flavor": "m1.tiny", "min": 1, "max": 2, "initial": 1,
                   "floatingip": True, "metadata": {"bootstrap": "user_data"},
                   "products": [{"name": "httpd-web", "version": "1.0", "attributes": {"BACKENDS": ""}}]}],
    }
    paas(cloud, "environment", "create", "--file", str(write_yaml(world.files / "env.yaml", env)))
    t0 = time.monotonic()
    done = paas_run(cloud, "environment", "instance", "create", INSTANCE, "--environment", "vm-env",
                    "--wait", "--timeout", str(DEPLOY_TIMEOUT))
    assert done.returncode == 0, f"{done.stderr}\n{cloud.log()[-4000:]}"
    assert json.loads(done.stdout)["status"] == "SUCCESS"
    print(f"\ndeploy of one tiny VM node: {elapsed(t0)}")
    world.instance_ids = {s["metadata"]["paas_instance"] for s in paas_servers(cloud)}
    [first] = nodes(cloud, INSTANCE, "web")
    steps = product_steps(cloud, INSTANCE, first["Name"])
    assert all(steps[("httpd-web", s)]["Exit Code"] == 0 for s in ("install", "configure", "start")), steps
    text = wait_for(lambda: page(first["Floating IP"]), timeout=120, interval=0.5, what="node 1's page")
    assert f"httpd-web 1.0 on {first['Name']}" in text, text

    t0 = time.monotonic()
    done = paas_run(cloud, "tier", "scale", INSTANCE, "web", "--count", "2", "--wait", "--timeout", str(DEPLOY_TIMEOUT))
    assert done.returncode == 0, f"{done.stderr}\n{cloud.log()[-4000:]}"
    print(f"scale out 1 -> 2 from the template: {elapsed(t0)}")
    _one, second = nodes(cloud, INSTANCE, "web")
    template = second["From Template"]
    assert template, second
    image = cloud.osc("image", "show", template, cloud=DEMO)
    props: dict[str, Any] = image.get("properties") or {}
    assert image["disk_format"] == "qcow2" and props.get("hw_qemu_guest_agent") == "yes", image
    rows = paas(cloud, "product", "instance", "list", INSTANCE, second["Name"], "--long")
    by = {r["Step"]: r for r in rows}
    assert by["install"]["Step Status"] == "SKIPPED" and template in (by["install"]["Skipped Reason"] or ""), rows
    for step in ("configure", "start"):  # run at boot; the engine's exec collected the result
        assert by[step]["Exit Code"] == 0 and "its result is collected" in (by[step]["Output"] or ""), rows
    console = str(cloud.osc("console", "log", "show", second["Server"], cloud=DEMO, json=False))
    assert "cumulo-paas: products configured and started" in console, console[-3000:]
    assert re.search(r"cumulo-tiny-vm: root disk /dev/\w+ mounted on /mnt/root", console), console[-3000:]
    # the files of node 1's install, from the template's disk, served by node 2's own httpd
    text = wait_for(lambda: page(second["Floating IP"]), timeout=120, interval=0.5, what="node 2's page")
    assert f"httpd-web 1.0 on {first['Name']}" in text, text

    # the delete stops the products through the guest agent, then the VMs and the template go
    done = cloud.osc_run("paas", "environment", "instance", "delete", INSTANCE, "--wait", cloud=DEMO, timeout=600)
    assert done.returncode == 0, f"{done.stderr}\n{cloud.log()[-4000:]}"
    wait_no_paas_servers(cloud, world.instance_ids, timeout=180)
    for uuid in (first["Server"], second["Server"]):
        wait_for(lambda uuid=uuid: not qemu_processes_of(uuid), timeout=60, what=f"no QEMU of {uuid}")
    assert template not in {i["ID"] for i in cloud.osc("image", "list", cloud=DEMO)}
