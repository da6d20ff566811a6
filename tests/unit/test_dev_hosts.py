"""`cumulo dev hosts` (cumulo.dev.hosts.DevHosts) with real namespaces: hosts on an underlay
bridge reach it and each other; each host's process runs in a private mount namespace, so two
hosts each make a network namespace of the same name without seeing each other's (nor the
root's); `kill` ends a host's process and what it spawned (a daemon in its own session too); `down`
leaves no namespace, link or process. The test uses its own bridge, address range and host names."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from cumulo.dev.hosts import NS_PREFIX, DevHosts, leftovers

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("unshare") is None,
                                reason="dev hosts need root, ip and unshare")

# A stand-in compute process: makes `cnet-same` in its /run/netns (as the network agent would),
# writes what it sees (and whether the cgroup mounts runc needs are there), spawns a daemon (a new
# session, like dnsmasq) and waits.
PROGRAM = r"""
import os, subprocess, sys, time
if not os.path.exists("/run/netns/cnet-same"):  # a restart finds what the previous run made
    subprocess.run(["ip", "netns", "add", "cnet-same"], check=True)
d = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
cg = int(bool(os.listdir("/sys/fs/cgroup")))
open(sys.argv[1] + ".tmp", "w").write(" ".join(sorted(os.listdir("/run/netns"))) + "\n" + str(d.pid) + "\n" + str(cg))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(600)
"""


def _ping(ns: str, address: str) -> bool:
    busybox = shutil.which("busybox") or "/bin/busybox"
    res = subprocess.run(["ip", "netns", "exec", ns, busybox, "ping", "-c", "1", "-W", "2", address],  # noqa: S603,S607
                         capture_output=True, timeout=30)
    return res.returncode == 0


def _wait(cond, what: str, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"
    except OSError:
        return False


async def test_dev_hosts_up_isolation_kill_down(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    dev = DevHosts(tmp_path / "dev", bridge=f"cut{tag}", cidr="198.18.231.0/24", name_prefix=f"t{tag}-")
    names = [f"t{tag}-1", f"t{tag}-2"]
    try:
        hosts = await dev.up(2)
        assert [h.name for h in hosts] == names and [h.ip for h in hosts] == ["198.18.231.2", "198.18.231.3"]
        assert await dev.up(2) == hosts  # idempotent
        assert _ping(hosts[0].ns, "198.18.231.1") and _ping(hosts[0].ns, hosts[1].ip)

        seen = {}
        for h in hosts:
            out = Path(h.state_dir) / "seen"
            await dev.start(h.name, program=[sys.executable, "-c", PROGRAM, str(out)])
            _wait(out.exists, f"{h.name}'s program")
            seen[h.name] = out.read_text().split("\n")
        # each sees only its own cnet-same (the root namespace sees neither), and the cgroup mounts
        assert all(v[0] == "cnet-same" and v[2] == "1" for v in seen.values())
        assert not os.path.lexists("/run/netns/cnet-same")
        h1, h2 = dev.hosts()
        assert dev.running(h1) and dev.running(h2) and h1.mnt_ns != h2.mnt_ns

        # a restarted compute process finds what its previous run made (the host's mount namespace stays)
        out = Path(h2.state_dir) / "seen"
        out.unlink()
        await dev.stop(names[1])
        assert not dev.running(dev.host(names[1])) and dev.holding(dev.host(names[1]))
        await dev.start(names[1], program=[sys.executable, "-c", PROGRAM, str(out)])
        _wait(out.exists, "the restarted program")
        assert out.read_text().split("\n")[0] == "cnet-same"
        assert dev.host(names[1]).mnt_ns == h2.mnt_ns

        daemon = int(seen[names[0]][1])
        killed = await dev.kill(names[0])
        assert h1.pid in killed and daemon in killed and h1.holder in killed
        assert not _alive(h1.pid) and not _alive(daemon)
        assert dev.running(dev.host(names[1]))  # the other host lives on
        assert not dev.running(dev.host(names[0]))
    finally:
        await dev.down()
    assert leftovers(dev, names) == []
    assert str(tmp_path) not in Path("/proc/self/mounts").read_text()
    assert not any(n.startswith(NS_PREFIX + f"t{tag}") for n in os.listdir("/run/netns"))
    assert not _alive(int(seen.get(names[1], ["", "0"])[1]) or 0) if seen.get(names[1]) else True


async def test_a_dev_host_never_pins_a_loop_mount_of_the_machine(tmp_path: Path) -> None:
    """A loop-backed filesystem mounted on the machine when a dev host is made (another cloud's
    container root disk) is released once the machine unmounts it: the host's copy of the mount
    table does not keep it open (a trial CI's resize waited in vain on such a loop device)."""
    tag = uuid.uuid4().hex[:6]
    image, mnt = tmp_path / "disk.ext4", tmp_path / "mnt"
    subprocess.run(["truncate", "-s", "8M", str(image)], check=True)  # noqa: S603,S607
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)  # noqa: S603,S607
    mnt.mkdir()

    def loops() -> str:  # the loop devices backed by the image (an autoclear one goes with its last mount)
        return subprocess.run(["losetup", "-j", str(image)], capture_output=True, text=True).stdout.strip()  # noqa: S603,S607

    dev = DevHosts(tmp_path / "dev", bridge=f"cul{tag}", cidr="198.18.232.0/24", name_prefix=f"l{tag}-")
    try:
        subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)  # noqa: S603,S607
        assert loops()
        await dev.up(1)
        [h] = dev.hosts()
        await dev.start(h.name, program=[sys.executable, "-c", "import time; time.sleep(600)"])
        assert dev.holding(dev.host(h.name))
        subprocess.run(["umount", str(mnt)], check=True)  # noqa: S603,S607
        _wait(lambda: not loops(), "the loop device to be released (no copy of the mount left open)", timeout=10)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)  # noqa: S603,S607
        await dev.down()
        for line in loops().splitlines():
            subprocess.run(["losetup", "-d", line.split(":")[0]], capture_output=True)  # noqa: S603,S607


async def test_a_dev_host_never_pins_a_container_rootfs_of_the_machine(tmp_path: Path) -> None:
    """The same for a container's rootfs: an overlay whose upper dir lives on a loop-backed root disk
    (the runc driver's layout). The host's copy of the overlay alone kept the disk's filesystem,
    hence its loop device, busy after the machine unmounted both (a resize of an embedded cloud's
    container waited in vain while a cluster's dev host lived: 'the root disk ... is still in use')."""
    tag = uuid.uuid4().hex[:6]
    image, disk, lower, rootfs = tmp_path / "disk.ext4", tmp_path / "disk", tmp_path / "lower", tmp_path / "rootfs"
    subprocess.run(["truncate", "-s", "8M", str(image)], check=True)  # noqa: S603,S607
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)  # noqa: S603,S607
    for d in (disk, lower, rootfs):
        d.mkdir()

    def loops() -> str:
        return subprocess.run(["losetup", "-j", str(image)], capture_output=True, text=True).stdout.strip()  # noqa: S603,S607

    dev = DevHosts(tmp_path / "dev", bridge=f"cuo{tag}", cidr="198.18.233.0/24", name_prefix=f"o{tag}-")
    try:
        subprocess.run(["mount", "-o", "loop", str(image), str(disk)], check=True)  # noqa: S603,S607
        (disk / "upper").mkdir()
        (disk / "work").mkdir()
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",  # noqa: S603,S607
                        f"lowerdir={lower},upperdir={disk / 'upper'},workdir={disk / 'work'}", str(rootfs)], check=True)
        await dev.up(1)
        [h] = dev.hosts()
        await dev.start(h.name, program=[sys.executable, "-c", "import time; time.sleep(600)"])
        assert dev.holding(dev.host(h.name))
        subprocess.run(["umount", str(rootfs)], check=True)  # noqa: S603,S607
        subprocess.run(["umount", str(disk)], check=True)  # noqa: S603,S607
        _wait(lambda: not loops(), "the loop device to be released (no copy of the overlay left open)", timeout=10)
    finally:
        subprocess.run(["umount", "-l", str(rootfs)], capture_output=True)  # noqa: S603,S607
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)  # noqa: S603,S607
        await dev.down()
        for line in loops().splitlines():
            subprocess.run(["losetup", "-d", line.split(":")[0]], capture_output=True)  # noqa: S603,S607


# A stand-in compute process that does what the network agent does with its mapped interface:
# moves it into a network namespace of the host (which dies with the host's mount namespace).
WIRE_PROGRAM = r"""
import os, subprocess, sys, time
mapping = os.environ.get("CUMULO_PHYSICAL_INTERFACE_MAPPINGS", "")
if not os.path.exists("/run/netns/cnet-wire"):
    subprocess.run(["ip", "netns", "add", "cnet-wire"], check=True)
subprocess.run(["ip", "link", "set", "ex0", "netns", "cnet-wire"], check=False)
open(sys.argv[1] + ".tmp", "w").write(mapping)
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(600)
"""


def _has(dev: str, ns: str | None = None) -> bool:
    argv = ["ip", *(["-n", ns] if ns else []), "link", "show", "dev", dev]
    return subprocess.run(argv, capture_output=True, timeout=30).returncode == 0  # noqa: S603


async def test_the_external_wire_gives_each_host_an_interface_made_again_after_a_kill(tmp_path: Path) -> None:
    """physnet="public": each host's `ex0` and an L3 port on a wire bridge, pinging each other; the
    host's compute process is told the mapping; a killed host whose ex0 had moved into one of its
    network namespaces gets it back at start; `down` removes the wire and its ends by name."""
    from cumulo.dev.hosts import PHYS_DEV

    tag = uuid.uuid4().hex[:6]
    dev = DevHosts(tmp_path / "dev", bridge=f"cuw{tag}", cidr="198.18.233.0/24", name_prefix=f"w{tag}-",
                   physnet="public")
    names = [f"w{tag}-1", f"w{tag}-2"]
    l3 = ""
    try:
        hosts = await dev.up(2)
        l3 = await dev.l3_port("l3")
        assert _has(dev.phys_bridge) and _has(l3) and all(_has(PHYS_DEV, h.ns) for h in hosts)
        for i, h in enumerate(hosts):
            subprocess.run(["ip", "-n", h.ns, "addr", "add", f"192.0.2.{i + 2}/24", "dev", PHYS_DEV], check=True)  # noqa: S603,S607
        # the L3 host's end, as its agent uses it: in a network namespace of its own
        subprocess.run(["ip", "netns", "add", f"cnet-w{tag}"], check=True)  # noqa: S603,S607
        try:
            for argv in (["ip", "link", "set", l3, "netns", f"cnet-w{tag}"],
                         ["ip", "-n", f"cnet-w{tag}", "addr", "add", "192.0.2.1/24", "dev", l3],
                         ["ip", "-n", f"cnet-w{tag}", "link", "set", l3, "up"]):
                subprocess.run(argv, check=True)  # noqa: S603
            assert _ping(hosts[0].ns, "192.0.2.3") and _ping(hosts[1].ns, "192.0.2.1")
        finally:
            subprocess.run(["ip", "netns", "delete", f"cnet-w{tag}"], check=False)  # noqa: S603,S607

        out = Path(hosts[0].state_dir) / "mapping"
        await dev.start(names[0], program=[sys.executable, "-c", WIRE_PROGRAM, str(out)])
        _wait(out.exists, "the program")
        assert out.read_text() == f"public:{PHYS_DEV}"
        assert not _has(PHYS_DEV, hosts[0].ns)  # moved into the host's cnet-wire
        await dev.kill(names[0])  # cnet-wire dies with the host's mount namespace, and ex0 with it
        _wait(lambda: not _has(PHYS_DEV, hosts[0].ns), "ex0 gone")
        out.unlink()
        await dev.start(names[0], program=[sys.executable, "-c", "import time; time.sleep(600)"])
        assert _has(PHYS_DEV, hosts[0].ns)  # made again for the restarted host
    finally:
        await dev.down()
    assert leftovers(dev, names) == []
    assert not _has(dev.phys_bridge)
