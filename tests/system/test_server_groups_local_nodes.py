"""Server groups on the real local nodes: `cumulo up` with runc and QEMU on one host (issue 8, section 3).

Affinity in Nova is per compute HOST, not per node: the runc node ("cumulo-local") and the QEMU node
("cumulo-local-qemu") are one host. A real container joins an anti-affinity group; a VM in the same
group must then be refused with NoValidHost although the QEMU node has room (the fault shows that
every other filter let the QEMU node through and ServerGroupAntiAffinityFilter removed it), while a
VM without the group would be allowed there. Everything the module makes is deleted at the end.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from _runc_util import layered_image, leftovers, server, wait_gone, wait_status, write_config

if TYPE_CHECKING:
    from conftest import CumuloCloud

pytestmark = pytest.mark.system

CT_NODE = "cumulo-local"
VM_NODE = "cumulo-local-qemu"


class World:
    def __init__(self, cloud: CumuloCloud) -> None:
        self.cloud = cloud
        self.servers: list[str] = []
        self.images: dict[str, str] = {}

    def osc(self, *args: str, **kw: Any) -> Any:
        return self.cloud.osc(*args, **kw)

    def boot(self, name: str, image: str, *extra: str) -> str:
        made = self.osc("server", "create", "--image", self.images[image], "--flavor", "m1.tiny", *extra, name)
        self.servers.append(str(made["id"]))
        return str(made["id"])


@pytest.fixture(scope="module")
def world(cumulo_launcher: Callable[..., CumuloCloud], tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp: Path = tmp_path_factory.mktemp("groups-local")
    config = write_config(tmp, {"power_sync_interval": 5.0})
    cloud = cumulo_launcher(driver="runc,qemu", args=["--config", str(config)])
    w = World(cloud)
    try:
        layered = layered_image(tmp / "layered.tar")
        (tmp / "disk.raw").write_bytes(b"\0" * 4096)
        w.images["container"] = w.osc("image", "create", "--container-format", "docker", "--disk-format", "raw",
                                      "--public", "--file", str(layered), "group-ct")["id"]
        w.images["vm"] = w.osc("image", "create", "--container-format", "bare", "--disk-format", "raw",
                               "--public", "--file", str(tmp / "disk.raw"), "group-vm")["id"]
        yield w
    finally:
        for uuid in w.servers:
            if server(cloud, uuid) is not None:
                cloud.osc_run("server", "delete", uuid)
        for uuid in w.servers:
            wait_gone(cloud, uuid, timeout=60)
            assert leftovers(cloud, uuid) == [], uuid
        cloud.close()


def test_local_nodes_are_one_host_for_anti_affinity(world: World) -> None:
    nodes = {h["Hypervisor Hostname"]: h for h in world.osc("hypervisor", "list")}
    assert {CT_NODE, VM_NODE} <= set(nodes), nodes
    group = world.osc("server", "group", "create", "--policy", "anti-affinity", "apart", microversion="2.64")

    ct = world.boot("apart-ct", "container", "--hint", f"group={group['id']}")
    shown = wait_status(world.cloud, ct, "ACTIVE", timeout=120)
    assert shown["OS-EXT-SRV-ATTR:hypervisor_hostname"] == CT_NODE

    vm = world.boot("apart-vm", "vm", "--hint", f"group={group['id']}")
    failed = wait_status(world.cloud, vm, "ERROR", timeout=60)
    message = world.osc("server", "show", vm)["fault"]["message"]
    assert failed["OS-EXT-SRV-ATTR:host"] is None
    assert message.startswith("No valid host was found."), message
    # The QEMU node passed every other filter (the image filter removed only the runc node)...
    assert re.search(r"ImagePropertiesFilter removed 1( of 2)?\b", message), message
    # ...and anti-affinity removed it, because its host already holds the container.
    assert re.search(r"ServerGroupAntiAffinityFilter removed 1( of 1)?\b", message), message

    members = world.osc("server", "group", "show", group["id"])["members"]
    assert ct in str(members) and vm in str(members)
    assert world.osc("server", "show", ct, microversion="2.71")["server_groups"] in ([group["id"]], str([group["id"]]))
    world.osc("server", "group", "delete", group["id"], json=False)
