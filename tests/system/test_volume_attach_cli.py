"""Volumes moving between a VM and a container (issue 11, acceptance 1 and 4, and the in-use refusals
of 5), through a real `cumulo up` with the runc and QEMU drivers, driven by the real `openstack` CLI.

ONE cloud (runc + qemu on the local host, no external link), ONE tiny VM (q35, for PCIe hot plug)
and ONE busybox container, both the demo user's, booted once for the module. The VM's user_data
starts a watcher (it runs once at boot) that polls /sys/block for virtio disks plugged later and,
for each (named on the console with its serial, the volume id's first 20 characters):
  - mounts it when it holds a filesystem: prints the `data` file a container wrote there, writes
    `from-vm`, unmounts;
  - formats it (busybox mke2fs) when blank, writes `first`, unmounts;
  - prints every later change of its size (sectors), and its disappearance.
The container side is read and written with `runc exec` at /mnt/volumes/<volume id>.

- VM writes, container reads: a blank volume hot-plugged into the running VM is formatted and
  written by the guest; detached; attached to the running container, which reads the same bytes.
- Container writes, VM reads: the reverse, then the container reads what the VM wrote back.
- Online extend of a volume attached to the VM (Cinder 3.42): the guest sees the new size.
- Extend of a volume attached to the container: its filesystem (the one the VM made) grows (df).
- Deleting an in-use volume and attaching an in-use, non-multiattach volume to the other server
  are clear 4xx errors.
Everything the module makes is deleted at the end; no QEMU process, mount or loop device of it
remains.

At the end a volume is attached to the container and the servers are deleted with it: nothing of
any volume (mount, loop device; on a cluster its export and connection) is left.

On the scaled-out cloud (tests/system/cluster.py) the VM and the container run on two dev hosts
that are not the volume host (the volume host's compute services are disabled while they boot,
and an anti-affinity group keeps them apart): every attach there reaches the volume over NBD
(docs/architecture.md "Scale out (issue 14): volumes from any host"): the VM's QEMU opens the
volume host's export itself, the container's host through qemu-storage-daemon's FUSE file, and
every detach leaves no export, FUSE mount, connection or loop device on any host. Online extend
does not reach a server over NBD (the protocol fixes an export's size at the handshake): the two
extend tests are the embedded cloud's only (`configs` marker), and so are the two API refusal
tests (the same code on both configurations; the run's time budget).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from _runc_util import (
    inside,
    kill_our_qemus,
    server,
    volume_of,
    volume_on_host,
    wait_for,
    wait_gone,
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
GIB = 1 << 30
BUILD_CACHE = os.environ.get("CUMULO_TEST_BUILD_CACHE") or str(tinyvm.default_cache())
MARK = "voldata-" + secrets.token_hex(6)

# The VM's user_data: a watcher in the background (user_data runs once, before the boot finishes).
# Disks present at its first pass (the image's root, the config drive) are only remembered.
WATCHER = r"""#!/bin/sh
( seen=" "
  first=1
  while :; do
    for d in /sys/block/vd*; do
      [ -e "$d" ] || continue
      n=${d##*/}
      read -r sz < "$d/size"
      case "$seen" in
        *" $n "*)
          eval "old=\$sz_$n; s=\$ser_$n"
          if [ "$sz" != "$old" ]; then eval "sz_$n=$sz"; echo "VT-SIZE $n $s $sz"; fi
          continue ;;
      esac
      seen="$seen$n "
      s=$(cat "$d/serial" 2>/dev/null)
      eval "sz_$n=$sz; ser_$n=$s"
      [ $first -eq 1 ] && continue
      echo "VT-SEEN $n $s $sz"
      [ -n "$s" ] || continue
      mkdir -p /mnt/$n
      if mount -t ext4 /dev/$n /mnt/$n 2>/dev/null; then
        echo "VT-READ $s $(cat /mnt/$n/data 2>/dev/null)"
        echo "VMDATA-$s" > /mnt/$n/from-vm
      elif mke2fs -q /dev/$n && mount -t ext4 /dev/$n /mnt/$n; then
        echo "VMFIRST-$s" > /mnt/$n/first
        echo "VT-FORMATTED $s"
      else
        echo "VT-FAIL $n $s"
        continue
      fi
      sync
      umount /mnt/$n && echo "VT-DONE $s"
    done
    for n in $seen; do
      [ -e /sys/block/$n ] || { echo "VT-GONE $n"; seen=$(echo "$seen" | sed "s/ $n / /"); }
    done
    if [ $first -eq 1 ]; then echo "VT-WATCHING$seen"; first=0; fi
    sleep 0.3
  done ) </dev/null >/dev/console 2>&1 &
"""


# and on the scaled-out cloud: the servers on two hosts, the volumes on a third (NBD)
cumulo_configs = ("embedded", "scaled")


@dataclass
class World:
    cloud: CumuloCloud
    vm: str = ""
    ct: str = ""
    volumes: list[str] = field(default_factory=list)

    @property
    def scaled(self) -> bool:
        return self.cloud.config_name == "scaled"

    def on_hosts(self, vid: str) -> list[str]:
        """What of the volume is left on the hosts: mounts and loop devices (every dev host of a
        cluster: FUSE files and the volume hosts' mounts too), and its NBD processes."""
        if not self.scaled:
            return volume_on_host(vid)
        found: list[str] = []
        for host in self.cloud.hosts:  # type: ignore[attr-defined]
            with open(self.cloud.mountinfo_of(host)) as fh:
                found += [f"{host}: mount {line.split()[4]}" for line in fh if vid in line]
        loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=False).stdout  # noqa: S607
        found += [f"loop {line}" for line in loops.splitlines() if vid in line]
        found += [f"process {p}" for p in nbd_processes(vid)]
        exports = self.cloud.host_state_dir(self.cloud.volume_host) / "volumes" / ".run" / "nbd-exports"  # type: ignore[attr-defined]
        found += [f"export {d}" for d in (exports.iterdir() if exports.is_dir() else [])]
        return found

    def volume_file(self, vid: str) -> Path:
        if self.scaled:
            return self.cloud.host_state_dir(self.cloud.volume_host) / "volumes" / f"{vid}.raw"  # type: ignore[attr-defined]
        return self.cloud.state_dir / "volumes" / f"{vid}.raw"

    def osc(self, *args: str, **kw: Any) -> Any:
        return self.cloud.osc(*args, cloud=DEMO, **kw)

    def console(self) -> str:
        """The VM's console log, straight from the API (the CLI costs a second per call)."""
        with self.cloud.client(DEMO) as c:
            r = c.post(f"/compute/v2.1/servers/{self.vm}/action", json={"os-getConsoleOutput": {}})
        assert r.status_code == 200, r.text
        return str(r.json()["output"])

    def wait_console(self, pattern: str, what: str, timeout: float = 180.0) -> re.Match[str]:
        rx = re.compile(pattern)
        found: re.Match[str] = wait_for(lambda: rx.search(self.console()), timeout=timeout, interval=0.5, what=what)
        return found

    def volume(self, name: str, size: int = 1) -> str:
        vid = str(self.osc("volume", "create", "--size", str(size), name)["id"])
        self.volumes.append(vid)
        wait_volume(self.cloud, vid, "available", as_cloud=DEMO, timeout=90)
        return vid

    def attach(self, srv: str, vid: str) -> dict[str, Any]:
        self.osc("server", "add", "volume", srv, vid, json=False)
        vol = wait_volume(self.cloud, vid, "in-use", as_cloud=DEMO, timeout=90)
        assert [a["server_id"] for a in vol["attachments"]] == [srv], vol["attachments"]
        return vol

    def detach(self, srv: str, vid: str) -> None:
        self.osc("server", "remove", "volume", srv, vid, json=False)
        wait_volume(self.cloud, vid, "available", as_cloud=DEMO, timeout=90)


@pytest.fixture(scope="module")
def world(cumulo_launcher: Callable[..., CumuloCloud], tmp_path_factory: pytest.TempPathFactory,
          cumulo_config: str) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("volume-attach")
    config = write_config(tmp, {"power_sync_interval": 3.0}, image_build_cache=BUILD_CACHE, qemu_stop_timeout=5)
    cloud = cumulo_launcher(driver="runc,qemu", args=["--config", str(config), "--no-external"], config=cumulo_config)
    w = World(cloud)
    group = ""
    try:
        image = wait_tiny_vm(cloud)
        cloud.osc("image", "set", "--property", "hw_machine_type=q35", image, json=False)  # PCIe hot plug
        # The VM has no NIC and no volume at boot (user_data from the config drive): every q35 server
        # has spare hot-plug root ports, so `server add volume` works on it all the same.
        script = tmp / "watcher.sh"
        script.write_text(WATCHER)
        hint: list[str] = []
        if w.scaled:  # both servers away from the volume host, and apart: every volume comes over NBD
            group = str(w.osc("server", "group", "create", "--policy", "anti-affinity", "vol-apart")["id"])
            hint = ["--hint", f"group={group}"]
            _volume_host_services(cloud, enabled=False)
        try:
            w.vm = str(w.osc("server", "create", "--image", "tiny-vm", "--flavor", "m1.tiny", "--nic", "none",
                             "--use-config-drive", "--user-data", str(script), *hint, "vol-vm")["id"])
            w.ct = str(w.osc("server", "create", "--image", "busybox", "--flavor", "m1.tiny", "--network", "private",
                             *hint, "vol-ct")["id"])
            wait_status(cloud, w.ct, "ACTIVE", timeout=120)
            wait_status(cloud, w.vm, "ACTIVE", timeout=180)
        finally:
            if w.scaled:
                _volume_host_services(cloud, enabled=True)
        if w.scaled:
            hosts = {cloud.server_host(w.vm).removesuffix("-qemu"), cloud.server_host(w.ct)}  # type: ignore[attr-defined]
            assert len(hosts) == 2 and cloud.volume_host not in hosts, hosts  # type: ignore[attr-defined]
        w.wait_console(r"VT-WATCHING", "the VM's disk watcher running", timeout=300)
        yield w
    finally:
        held = ""
        if w.ct and server(cloud, w.ct) is not None:  # deleted with a volume attached: nothing of it may stay
            with contextlib.suppress(Exception):
                held = w.volume("held-at-delete")
                w.attach(w.ct, held)
        for uuid in (w.vm, w.ct):
            if uuid and server(cloud, uuid) is not None:
                cloud.osc_run("server", "delete", uuid)
        for uuid in (w.vm, w.ct):
            with contextlib.suppress(AssertionError):
                if uuid:
                    wait_gone(cloud, uuid, timeout=90)
        for vid in w.volumes:
            cloud.osc_run("volume", "delete", "--force", vid)
        for vid in w.volumes:
            with contextlib.suppress(AssertionError):
                wait_for(lambda vid=vid: volume_of(cloud, vid, as_cloud=DEMO) is None, timeout=60, what=f"volume {vid} gone")
        if group:
            cloud.osc_run("server", "group", "delete", group, cloud=DEMO)
        # Looked at before close(), which removes the state dir (and so every file in it); a
        # cluster's servers and exports live on its dev hosts, which stop() leaves running.
        if held:  # (w.volumes has it: the check below covers it)
            with contextlib.suppress(AssertionError):
                wait_for(lambda: not w.on_hosts(held), timeout=30, what="the deleted server's volume let go")
        left = [f"{vid}: {where}" for vid in w.volumes for where in w.on_hosts(vid)]
        cloud.stop()
        kill_our_qemus(cloud.state_dir)
        left += [f"{vid}: {where}" for vid in w.volumes for where in volume_on_host(vid)] if not w.scaled else []
        left += [str(p) for vid in w.volumes if (p := w.volume_file(vid)).exists()]
        cloud.close()
    assert not left, left


def _volume_host_services(cloud: CumuloCloud, *, enabled: bool) -> None:
    """The volume host's nova-compute services (one per node: runc and qemu) enabled or disabled."""
    host = cloud.volume_host  # type: ignore[attr-defined]
    for svc in cloud.osc("compute", "service", "list", "--service", "nova-compute"):
        if svc["Host"] in (host, f"{host}-qemu"):
            action = ["--enable"] if enabled else ["--disable", "--disable-reason", "volume test: servers elsewhere"]
            cloud.osc("compute", "service", "set", *action, svc["Host"], "nova-compute", json=False)


def nbd_processes(vid: str) -> list[str]:
    """qemu-nbd (the volume host's export) and qemu-storage-daemon (a container host's connection)
    processes whose command line names the volume."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if argv and argv[0] in (b"qemu-nbd", b"qemu-storage-daemon") and any(vid.encode() in a for a in argv):
                found.append(f"{proc.name} {argv[0].decode()}")
    return found


def test_vm_writes_then_container_reads_the_same_bytes(world: World) -> None:
    w = world
    vid = w.volume("vm-to-ct")
    serial = vid[:20]
    vol = w.attach(w.vm, vid)
    assert vol["attachments"][0]["device"].startswith("/dev/vd"), vol["attachments"]
    seen = w.wait_console(rf"VT-SEEN (vd[a-z]+) {serial} (\d+)", "the guest sees the hot-plugged volume")
    dev = seen.group(1)
    assert int(seen.group(2)) * 512 == GIB
    w.wait_console(rf"VT-DONE {serial}", "the guest formatted, wrote and unmounted the volume")
    assert f"VT-FORMATTED {serial}" in w.console()
    w.detach(w.vm, vid)
    w.wait_console(rf"VT-GONE {dev}\b", "the guest sees the volume go")
    w.attach(w.ct, vid)
    assert inside(w.cloud, w.ct, f"cat /mnt/volumes/{vid}/first").strip() == f"VMFIRST-{serial}"
    w.detach(w.ct, vid)
    assert inside(w.cloud, w.ct, f"test -e /mnt/volumes/{vid}/first && echo still || echo gone").strip() == "gone"
    wait_for(lambda: not w.on_hosts(vid), timeout=30, what="the volume's mount and loop device released")


def test_container_writes_then_vm_reads_the_same_bytes(world: World) -> None:
    w = world
    vid = w.volume("ct-to-vm")
    serial = vid[:20]
    w.attach(w.ct, vid)
    if w.scaled:  # the volume host's export and the container host's FUSE connection
        assert sorted(p.split()[1] for p in nbd_processes(vid)) == ["qemu-nbd", "qemu-storage-daemon"]
    inside(w.cloud, w.ct, f"echo {MARK}-{serial} > /mnt/volumes/{vid}/data && sync")
    w.detach(w.ct, vid)
    wait_for(lambda: not w.on_hosts(vid), timeout=30, what="the container's mount and loop device released")
    w.attach(w.vm, vid)
    if w.scaled:  # the VM's QEMU is the NBD client itself: the export only
        assert [p.split()[1] for p in nbd_processes(vid)] == ["qemu-nbd"]
    read = w.wait_console(rf"VT-READ {serial} (\S*)", "the guest mounts the volume and reads the container's file")
    assert read.group(1) == f"{MARK}-{serial}"
    w.wait_console(rf"VT-DONE {serial}", "the guest wrote back and unmounted")
    w.detach(w.vm, vid)
    # and what the VM wrote there is in the container's view of the same volume
    w.attach(w.ct, vid)
    assert inside(w.cloud, w.ct, f"cat /mnt/volumes/{vid}/from-vm").strip() == f"VMDATA-{serial}"
    assert inside(w.cloud, w.ct, f"cat /mnt/volumes/{vid}/data").strip() == f"{MARK}-{serial}"
    w.detach(w.ct, vid)
    wait_for(lambda: not w.on_hosts(vid), timeout=30, what="nothing of the volume left on any host")


@pytest.mark.configs("embedded", reason="online extend does not reach a server over NBD (an export's size is "
                     "fixed at the handshake; docs/architecture.md 'Scale out (issue 14): volumes from any host')")
def test_online_extend_of_a_vm_volume_reaches_the_guest(world: World) -> None:
    w = world
    vid = w.volume("vm-extend")
    serial = vid[:20]
    w.attach(w.vm, vid)
    seen = w.wait_console(rf"VT-SEEN (vd[a-z]+) {serial} (\d+)", "the guest sees the volume")
    dev = seen.group(1)
    w.wait_console(rf"VT-DONE {serial}", "the guest formatted it")
    w.osc("--os-volume-api-version", "3.42", "volume", "set", "--size", "2", vid, json=False)
    wait_volume(w.cloud, vid, "in-use", as_cloud=DEMO, timeout=90, size=2)
    grown = w.wait_console(rf"VT-SIZE {dev} {serial} (\d+)", "the guest sees the new size")
    assert int(grown.group(1)) * 512 == 2 * GIB
    assert w.volume_file(vid).stat().st_size == 2 * GIB
    w.detach(w.vm, vid)


def df_kib(w: World, vid: str) -> int:
    return int(inside(w.cloud, w.ct, f"df -k /mnt/volumes/{vid} | tail -1").split()[1])


@pytest.mark.configs("embedded", reason="online extend does not reach a server over NBD (an export's size is "
                     "fixed at the handshake; docs/architecture.md 'Scale out (issue 14): volumes from any host')")
def test_extend_of_a_container_volume_grows_its_filesystem(world: World) -> None:
    """The filesystem is the VM's (busybox mke2fs, ext2), grown by the runc driver on this host."""
    w = world
    vid = w.volume("ct-extend")
    serial = vid[:20]
    w.attach(w.vm, vid)
    w.wait_console(rf"VT-DONE {serial}", "the guest formatted it")
    w.detach(w.vm, vid)
    w.attach(w.ct, vid)
    before = df_kib(w, vid)
    assert before < GIB // 1024
    w.osc("--os-volume-api-version", "3.42", "volume", "set", "--size", "2", vid, json=False)
    wait_volume(w.cloud, vid, "in-use", as_cloud=DEMO, timeout=90, size=2)
    after = wait_for(lambda: (k := df_kib(w, vid)) > before * 3 // 2 and k, timeout=60,
                     what="the container's filesystem grown")
    assert GIB // 1024 < after <= 2 * GIB // 1024, (before, after)
    assert inside(w.cloud, w.ct, f"cat /mnt/volumes/{vid}/first").strip() == f"VMFIRST-{serial}"
    w.detach(w.ct, vid)


@pytest.mark.configs("embedded", reason="the compute and volume APIs' refusals: the same code in both configurations "
                     "(the scaled variant keeps the cross-host data paths, within the run's time budget)")
def test_in_use_volume_cannot_be_deleted_or_attached_elsewhere(world: World) -> None:
    w = world
    vid = w.volume("in-use")
    w.attach(w.ct, vid)
    gone = w.cloud.osc_run("volume", "delete", vid, cloud=DEMO)
    text = gone.stderr + gone.stdout
    assert gone.returncode != 0 and "400" in text and ("in-use" in text or "attached" in text), text
    twice = w.cloud.osc_run("server", "add", "volume", w.vm, vid, cloud=DEMO)
    text = twice.stderr + twice.stdout
    assert twice.returncode != 0 and "400" in text and ("in-use" in text or "multiattach" in text.lower()), text
    vol = wait_volume(w.cloud, vid, "in-use", as_cloud=DEMO, timeout=90)
    assert [a["server_id"] for a in vol["attachments"]] == [w.ct]
    assert vid not in {v["id"] for v in (server(w.cloud, w.vm) or {}).get("os-extended-volumes:volumes_attached", [])}
    w.detach(w.ct, vid)


@pytest.mark.configs("embedded", reason="the compute and volume APIs' refusals: the same code in both configurations "
                     "(the scaled variant keeps the cross-host data paths, within the run's time budget)")
def test_another_projects_volume_cannot_be_attached(world: World) -> None:
    """The admin project's volume, named by id, to the demo user's own container: the CLI cannot
    find it, and Nova's API (openstacksdk as the demo user) answers 404; nothing is attached."""
    from openstack import exceptions as sdk_exc

    w = world
    admin = w.cloud.connect("cumulo")
    demo = w.cloud.connect(DEMO)
    vid = admin.block_storage.create_volume(size=1, name="admins").id
    try:
        wait_for(lambda: admin.block_storage.get_volume(vid).status == "available", timeout=60,
                 what="the admin's volume available")
        done = w.cloud.osc_run("server", "add", "volume", w.ct, vid, cloud=DEMO)
        text = (done.stderr + done.stdout).lower()
        assert done.returncode != 0 and ("no volume" in text or "not found" in text or "404" in text), text
        with pytest.raises(sdk_exc.NotFoundException):
            demo.compute.create_volume_attachment(w.ct, volume=vid)
        assert list(demo.compute.volume_attachments(w.ct)) == []
        vol = admin.block_storage.get_volume(vid)
        assert vol.status == "available" and vol.attachments == []
    finally:
        admin.block_storage.delete_volume(vid)
        wait_for(lambda: admin.block_storage.find_volume(vid) is None, timeout=60, what="the admin's volume gone")
        admin.close()
        demo.close()
