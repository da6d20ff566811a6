"""Nova's side of volumes through a real `cumulo up` with runc, driven by the real `openstack` CLI.

One runc cloud (no external link), two busybox containers: a volume attached to a running container
(`server add volume`) is in-use with its device name, mounted at /mnt/volumes/<id>, written, grown
online (Cinder 3.42 extend -> the volume-extended event -> the runc driver grows the filesystem),
detached (`server remove volume`), attached to the second container with delete_on_termination
(2.79), read there, and deleted with that server. Nothing of the volume is left on the host.
The cross-kind (VM <-> container) acceptance tests are tests/system/test_volume_attach_cli.py's.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
from _runc_util import (
    inside,
    server,
    volume_of,
    volume_on_host,
    wait_for,
    wait_gone,
    wait_status,
    wait_volume,
    write_config,
)

if TYPE_CHECKING:
    from conftest import CumuloCloud

pytestmark = pytest.mark.system

MARK = "nova-attach-" + secrets.token_hex(6)


# and on the scaled-out cloud (tests/system/cluster.py), the servers on its volume host
cumulo_configs = ("embedded", "scaled")


@pytest.fixture(scope="module")
def cloud(cumulo_launcher: Callable[..., CumuloCloud], tmp_path_factory: pytest.TempPathFactory,
          cumulo_config: str) -> Iterator[CumuloCloud]:
    config = write_config(tmp_path_factory.mktemp("nova-attach"), tiny_vm_image="off")
    c = cumulo_launcher(driver="runc", args=["--config", str(config), "--no-external"], config=cumulo_config)
    made: list[str] = []
    c.made = made  # type: ignore[attr-defined]
    yield c
    for uuid in made:
        if server(c, uuid) is not None:
            c.osc_run("server", "delete", uuid)
    for uuid in made:
        try:
            wait_gone(c, uuid, timeout=60)
        except AssertionError:
            pass
    for vol in c.osc("volume", "list"):
        c.osc_run("volume", "delete", "--force", vol["ID"])
    c.close()


def _boot(cloud: CumuloCloud, name: str) -> str:
    # the servers run on the volume host: the online extend below needs the file (a server on another
    # host reaches the volume over NBD, whose export's size is fixed: test_volume_attach_cli's scaled variant)
    zone = ["--availability-zone", f"nova:{cloud.volume_host}"] if cloud.volume_host else []
    made = cloud.osc("server", "create", "--image", "busybox", "--flavor", "m1.nano", "--nic", "none", *zone, name,
                     microversion="2.37")
    cloud.made.append(made["id"])  # type: ignore[attr-defined]
    wait_status(cloud, made["id"], "ACTIVE", timeout=120)
    return str(made["id"])


def _action_done(cloud: CumuloCloud, uuid: str, action: str) -> bool:
    """Whether the server's newest `action` has all its events finished, successfully."""
    h = {"OpenStack-API-Version": "compute 2.79"}
    with cloud.client("cumulo") as c:
        actions = c.get(f"/compute/v2.1/servers/{uuid}/os-instance-actions", headers=h).json()["instanceActions"]
        mine = [a for a in actions if a["action"] == action]
        if not mine:
            return False
        events = c.get(f"/compute/v2.1/servers/{uuid}/os-instance-actions/{mine[0]['request_id']}",
                       headers=h).json()["instanceAction"]["events"]
    assert all(e["result"] != "Error" for e in events), [e.get("traceback") for e in events]
    return bool(events) and all(e["finish_time"] for e in events)


def _fs_blocks(cloud: CumuloCloud, uuid: str, vid: str) -> int:
    """The size of the mounted filesystem in 1K blocks, as df inside the container shows it."""
    out = inside(cloud, uuid, f"df -k /mnt/volumes/{vid} | tail -1")
    return int(out.split()[1])


def test_attach_write_extend_detach_and_delete_on_termination(cloud: CumuloCloud) -> None:
    osc = cloud.osc
    first, second = _boot(cloud, "vol-a"), _boot(cloud, "vol-b")
    vid = osc("volume", "create", "--size", "1", "data")["id"]
    wait_volume(cloud, vid, "available", as_cloud="cumulo", timeout=60)

    # attach to a running container: in-use with its device, mounted inside
    osc("server", "add", "volume", "--device", "/dev/vdb", first, vid, json=False)
    vol = wait_volume(cloud, vid, "in-use", as_cloud="cumulo", timeout=60)
    [att] = vol["attachments"]
    assert (att["server_id"], att["device"]) == (first, "/dev/vdb")
    listed = osc("server", "volume", "list", first)
    assert [(a["Volume ID"], a["Device"]) for a in listed] == [(vid, "/dev/vdb")], listed
    shown = osc("server", "show", first)
    assert [v["id"] for v in shown["volumes_attached"]] == [vid], shown["volumes_attached"]
    inside(cloud, first, f"echo {MARK} > /mnt/volumes/{vid}/mark && sync")
    assert inside(cloud, first, f"cat /mnt/volumes/{vid}/mark").strip() == MARK

    # online extend (Cinder 3.42): the worker grows the file, the agent has the driver grow the fs
    before = _fs_blocks(cloud, first, vid)
    osc("--os-volume-api-version", "3.42", "volume", "set", "--size", "2", vid, json=False)
    wait_volume(cloud, vid, "in-use", as_cloud="cumulo", timeout=60, size=2)
    # Wait for the agent's extend_volume action to finish without touching the mount meanwhile: a
    # process inside it at the moment of the remount would defer the growth (documented).
    wait_for(lambda: _action_done(cloud, first, "extend_volume"), timeout=60, what="the extend_volume action")
    # Grown now, or (a process held it at that moment: the runc driver's documented deferral) at
    # the detach below; the second container sees it grown either way.
    log = osc("console", "log", "show", first, json=False)
    assert f"volume {vid} grew to {2 << 30} bytes" in log, log[-2000:]
    assert inside(cloud, first, f"cat /mnt/volumes/{vid}/mark").strip() == MARK

    # detach: available, gone from the container and from the host
    osc("server", "remove", "volume", first, vid, json=False)
    wait_volume(cloud, vid, "available", as_cloud="cumulo", timeout=60)
    assert inside(cloud, first, f"test -e /mnt/volumes/{vid}/mark && echo still || echo gone").strip() == "gone"
    assert osc("server", "volume", "list", first) == []
    wait_for(lambda: not volume_on_host(vid, cloud), timeout=30, what="the volume's mounts and loop device gone")

    # the other container, with delete_on_termination (2.79): same bytes; the server's delete takes it
    osc("server", "add", "volume", "--enable-delete-on-termination", second, vid, json=False, microversion="2.79")
    vol = wait_volume(cloud, vid, "in-use", as_cloud="cumulo", timeout=60)
    assert vol["attachments"][0]["server_id"] == second
    assert inside(cloud, second, f"cat /mnt/volumes/{vid}/mark").strip() == MARK
    assert _fs_blocks(cloud, second, vid) > before * 3 // 2
    [row] = osc("server", "volume", "list", second, microversion="2.79")
    assert row["Delete On Termination?"] is True, row
    osc("server", "delete", "--wait", second, json=False)
    wait_for(lambda: volume_of(cloud, vid, as_cloud="cumulo") is None, timeout=60, what=f"volume {vid} deleted with its server")
    assert not (cloud.host_dir(cloud.volume_host) / "volumes" / f"{vid}.raw").exists()
    assert not volume_on_host(vid, cloud)


@pytest.mark.configs("scaled", reason="a cold migration off the volume host: the one-host cloud has no other host")
def test_a_container_migrated_off_the_volume_host_keeps_its_volume_over_nbd(cloud: CumuloCloud) -> None:
    """Issue 14, volumes from any host: a container on the volume host (its volume the local file)
    cold-migrated to another host reaches the same volume there over NBD (the destination's agent
    reconnects the attachment: the volume host's export), with the bytes written before; its
    detach leaves no export, connection, mount or loop device on any host."""
    osc = cloud.osc
    uuid = _boot(cloud, "vol-move")
    vid = osc("volume", "create", "--size", "1", "moving")["id"]
    wait_volume(cloud, vid, "available", as_cloud="cumulo", timeout=60)
    osc("server", "add", "volume", uuid, vid, json=False)
    wait_volume(cloud, vid, "in-use", as_cloud="cumulo", timeout=60)
    inside(cloud, uuid, f"echo {MARK}-moved > /mnt/volumes/{vid}/mark && sync")
    osc("server", "migrate", uuid, json=False)
    wait_status(cloud, uuid, "VERIFY_RESIZE", timeout=180)
    osc("server", "resize", "confirm", uuid, json=False)
    wait_status(cloud, uuid, "ACTIVE", timeout=120)
    dest = cloud.server_host(uuid)  # type: ignore[attr-defined]
    assert dest != cloud.volume_host
    conns = cloud.host_dir(dest) / "volumes" / ".run" / "nbd-connections"
    assert (conns / vid / "disk").exists()  # the volume host's export, as a file of the destination
    assert inside(cloud, uuid, f"cat /mnt/volumes/{vid}/mark").strip() == f"{MARK}-moved"
    assert volume_of(cloud, vid, as_cloud="cumulo")["status"] == "in-use"  # type: ignore[index]
    osc("server", "remove", "volume", uuid, vid, json=False)
    wait_volume(cloud, vid, "available", as_cloud="cumulo", timeout=60)
    exports = cloud.host_dir(cloud.volume_host) / "volumes" / ".run" / "nbd-exports"
    wait_for(lambda: not volume_on_host(vid, cloud) and not (exports.is_dir() and any(exports.iterdir()))
             and not (conns / vid).exists(), timeout=30, what="nothing of the volume left on the hosts")
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=False).stdout  # noqa: S607
    assert vid not in loops
    osc("volume", "delete", vid, json=False)
