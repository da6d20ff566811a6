"""benchmarks/volumes.py's pieces that need no cloud: the timed dd runs (host, container, VM
guest), the VM's user_data watcher, console waits, attach/detach rounds, and (c) the compute
drivers' own attach and detach on a container and a q35 tiny VM in a temp state dir."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid as uuidlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import _harness as h

GIB = 1 << 30
DD_MIB = 512
DD_RUNS = 3
RAM_MIB = 128  # the guest's RAM reference (m1.tiny has 512 MB)


def dd_script(target: str, extra_conv: str = "") -> str:
    """One timed dd (seconds from /proc/uptime on one line: `VBENCH-DD <start> <end>`)."""
    conv = "fsync" + extra_conv
    return (f"read a _ </proc/uptime; /bin/busybox dd if=/dev/zero of={target} bs=1M count={DD_MIB} conv={conv} 2>/dev/null;"
            f" read b _ </proc/uptime; echo VBENCH-DD $a $b")


def dd_seconds(text: str, tag: str = "VBENCH-DD") -> list[float]:
    out = []
    for line in text.splitlines():
        parts = line.split()
        if tag in parts and len(parts) >= parts.index(tag) + 3:
            i = parts.index(tag)
            with contextlib.suppress(ValueError):
                out.append(float(parts[i + 2]) - float(parts[i + 1]))
    return out


def mbps(seconds: list[float], mib: int = DD_MIB) -> dict[str, Any]:
    med = statistics.median(seconds)
    return {"runs_s": [round(s, 3) for s in seconds], "median_s": round(med, 3), "mib": mib,
            "mb_per_s": round(mib * (1 << 20) / 1e6 / med, 1) if med > 0 else None}


def vm_user_data(serial: str) -> bytes:
    """The VM's user_data: a background loop that reports when a disk with `serial` appears and goes
    (polling /sys/block every 0.1 s), and runs the timed dd runs onto it the first time it appears."""
    dd = dd_script("/dev/$dev")
    # The guest's own ceiling: the same dd into its RAM (the initramfs), RAM_MIB of it.
    ram = dd_script("/tmp/vbench-ram").replace(f"count={DD_MIB}", f"count={RAM_MIB}").replace("VBENCH-DD", "VBENCH-RAM")
    return f"""#!/bin/sh
( dev=""; k=0
  while :; do
    found=""
    for d in /sys/block/vd*; do
      [ "$(cat $d/serial 2>/dev/null)" = "{serial}" ] && found=${{d##*/}}
    done
    if [ -n "$found" ] && [ -z "$dev" ]; then
      dev=$found; k=$((k+1)); echo "VBENCH-SEEN $k $dev"
      if [ $k = 1 ]; then
        for r in {' '.join(str(i) for i in range(DD_RUNS))}; do {dd}; done
        {ram}; rm -f /tmp/vbench-ram
        echo "VBENCH-DD-END"
      fi
    elif [ -z "$found" ] && [ -n "$dev" ]; then
      dev=""; echo "VBENCH-GONE $k"
    fi
    sleep 0.1
  done ) </dev/null >/dev/console 2>&1 &
echo VBENCH-READY
""".encode()


def host_dd(path: Path) -> list[float]:
    """DD_RUNS timed dd runs of the busybox binary on the host, into `path` (not truncated)."""
    script = dd_script(str(path), ",notrunc")
    out = []
    for _ in range(DD_RUNS):
        res = subprocess.run(["sh", "-c", script], check=True, capture_output=True, text=True)  # noqa: S603, S607
        out += dd_seconds(res.stdout)
    return out


def runc_dd(runc_root: Path, cid: str, directory: str) -> list[float]:
    """DD_RUNS timed dd runs inside a running container, into a file under `directory`."""
    script = dd_script(f"{directory}/vbench-dd.bin") + f"; rm -f {directory}/vbench-dd.bin"
    out = []
    for _ in range(DD_RUNS):
        res = subprocess.run(["runc", "--root", str(runc_root), "exec", cid, "sh", "-c", script],  # noqa: S603, S607
                             check=True, capture_output=True, text=True, timeout=300)
        out += dd_seconds(res.stdout)
    return out


def loop_devices_of(path: Path) -> list[str]:
    res = subprocess.run(["losetup", "-j", str(path)], capture_output=True, text=True, check=False)  # noqa: S603, S607
    return [ln.split(":", 1)[0] for ln in res.stdout.splitlines() if ln.strip()]


def mounts_under(prefix: str) -> list[str]:
    with open("/proc/self/mountinfo") as fh:
        return [ln.split()[4] for ln in fh if ln.split()[4].startswith(prefix)]


async def wait_console(read: Callable[[], Awaitable[str]], pred: Callable[[str], bool], what: str,
                       timeout: float = 300.0) -> tuple[float, str]:
    t0 = time.perf_counter()
    while True:
        text = await read()
        if pred(text):
            return time.perf_counter() - t0, text
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"no {what} on the console after {timeout}s:\n{text[-2000:]}")
        await asyncio.sleep(0.01)


def file_reader(path: Path) -> Callable[[], Awaitable[str]]:
    async def read() -> str:
        try:
            return (await asyncio.to_thread(path.read_bytes)).decode(errors="replace")
        except OSError:
            return ""
    return read


async def attach_rounds(attach: Callable[[], Awaitable[Any]], detach: Callable[[], Awaitable[Any]],
                        rounds: int, between: Callable[[int], Awaitable[Any]] | None = None,
                        set_mode: Callable[[str], None] | None = None) -> dict[str, list[Any]]:
    """rounds x (attach, [between(i)], detach); the raw results of each call, in order. With
    `set_mode`, the watch mode alternates: a DB-watched round, then a GET-polled one."""
    out: dict[str, list[Any]] = {"attach": [], "detach": [], "between": []}
    for i in range(rounds):
        if set_mode is not None:
            set_mode("db" if i % 2 == 0 else "get")
        out["attach"].append(await attach())
        if between is not None:
            out["between"].append(await between(i))
        out["detach"].append(await detach())
    if set_mode is not None:
        set_mode("db")
    return out


def split(results: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Summaries of the DB-watched and of the GET-polled ones."""
    return {mode: h.summary_ms([r[mode] for r in results if mode in r]) for mode in ("db", "get")}


# -- (c) the drivers alone -------------------------------------------------------------------------


async def driver_attach(n: int, vm_rounds: int, res: dict[str, Any]) -> None:
    from cumulo import conf as conf_mod
    from cumulo.compute.drivers import load_driver
    from cumulo.compute.drivers.base import DiskSpec, FlavorSpec, ImageSpec, InstanceSpec
    from cumulo.image.demo import tinyvm
    from cumulo.image.demo.busybox import build_busybox

    base = Path(tempfile.mkdtemp(prefix="cumulo-bench-voldrv-"))
    made: list[tuple[Any, str]] = []
    out: dict[str, Any] = {}
    try:
        settings = conf_mod.load(env={}, state_dir=base / "state").replace(
            extra={"runc_stop_grace": 0.2, "qemu_boot_timeout": 180.0, "qemu_stop_timeout": 5.0})
        vols = base / "vols"
        vols.mkdir()

        def volume() -> DiskSpec:
            vid = str(uuidlib.uuid4())
            path = vols / f"{vid}.raw"
            with open(path, "wb") as fh:
                fh.truncate(GIB)
            return DiskSpec(volume_id=vid, path=str(path), device_name="/dev/vdb")

        # A container.
        runc: Any = load_driver("runc", settings, "vbench-runc", local=True)
        await runc.init_host()
        image_file = base / "busybox.tar"
        await asyncio.to_thread(build_busybox, image_file)
        img = ImageSpec(id=str(uuidlib.uuid4()), path=str(image_file), disk_format="raw", container_format="docker",
                        properties={"os_command_line": "/bin/sh -c 'exec sleep 3600'"})
        ctr = InstanceSpec(uuid=str(uuidlib.uuid4()), name="vbc", hostname="vbc", project_id="p",
                           flavor=FlavorSpec(vcpus=1, memory_mb=64, root_gb=1), image=img)
        await runc.spawn(ctr)
        made.append((runc, ctr.uuid))
        disk = volume()

        async def timed(coro: Awaitable[Any]) -> float:
            t0 = time.perf_counter()
            await coro
            return time.perf_counter() - t0

        if "host" not in res["write"]:
            res["write"]["host"] = mbps(await asyncio.to_thread(host_dd, Path(disk.path)))

        async def ctr_dd(i: int) -> None:
            if i == 0 and "container" not in res["write"]:
                res["write"]["container_driver"] = mbps(await asyncio.to_thread(
                    runc_dd, runc.runc.root, f"cumulo-{ctr.uuid}", f"/mnt/volumes/{disk.volume_id}"))

        got = await attach_rounds(lambda: timed(runc.attach_volume(ctr.uuid, disk)),
                                  lambda: timed(runc.detach_volume(ctr.uuid, disk.volume_id)), 2 * n, ctr_dd)
        out["container"] = {"attach_ms": h.summary_ms(got["attach"]), "detach_ms": h.summary_ms(got["detach"])}
        await runc.destroy(ctr.uuid)
        made.remove((runc, ctr.uuid))

        # A q35 tiny VM (one boot-time volume, so it has PCIe root ports for hot plug).
        qemu: Any = load_driver("qemu", settings, "vbench-qemu", local=True)
        await qemu.init_host()
        cache = tinyvm.default_cache()
        art = await tinyvm.build_tiny_vm(base / "tiny-vm", cache)
        hot = volume()
        vimg = ImageSpec(id=str(uuidlib.uuid4()), path=str(art.disk), disk_format="qcow2", container_format="bare",
                         properties={"kernel_id": "aki", "ramdisk_id": "ari", "os_command_line": art.cmdline,
                                     "cumulo_boot_banner": tinyvm.READY, "hypervisor_type": "qemu",
                                     "hw_machine_type": "q35"},
                         kernel_path=str(art.kernel), ramdisk_path=str(art.ramdisk))
        vm = InstanceSpec(uuid=str(uuidlib.uuid4()), name="vbv", hostname="vbv", project_id="p",
                          flavor=FlavorSpec(vcpus=1, memory_mb=256, root_gb=1), image=vimg,
                          user_data=vm_user_data(hot.volume_id[:20]), disks=(volume(),))
        await qemu.spawn(vm)
        made.append((qemu, vm.uuid))

        async def read() -> str:
            return str(await qemu.get_console_output(vm.uuid, 1 << 20))

        await wait_console(read, lambda t: "VBENCH-READY" in t, "user_data start")
        seen: list[float] = []
        dd_text = ""

        async def vm_attach() -> float:
            t0 = time.perf_counter()
            await qemu.attach_volume(vm.uuid, hot)
            took = time.perf_counter() - t0
            k = len(seen) + 1
            await wait_console(read, lambda t: f"VBENCH-SEEN {k} " in t, "the disk in the guest")
            seen.append(time.perf_counter() - t0)
            return took

        async def vm_between(i: int) -> None:
            nonlocal dd_text
            if i == 0:
                _, dd_text = await wait_console(read, lambda t: "VBENCH-DD-END" in t, "the guest's dd runs", 600.0)

        async def vm_detach() -> float:
            k = len(seen)
            took = await timed(qemu.detach_volume(vm.uuid, hot.volume_id))
            # The guest notices (a re-attach before it looks again would go unseen).
            await wait_console(read, lambda t: f"VBENCH-GONE {k}" in t, "the disk gone in the guest")
            return took

        got = await attach_rounds(vm_attach, vm_detach, 2 * vm_rounds, vm_between)
        out["vm"] = {"attach_ms": h.summary_ms(got["attach"]), "guest_sees_ms": h.summary_ms(seen),
                     "detach_ms": h.summary_ms(got["detach"])}
        if "vm" not in res["write"]:
            res["write"]["vm_driver"] = mbps(dd_seconds(dd_text))
            res["write"]["vm_guest_ram"] = mbps(dd_seconds(dd_text, "VBENCH-RAM"), RAM_MIB)
        await qemu.destroy(vm.uuid)
        made.remove((qemu, vm.uuid))
    finally:
        for drv, uid in made:
            with contextlib.suppress(Exception):
                await drv.destroy(uid)
        left = [f"loop {d} on {p.name}" for p in (base / "vols").glob("*.raw") for d in loop_devices_of(p)]
        left += [f"mount {m}" for m in mounts_under(str(base))]
        out["leftovers"] = left
        shutil.rmtree(base, ignore_errors=True)
    res["driver_attach"] = out


# -- the run ---------------------------------------------------------------------------------------
