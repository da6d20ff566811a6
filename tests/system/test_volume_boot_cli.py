"""Boot from volume through the real `openstack` CLI (issue 11, acceptance 2, and the snapshot of a
volume-backed server), on a real `cumulo up` with the QEMU driver.

ONE cloud (QEMU only, no external link, no NICs on the servers) and four short tiny-VM boots,
one at a time, all from volumes:
1. `openstack volume create --image tiny-vm --bootable` makes the root volume (the image's
   metadata, kernel_id/ramdisk_id/os_command_line included, copied onto it);
   `openstack server create --volume` boots it. The tiny VM runs from its initramfs; its root
   DISK is the volume (/dev/vda, serial = the volume id's first 20 characters). user_data changes
   the root: it makes the persistent root filesystem (`mke2fs -L cumulo-root`, which the tiny
   VM's /init mounts on /mnt/root at every boot) and writes a token there, then syncs.
2. The server is deleted (the volume stays: no delete_on_termination) and a new server boots
   from the SAME volume (`--block-device source_type=volume,...,boot_index=0`): /init mounts the
   root filesystem before user_data, which prints the token it finds.
3. `openstack server image create` of that volume-backed server makes a volume snapshot and an
   image whose block_device_mapping property maps it; a third server boots from that image (a new
   volume made from the snapshot, deleted with the server) and sees the token too.
4. `--boot-from-volume` with `--ephemeral` and `--swap`: the guest's disks are the new volume
   (/dev/vda), the ephemeral disk and the swap disk (mkswap's signature).
Everything made is deleted at the end; no QEMU process, volume file or snapshot file remains.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from _runc_util import (
    kill_our_qemus,
    qemu_processes_of,
    server,
    volume_of,
    wait_for,
    wait_gone,
    wait_image_active,
    wait_status,
    wait_tiny_vm,
    wait_volume,
    write_config,
)

from cumulo.image.demo import tinyvm

if TYPE_CHECKING:
    from conftest import CumuloCloud

pytestmark = pytest.mark.system

DEMO = "cumulo-demo"
BUILD_CACHE = os.environ.get("CUMULO_TEST_BUILD_CACHE") or str(tinyvm.default_cache())
TOKEN = "root-change-" + secrets.token_hex(6)


def first_boot_user_data(volume_id: str) -> str:
    """Find the root disk by its serial, make the persistent root filesystem, change it, sync."""
    return f"""#!/bin/sh
dev=""
for d in /sys/block/vd*; do
  s=""
  read -r s < "$d/serial" 2>/dev/null  # sysfs has no trailing newline: read "fails" yet sets s
  [ "$s" = "{volume_id[:20]}" ] && dev=/dev/${{d##*/}}
done
echo "BFV-ROOT-DISK $dev"
mke2fs -q -L cumulo-root "$dev" && mkdir -p /mnt/root && mount -t ext4 "$dev" /mnt/root \\
  && echo "{TOKEN}" > /mnt/root/changed && sync && umount /mnt/root && echo "BFV-WROTE {TOKEN}"
"""


SEE_USER_DATA = """#!/bin/sh
echo "BFV-SEEN $(cat /mnt/root/changed 2>/dev/null || echo nothing)"
"""


class World:
    def __init__(self, cloud: CumuloCloud, files: Path) -> None:
        self.cloud, self.files = cloud, files
        self.servers: list[str] = []
        self.volumes: list[str] = []
        self.images: list[str] = []
        self.snapshots: list[str] = []

    def osc(self, *args: str, **kw: Any) -> Any:
        return self.cloud.osc(*args, cloud=DEMO, **kw)

    def user_data(self, name: str, text: str) -> str:
        path = self.files / name
        path.write_text(text)
        return str(path)

    def console(self, uuid: str) -> str:
        return str(self.osc("console", "log", "show", uuid, json=False))

    def wait_console(self, uuid: str, pred: Callable[[str], bool], what: str, timeout: float = 240.0) -> str:
        def check() -> str | None:
            text = self.console(uuid)
            return text if pred(text) else None

        found: str = wait_for(check, timeout=timeout, interval=0.5, what=f"{what} on the console of {uuid}")
        return found

    def boot(self, name: str, *args: str, user_data: str) -> str:
        sid = str(self.osc("server", "create", "--flavor", "m1.tiny", "--nic", "none", "--user-data", user_data,
                           *args, name)["id"])
        self.servers.append(sid)
        wait_status(self.cloud, sid, "ACTIVE", timeout=240)
        return sid

    def delete_server(self, sid: str) -> None:
        self.osc("server", "delete", sid, json=False)
        wait_gone(self.cloud, sid, timeout=120)


@pytest.fixture(scope="module")
def world(cumulo_launcher: Callable[..., CumuloCloud], tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("volume-boot")
    config = write_config(tmp, {"power_sync_interval": 3.0}, image_build_cache=BUILD_CACHE, qemu_stop_timeout=15)
    cloud = cumulo_launcher(driver="qemu", args=["--config", str(config), "--no-external"])
    w = World(cloud, tmp)
    try:
        wait_tiny_vm(cloud)
        yield w
    finally:
        for sid in w.servers:
            if server(cloud, sid) is not None:
                cloud.osc_run("server", "delete", sid)
        for sid in w.servers:
            with contextlib.suppress(AssertionError):
                wait_gone(cloud, sid, timeout=90)
        for image in w.images:
            cloud.osc_run("image", "delete", image)
        for snap in w.snapshots:
            cloud.osc_run("volume", "snapshot", "delete", snap, cloud=DEMO)
        for snap in w.snapshots:
            with contextlib.suppress(AssertionError):
                wait_for(lambda snap=snap: cloud.osc_run("volume", "snapshot", "show", snap, cloud=DEMO).returncode != 0,
                         timeout=60, what=f"snapshot {snap} gone")
        for vid in w.volumes:
            cloud.osc_run("volume", "delete", vid, cloud=DEMO)
        for vid in w.volumes:
            with contextlib.suppress(AssertionError):
                wait_for(lambda vid=vid: volume_of(cloud, vid, as_cloud=DEMO) is None, timeout=120, what=f"volume {vid} gone")
        cloud.stop()
        kill_our_qemus(cloud.state_dir)
        # before close (which removes the state dir): nothing of ours is left on the host
        leftovers = [f"qemu {pid}" for sid in w.servers for pid in qemu_processes_of(sid)]
        leftovers += [str(p) for p in (cloud.state_dir / "volumes").glob("*.raw")]
        leftovers += [str(p) for p in (cloud.state_dir / "volumes" / "snapshots").glob("*.raw")]
        cloud.close()
    assert leftovers == [], leftovers


def test_root_changes_persist_across_delete_and_reboot_from_the_same_volume(world: World) -> None:
    w = world
    vid = str(w.osc("volume", "create", "--image", "tiny-vm", "--size", "1", "--bootable", "tiny-root")["id"])
    w.volumes.append(vid)
    vol = wait_volume(w.cloud, vid, "available", as_cloud=DEMO, timeout=120)
    assert vol["bootable"] == "true"
    meta = vol["volume_image_metadata"]
    assert meta["image_name"] == "tiny-vm" and meta["kernel_id"] and meta["ramdisk_id"]

    # 1. boot from the volume (`--volume`); the guest changes its root
    sid = w.boot("bfv-1", "--volume", vid, user_data=w.user_data("first.sh", first_boot_user_data(vid)))
    shown = w.osc("server", "show", sid)
    assert [v["id"] for v in shown["volumes_attached"]] == [vid]
    assert not shown["image"] or "booted from volume" in str(shown["image"])
    assert wait_volume(w.cloud, vid, "in-use", as_cloud=DEMO, timeout=120)["attachments"][0]["server_id"] == sid
    text = w.wait_console(sid, lambda t: f"BFV-WROTE {TOKEN}" in t or "user_data exited" in t, "the root change")
    assert "BFV-ROOT-DISK /dev/vda" in text, text[-3000:]  # the volume is the root disk
    assert f"BFV-WROTE {TOKEN}" in text, text[-3000:]
    w.delete_server(sid)
    assert qemu_processes_of(sid) == []
    wait_volume(w.cloud, vid, "available", as_cloud=DEMO, timeout=120)  # kept: no delete_on_termination

    # 2. a new server from the same volume (`--block-device`) sees the change
    sid = w.boot("bfv-2", "--block-device", f"source_type=volume,uuid={vid},destination_type=volume,boot_index=0",
                 user_data=w.user_data("see.sh", SEE_USER_DATA))
    text = w.wait_console(sid, lambda t: "BFV-SEEN" in t, "the root filesystem read back")
    assert "root disk /dev/vda mounted on /mnt/root" in text, text[-3000:]
    assert f"BFV-SEEN {TOKEN}" in text, text[-3000:]

    # 3. a snapshot of the volume-backed server: a volume snapshot plus an image that maps it
    image_id = str(w.osc("server", "image", "create", "--name", "bfv-snap", "--wait", sid)["id"])
    w.images.append(image_id)
    image = wait_image_active(w.cloud, image_id)
    assert image["size"] == 0 and image["bdm_v2"] == "True" and image["root_device_name"] == "/dev/vda"
    [mapping] = json.loads(image["block_device_mapping"])
    assert mapping["source_type"] == "snapshot" and mapping["boot_index"] == 0
    snap_id = str(mapping["snapshot_id"])
    w.snapshots.append(snap_id)
    wait_for(lambda: w.osc("volume", "snapshot", "show", snap_id)["status"] == "available", timeout=120,
             what=f"volume snapshot {snap_id} available")
    assert w.osc("volume", "snapshot", "show", snap_id)["volume_id"] == vid
    w.delete_server(sid)

    # the image boots as a new volume made from the snapshot, which holds the changed root
    sid = w.boot("bfv-3", "--image", image_id, user_data=w.user_data("see.sh", SEE_USER_DATA))
    [attached] = w.osc("server", "show", sid)["volumes_attached"]
    assert attached["id"] != vid
    text = w.wait_console(sid, lambda t: "BFV-SEEN" in t, "the snapshot's root filesystem read back")
    assert f"BFV-SEEN {TOKEN}" in text, text[-3000:]
    new_vid = str(attached["id"])
    w.volumes.append(new_vid)
    w.delete_server(sid)
    assert wait_volume(w.cloud, new_vid, "available", as_cloud=DEMO, timeout=120)["snapshot_id"] == snap_id


DISKS_USER_DATA = r"""#!/bin/sh
for d in /sys/block/vd*; do
  s=""
  read -r s < "$d/serial" 2>/dev/null
  read -r n < "$d/size"
  sig=$(head -c 4096 /dev/${d##*/} | tail -c 10 | tr -cd 'A-Z0-9')
  echo "BFV-DISK ${d##*/} sectors=$n serial=${s:-none} sig=${sig:-none}"
done
echo "BFV-DISKS-DONE"
"""


def test_boot_from_volume_with_ephemeral_and_swap_disks(world: World) -> None:
    """`--boot-from-volume` (image -> new volume) with `--ephemeral` and `--swap`: the guest has the
    volume as /dev/vda, then a 1 GiB ephemeral disk and a 16 MiB swap disk (mkswap's signature)."""
    w = world
    flavor = "bfv.eph"
    w.cloud.osc("flavor", "create", "--ram", "256", "--disk", "1", "--vcpus", "1", "--ephemeral", "1", "--swap", "16",
                "--public", flavor)
    sid = str(w.osc("server", "create", "--image", "tiny-vm", "--boot-from-volume", "1", "--flavor", flavor,
                    "--ephemeral", "size=1", "--swap", "16", "--nic", "none",
                    "--user-data", w.user_data("disks.sh", DISKS_USER_DATA), "bfv-eph")["id"])
    w.servers.append(sid)
    wait_status(w.cloud, sid, "ACTIVE", timeout=240)
    [attached] = w.osc("server", "show", sid)["volumes_attached"]
    vid = str(attached["id"])
    w.volumes.append(vid)  # no delete_on_termination from --boot-from-volume: the teardown deletes it
    text = w.wait_console(sid, lambda t: "BFV-DISKS-DONE" in t, "the guest's disks")
    disks = {m.split()[1]: m for m in text.splitlines() if m.startswith("BFV-DISK ")}
    assert f"serial={vid[:20]}" in disks["vda"] and "sectors=2097152" in disks["vda"], disks
    assert "sectors=2097152" in disks["vdb"] and "serial=none" in disks["vdb"], disks  # ephemeral, 1 GiB
    assert "sectors=32768" in disks["vdc"] and "sig=SWAPSPACE2" in disks["vdc"], disks  # swap, 16 MiB
    w.delete_server(sid)
    assert qemu_processes_of(sid) == []
    wait_volume(w.cloud, vid, "available", as_cloud=DEMO, timeout=120)
