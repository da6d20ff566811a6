"""Real containers through the real `openstack` CLI (issue 3, acceptance items 2 and 3).

One `cumulo up` for the module, its local host on the runc driver, plus one fake host that offers
only VM instance types ("qemu", "kvm"): container images must land on the runc host, VM images on
the fake one. Servers are checked from the host (runc state, cgroups, mounts) and from inside
(`runc exec`). Every server the module makes is deleted at the end, and nothing of it may remain.

And on the scaled-out cloud (tests/system/cluster.py): the 3 runc dev hosts, each a `cumulo compute`
in its own namespaces that downloads image bytes from the API process, and one fake host offering
the VM types (in the L3 host's process); a server is checked on the host `server show` names.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from _runc_util import (
    demo_image_file,
    inside,
    launch_runc,
    layered_image,
    leftovers,
    memory_limit,
    runc_state,
    server,
    until,
    wait_gone,
    wait_image_active,
    wait_status,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

if TYPE_CHECKING:
    from conftest import CumuloCloud

MIB = 1024 * 1024
cumulo_configs = ("embedded", "scaled")
USER_DATA = "#!/bin/sh\necho user data for the probe\n"


class World:
    def __init__(self, cloud: CumuloCloud, files: Path) -> None:
        self.cloud, self.files = cloud, files
        self.servers: list[str] = []
        self.public_key = ""

    def osc(self, *args: str, **kw: Any) -> Any:
        return self.cloud.osc(*args, **kw)

    def boot(self, name: str, image: str, *extra: str, flavor: str = "m1.tiny") -> str:
        """`openstack server create` (no --wait: it polls every 5 s); the new server's id."""
        made = self.osc("server", "create", "--image", image, "--flavor", flavor, *extra, name)
        self.servers.append(made["id"])
        return str(made["id"])


@pytest.fixture(scope="module")
def world(cumulo_launcher: Callable[..., CumuloCloud], tmp_path_factory: pytest.TempPathFactory,
          cumulo_config: str) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("runc-cli")
    cloud = launch_runc(cumulo_launcher, tmp, fake_hosts=1, cluster_fake_hosts=1, config=cumulo_config,
                        fake_instance_types=["qemu", "kvm"])
    w = World(cloud, tmp)
    layered = layered_image(tmp / "layered.tar")
    (tmp / "vm.raw").write_bytes(b"\0" * 4096)
    (tmp / "user-data.sh").write_text(USER_DATA)
    w.public_key = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
        + " probe@test"
    )
    (tmp / "probe.pub").write_text(w.public_key + "\n")
    with ThreadPoolExecutor(4) as pool:
        jobs = [
            pool.submit(w.osc, "image", "create", "--container-format", "docker", "--disk-format", "raw",
                        "--property", "hypervisor_type=container", "--public", "--file", str(layered), "layered"),
            pool.submit(w.osc, "image", "create", "--container-format", "docker", "--disk-format", "raw",
                        "--property", "hypervisor_type=container", "--property",
                        "os_command_line=/bin/sh -c 'echo bye-now; exit 7'", "--public",
                        "--file", str(demo_image_file(cloud)), "quick-exit"),
            pool.submit(w.osc, "image", "create", "--container-format", "bare", "--disk-format", "raw",
                        "--property", "hypervisor_type=qemu", "--public", "--file", str(tmp / "vm.raw"), "vm-disk"),
            pool.submit(w.osc, "keypair", "create", "--public-key", str(tmp / "probe.pub"), "probe-key"),
        ]
        for job in jobs:
            job.result()
    yield w
    # Whatever a failed test left: delete it so the host is clean.
    for uuid in w.servers:
        if server(cloud, uuid) is not None:
            cloud.osc_run("server", "delete", uuid)
    for uuid in w.servers:
        try:
            wait_gone(cloud, uuid, timeout=30)
        except AssertionError:
            pass
    cloud.close()


def host_of(s: dict[str, Any]) -> str:
    return str(s["OS-EXT-SRV-ATTR:host"])


def runc_hosts(cloud: CumuloCloud) -> list[str]:
    """The runc compute hosts: the local one, or the scaled-out cloud's dev hosts."""
    return list(getattr(cloud, "hosts", ["cumulo-local"]))


def pid_of(w: World, uuid: str) -> int:
    state = runc_state(w.cloud, uuid)
    assert state is not None and state["status"] == "running", state
    return int(state["pid"])


# ---------------------------------------------------------------------------------------------


def test_hypervisor_show_tells_containers_from_vms(world: World) -> None:
    hyps = {h["Hypervisor Hostname"]: h for h in world.osc("hypervisor", "list")}
    assert all(hyps[h]["Hypervisor Type"] == "container" for h in runc_hosts(world.cloud)), hyps
    assert hyps["fake-host-1"]["Hypervisor Type"] == "fake"
    local = world.osc("hypervisor", "show", runc_hosts(world.cloud)[-1])
    cpu = local["cpu_info"]
    assert local["hypervisor_type"] == "container"
    assert cpu["driver"] == "runc" and cpu["instance_types"] == ["container"]
    assert cpu["driver_details"]["runtime"] == "runc"
    # Which suspend mechanism the driver uses (CRIU does not work on this kernel: the freezer).
    assert cpu["driver_details"].get("suspend") in ("freezer", "criu"), cpu["driver_details"]
    fake = world.osc("hypervisor", "show", "fake-host-1")["cpu_info"]
    assert fake["driver"] == "fake" and "container" not in fake["instance_types"]


def test_images_boot_where_their_hypervisor_type_says(world: World) -> None:
    """The demo image, the 3-layer image with a whiteout, and a VM image (to the fake host)."""
    w = world
    with ThreadPoolExecutor(3) as pool:
        demo, layered, vm = pool.map(
            lambda a: w.boot(*a), [("demo-a", "busybox"), ("layered-a", "layered"), ("vm-a", "vm-disk")]
        )
    shown = {u: wait_status(w.cloud, u, "ACTIVE") for u in (demo, layered, vm)}
    assert {host_of(shown[demo]), host_of(shown[layered])} <= set(runc_hosts(w.cloud))
    assert host_of(shown[vm]) == "fake-host-1"
    # The console log is the container's output.
    assert "hello from cumulo busybox" in until_console(w, demo, "hello from cumulo busybox")
    assert "demo-a" in w.osc("console", "log", "show", demo)
    listing = until_console(w, layered, "layered listing:")
    assert re.search(r"layered listing: keep\.txt new\.txt\s", listing), listing
    # The whiteout removed layer 2's file; the others are there.
    out = inside(w.cloud, layered, "test ! -e /data/gone.txt && cat /data/keep.txt /data/new.txt && pwd && echo $LAYERED")
    assert out.split() == ["kept", "added", "/data", "yes"]
    for u in (vm,):
        w.osc("server", "delete", u)
        wait_gone(w.cloud, u)


def until_console(w: World, uuid: str, text: str, timeout: float = 10.0) -> str:
    found: dict[str, str] = {}

    def has() -> bool:
        found["log"] = w.osc("console", "log", "show", uuid)
        return text in found["log"]

    until(has, timeout, f"{text!r} in the console of {uuid}")
    return found["log"]


def test_inside_a_container(world: World) -> None:
    """Acceptance 3: memory limit = flavor RAM, hostname = server name, config drive, authorized_keys."""
    w = world
    uuid = w.boot("inside-probe", "busybox", "--key-name", "probe-key", "--user-data", str(w.files / "user-data.sh"),
                  "--property", "role=probe")
    wait_status(w.cloud, uuid, "ACTIVE")
    assert int(inside(w.cloud, uuid, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes")) == 512 * MIB
    assert memory_limit(uuid) == 512 * MIB
    assert inside(w.cloud, uuid, "hostname").strip() == "inside-probe"
    meta = json.loads(inside(w.cloud, uuid, "cat /mnt/config/openstack/latest/meta_data.json"))
    assert meta["uuid"] == uuid and meta["name"] == "inside-probe"
    assert {k: v.strip() for k, v in meta["public_keys"].items()} == {"probe-key": w.public_key}
    assert meta["meta"] == {"role": "probe"}
    assert inside(w.cloud, uuid, "cat /mnt/config/openstack/latest/user_data") == USER_DATA
    assert w.public_key in inside(w.cloud, uuid, "cat /root/.ssh/authorized_keys")
    # The config drive is read-only to the guest.
    assert inside(w.cloud, uuid, "touch /mnt/config/x 2>/dev/null && echo writable || echo ro").strip() == "ro"
    # No host filesystem: the guest sees its own root only.
    assert inside(w.cloud, uuid, "test -e /work || echo isolated").strip() == "isolated"


def _demo(world: World) -> str:
    for uuid in world.servers:
        s = server(world.cloud, uuid)
        if s is not None and s["name"] == "demo-a":
            return uuid
    raise AssertionError("demo-a was not booted")


def test_power_operations(world: World) -> None:
    w, uuid = world, _demo(world)
    first = pid_of(w, uuid)
    w.osc("server", "stop", uuid)
    assert wait_status(w.cloud, uuid, "SHUTOFF")["OS-EXT-STS:power_state"] == 4
    assert (runc_state(w.cloud, uuid) or {}).get("status") in (None, "stopped")
    w.osc("server", "start", uuid)
    wait_status(w.cloud, uuid, "ACTIVE")
    second = pid_of(w, uuid)
    assert second != first
    w.osc("server", "reboot", "--soft", uuid)
    wait_status(w.cloud, uuid, "ACTIVE")
    third = pid_of(w, uuid)
    assert third != second
    w.osc("server", "reboot", "--hard", uuid)
    wait_status(w.cloud, uuid, "ACTIVE")
    assert pid_of(w, uuid) != third
    w.osc("server", "pause", uuid)
    assert wait_status(w.cloud, uuid, "PAUSED")["OS-EXT-STS:power_state"] == 3
    assert (runc_state(w.cloud, uuid) or {}).get("status") == "paused"
    w.osc("server", "unpause", uuid)
    wait_status(w.cloud, uuid, "ACTIVE")
    assert (runc_state(w.cloud, uuid) or {}).get("status") == "running"
    w.osc("server", "suspend", uuid)
    assert wait_status(w.cloud, uuid, "SUSPENDED")["OS-EXT-STS:power_state"] == 7
    w.osc("server", "resume", uuid)
    wait_status(w.cloud, uuid, "ACTIVE")
    assert (runc_state(w.cloud, uuid) or {}).get("status") == "running"
    # Every (re)start shows in the console log, with the process output after it.
    log = w.osc("console", "log", "show", uuid)
    assert log.count("hello from cumulo busybox") >= 4, log


def test_resize_confirm_then_revert(world: World) -> None:
    w, uuid = world, _demo(world)
    assert memory_limit(uuid) == 512 * MIB
    w.osc("server", "resize", "--flavor", "m1.small", uuid)
    wait_status(w.cloud, uuid, "VERIFY_RESIZE")
    assert memory_limit(uuid) == 2048 * MIB
    w.osc("server", "resize", "confirm", uuid)
    s = wait_status(w.cloud, uuid, "ACTIVE")
    assert s["flavor"]["original_name"] == "m1.small" and memory_limit(uuid) == 2048 * MIB
    w.osc("server", "resize", "--flavor", "m1.medium", uuid)
    wait_status(w.cloud, uuid, "VERIFY_RESIZE")
    assert memory_limit(uuid) == 4096 * MIB
    w.osc("server", "resize", "revert", uuid)
    s = wait_status(w.cloud, uuid, "ACTIVE")
    assert s["flavor"]["original_name"] == "m1.small" and memory_limit(uuid) == 2048 * MIB
    assert int(inside(w.cloud, uuid, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes")) == 2048 * MIB


def test_rebuild_onto_another_image(world: World) -> None:
    w, uuid = world, _demo(world)
    layered_id = w.osc("image", "show", "layered")["id"]
    w.osc("server", "rebuild", "--image", "layered", uuid)
    s = wait_status(w.cloud, uuid, "ACTIVE")
    assert s["image"]["id"] == layered_id
    assert inside(w.cloud, uuid, "cat /data/new.txt; test ! -e /data/gone.txt && echo whiteout-ok").split() == [
        "added", "whiteout-ok",
    ]
    assert memory_limit(uuid) == 2048 * MIB  # the flavor stays


def test_snapshot_then_boot_from_it(world: World) -> None:
    w, uuid = world, _demo(world)
    inside(w.cloud, uuid, "echo written-before-snapshot > /root/marker.txt")
    made = w.osc("server", "image", "create", "--name", "snap-demo", uuid)
    image = wait_image_active(w.cloud, made["id"])
    assert image["container_format"] == "docker"
    wait_status(w.cloud, uuid, "ACTIVE")
    child = w.boot("from-snap", "snap-demo")
    s = wait_status(w.cloud, child, "ACTIVE")
    assert host_of(s) in runc_hosts(w.cloud)
    assert inside(w.cloud, child, "cat /root/marker.txt").strip() == "written-before-snapshot"
    # The snapshot keeps the rebuilt image's root (layered) and its command.
    assert inside(w.cloud, child, "cat /data/keep.txt").strip() == "kept"


def test_exited_process_becomes_shutoff(world: World) -> None:
    w = world
    uuid = w.boot("quick-exit", "quick-exit")
    t0 = time.monotonic()
    until(lambda: (server(w.cloud, uuid) or {}).get("status") == "SHUTOFF", 15, "the exited container SHUTOFF")
    elapsed = time.monotonic() - t0
    # power_sync_interval is 5 s: an exit is seen within one interval (plus the boot itself).
    assert elapsed < 10.0, elapsed
    log = w.osc("console", "log", "show", uuid)
    assert "bye-now" in log
    # The exit shows in the console log (a line of the driver's own, after the process output).
    after = log[log.index("bye-now"):]
    assert re.search(r"^\[cumulo [^]]+\] .*exited", after, re.MULTILINE), log


def test_delete_leaves_nothing_behind(world: World) -> None:
    w = world
    live = [u for u in w.servers if server(w.cloud, u) is not None]
    assert live
    for u in live:
        w.osc("server", "delete", u)
    for u in live:
        wait_gone(w.cloud, u)
    left = {u: leftovers(w.cloud, u) for u in live}
    assert all(not v for v in left.values()), left
    for host in runc_hosts(w.cloud):
        assert not list((w.cloud.host_dir(host) / "runc").iterdir()), host
    listed = w.cloud.osc_run("server", "list", "--all-projects")
    assert listed.returncode == 0
    ids = [line for line in listed.stdout.splitlines() if any(u in line for u in live)]
    assert ids == []
