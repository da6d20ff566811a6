"""The metadata service at 169.254.169.254 from real containers and a real VM (issue 10).

One `cumulo up` with a runc and a QEMU node. The demo project boots servers on its `private`
network (made at first start, with its router) through the real `openstack` CLI. Inside two
containers, busybox wget fetches http://169.254.169.254/: each reads its own meta_data.json, user
data and EC2 meta-data (instance id, local address), never the other's. A tiny VM's user_data
script fetches its meta_data.json and prints it on the console: the VM has a config drive (this
cloud forces one, Cumulo's default), and its user_data came from it. It boots as a microvm, so
hot plug and unplug of a NIC are a 409 naming q35. Every server is deleted at the
end, and no namespace of the cloud's networks and routers remains after it closes.
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
from _runc_util import (
    inside,
    kill_our_qemus,
    server,
    wait_for,
    wait_gone,
    wait_status,
    wait_tiny_vm,
    write_config,
)

from cumulo.image.demo import tinyvm
from cumulo.netplane import netns

if TYPE_CHECKING:
    from conftest import CumuloCloud

cumulo_configs = ("embedded", "scaled")  # and on the scaled-out cloud (tests/system/cluster.py)
DEMO = "cumulo-demo"
BUILD_CACHE = os.environ.get("CUMULO_TEST_BUILD_CACHE") or str(tinyvm.default_cache())
VM_USER_DATA = """#!/bin/sh
i=0
while [ $i -lt 60 ]; do
    wget -q -O /run/md http://169.254.169.254/openstack/latest/meta_data.json && break
    i=$((i + 1))
    sleep 1
done
echo "MD-BEGIN $(tr -d '\\n' < /run/md) MD-END"
"""


class World:
    def __init__(self, cloud: CumuloCloud, files: Path) -> None:
        self.cloud, self.files = cloud, files
        self.servers: list[str] = []
        self.ports: list[str] = []

    def boot(self, name: str, user_data: str, image: str = "busybox") -> str:
        path = self.files / f"{name}.sh"
        path.write_text(user_data)
        made = self.cloud.osc("server", "create", "--image", image, "--flavor", "m1.tiny", "--network", "private",
                              "--user-data", str(path), name, cloud=DEMO)
        self.servers.append(str(made["id"]))
        return str(made["id"])


@pytest.fixture(scope="module")
def world(cumulo_launcher: Callable[..., CumuloCloud], tmp_path_factory: pytest.TempPathFactory,
          cumulo_config: str) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("metadata")
    config = write_config(tmp, image_build_cache=BUILD_CACHE, qemu_stop_timeout=15)
    # Scaled: each server's metadata is answered on its own dev host (the listener in the network's
    # namespace there, the documents from the shared database; the router on the L3 host). Its dev
    # hosts run runc only: the VM test is the embedded cloud's (see VM_EMBEDDED).
    driver = "runc,qemu" if cumulo_config == "embedded" else "runc"
    cloud = cumulo_launcher(driver=driver, args=["--config", str(config), "--no-external"], config=cumulo_config)
    w = World(cloud, tmp)
    networks = [n["ID"] for n in cloud.osc("network", "list")]
    routers = [r["ID"] for r in cloud.osc("router", "list")]
    try:
        yield w
    finally:
        for uuid in w.servers:
            if server(cloud, uuid) is not None:
                cloud.osc_run("server", "delete", uuid)
        for uuid in w.servers:
            with contextlib.suppress(AssertionError):
                wait_gone(cloud, uuid, timeout=60)
        for port in w.ports:
            cloud.osc_run("port", "delete", port, cloud=DEMO)
        cloud.stop()
        kill_our_qemus(cloud.state_dir)
        cloud.close()
    assert not left_on_host(networks, routers)


def left_on_host(networks: list[str], routers: list[str]) -> list[str]:
    """The cloud's network and router namespaces still on the host (close removes them)."""
    names = [*map(netns.network_ns, networks), *map(netns.router_ns, routers)]
    return [n for n in names if netns.exists(n)]


def fetch(cloud: CumuloCloud, uuid: str, path: str, timeout: float = 30.0) -> str:
    """busybox wget of http://169.254.169.254<path> inside the container, retried until it answers
    (the NIC and the listener come up with the server)."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            return inside(cloud, uuid, f"wget -q -O - http://169.254.169.254{path}")
        except AssertionError as exc:
            last = str(exc)
        if time.monotonic() > deadline:
            raise AssertionError(f"no answer from the metadata service for {path}: {last}")
        time.sleep(0.2)


def address_of(s: dict[str, Any]) -> str:
    addresses = s["addresses"]
    if isinstance(addresses, str):  # the CLI's "private=10.0.0.5" form
        return addresses.split("=", 1)[1].split(",")[0].strip()
    return str(addresses["private"][0] if isinstance(addresses["private"][0], str)
               else addresses["private"][0]["addr"])


def test_each_container_reads_its_own_metadata(world: World) -> None:
    one = world.boot("md-one", "#!/bin/sh\necho one\n")
    two = world.boot("md-two", "#!/bin/sh\necho two\n")
    shown = {u: wait_status(world.cloud, u, "ACTIVE", timeout=120) for u in (one, two)}
    for uuid, name in ((one, "md-one"), (two, "md-two")):
        doc = json.loads(fetch(world.cloud, uuid, "/openstack/latest/meta_data.json"))
        assert doc["uuid"] == uuid and doc["name"] == name, doc
        assert fetch(world.cloud, uuid, "/openstack/latest/user_data") == f"#!/bin/sh\necho {name[3:]}\n"
        net = json.loads(fetch(world.cloud, uuid, "/openstack/latest/network_data.json"))
        assert [n["ip_address"] for n in net["networks"]] == [address_of(shown[uuid])], net
        assert fetch(world.cloud, uuid, "/latest/meta-data/instance-id").startswith("i-")
        assert fetch(world.cloud, uuid, "/latest/meta-data/local-ipv4") == address_of(shown[uuid])
    listing = fetch(world.cloud, one, "/openstack").split("\n")
    assert listing[-1] == "latest"


VM_EMBEDDED = pytest.mark.configs(
    "embedded", reason="the scaled variant keeps to the containers' metadata answered on their dev hosts (a TCG "
    "boot of the VM there would add ~1.5 min; the config drive and the microvm's hot plug are not cross-host)")


@VM_EMBEDDED
def test_a_vm_reads_its_metadata_from_its_user_data(world: World) -> None:
    wait_tiny_vm(world.cloud)
    vm = world.boot("md-vm", VM_USER_DATA, image="tiny-vm")
    wait_status(world.cloud, vm, "ACTIVE", timeout=180)

    def printed() -> dict[str, Any] | None:
        text = world.cloud.osc("console", "log", "show", vm, cloud=DEMO, json=False)
        m = re.search(r"MD-BEGIN (\{.*\}) MD-END", text)
        return json.loads(m.group(1)) if m else None

    doc: dict[str, Any] = wait_for(printed, timeout=180, interval=1.0, what="meta_data.json on the VM's console")
    assert doc["uuid"] == vm and doc["name"] == "md-vm", doc
    # This cloud forces the config drive (Cumulo's default): the user_data came from it.
    text = world.cloud.osc("console", "log", "show", vm, cloud=DEMO, json=False)
    assert re.search(r"cumulo-tiny-vm: config drive \S+ mounted on /mnt/config", text), text[-3000:]
    # The tiny VM boots as a microvm (no PCI bus): no NIC hot plug or unplug while it runs, a 409
    # that names the way out (q35), and the server keeps its NIC.
    port = world.cloud.osc("port", "create", "--network", "private", "md-vm-extra", cloud=DEMO)
    world.ports.append(str(port["id"]))
    [own] = world.cloud.osc("port", "list", "--server", vm, cloud=DEMO)
    for verb, pid in (("add", port["id"]), ("remove", own["ID"])):
        with pytest.raises(world.cloud.OscError) as refused:
            world.cloud.osc("server", verb, "port", vm, pid, cloud=DEMO, json=False)
        assert "409" in refused.value.stderr and "hw_machine_type=q35" in refused.value.stderr, refused.value.stderr
    assert world.cloud.osc("port", "show", port["id"], cloud=DEMO)["device_id"] == ""
    assert [p["ID"] for p in world.cloud.osc("port", "list", "--server", vm, cloud=DEMO)] == [own["ID"]]
