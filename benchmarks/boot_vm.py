"""Tiny-VM boots: API to the user_data marker, against a STOCK bare QEMU boot of the same kernel.

One run, on a real `cumulo up` with its defaults (local drivers auto: runc and QEMU side by side,
no ratio overrides):
  stock    the naive command of issue 8, built here from the same kernel the cloud's tiny-vm image
           comes from (the Debian cloud kernel's bzImage, from the host-wide build cache) and a
           minimal busybox /init that prints a marker (written with tiny-vm's initramfs builder):
             qemu-system-x86_64 -accel tcg -m 512 -nodefaults -display none -serial stdio
               -no-reboot -kernel K -initrd I -append 'console=ttyS0 panic=-1 quiet'
           timed from spawning QEMU to the marker on its stdout. Under a heavy load that kernel
           sometimes panics in its IO-APIC timer check; such a boot is retried and counted.
  API      POST /servers of `tiny-vm` (flavor m1.tiny) whose user_data script echoes a marker,
           timed from sending the POST to the marker in the server's console file
           (`<state>/qemu/<uuid>/console.log`, polled every 5 ms), and to ACTIVE.
  replay   the driver's own argv (from the warm-up server's instance.json) on private copies of its
           files (a fresh overlay on the same base, the same config drive, kernel and initramfs),
           started the driver's way (daemonized), timed from spawning QEMU to the same marker.
  Each round runs the three in turn, so all see the same machine. Ratios of the p50s:
    API/stock  (issue 8, acceptance 5: target <= 1.0x)
    API/replay (what the control plane and the driver's steps add to its own QEMU)
  parallel boots per minute with 2 at a time (the cores here), through the API to the marker;
           each server is deleted right after, so running guests do not slow the next boots.
Every server is deleted; no QEMU of ours and no instance dir may be left.

    .venv/bin/python benchmarks/boot_vm.py [-n 5] [--parallel-boots 4]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402

from cumulo.image.demo import tinyvm  # noqa: E402
from cumulo.image.demo.tinyvm import initramfs  # noqa: E402
from cumulo.image.demo.tinyvm.cpio import Entry, gzip_bytes, write_newc  # noqa: E402
from cumulo.image.demo.tinyvm.kernel import fetch_kernel  # noqa: E402

MARKER = b"cumulo-bench-user-data-marker"
USER_DATA = b"#!/bin/sh\necho cumulo-bench-user-data-marker\n"
STOCK_MARKER = b"cumulo-bench-stock-marker"
FLAVOR = "m1.tiny"
# `cumulo up`'s own defaults (the harness would pin the fake driver and silence the power sync).
CLOUD_ENV = {"CUMULO_LOCAL_DRIVER": "auto", "CUMULO_POWER_SYNC_INTERVAL": "5"}
POLL = 0.005
TARGET = 1.0


def wait_marker(console: Path, t0: float, timeout: float = 180.0) -> float:
    """Seconds from t0 until MARKER is in the file (blocking: run in a thread)."""
    while True:
        with contextlib.suppress(OSError):
            if MARKER in console.read_bytes():
                return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"no user_data marker in {console} after {timeout}s")
        time.sleep(POLL)


# -- stock: the naive QEMU command of the issue ------------------------------------------------


class Stock:
    """`qemu-system-x86_64 ... -kernel K -initrd I` with a busybox /init that prints a marker."""

    def __init__(self, base: Path) -> None:
        kernel = asyncio.run(fetch_kernel(tinyvm.default_cache(), initramfs.STAGE1_MODULES
                                          + initramfs.VFAT_MODULES + initramfs.STAGE2_MODULES))
        self.kernel = kernel.vmlinuz  # the bzImage, as the issue measured it
        self.release = kernel.release
        init = b"#!/bin/busybox sh\n/bin/busybox echo " + STOCK_MARKER + b"\nexec /bin/busybox poweroff -f\n"
        entries = [Entry.file("init", init, 0o755),
                   Entry.file("bin/busybox", initramfs.BUSYBOX.read_bytes(), 0o755),
                   Entry.chardev("dev/console", 5, 1), Entry.dir("proc"), Entry.dir("sys")]
        self.initrd = base / "stock-initrd.cpio.gz"
        self.initrd.write_bytes(gzip_bytes(write_newc(entries)))
        self.argv = ["qemu-system-x86_64", "-accel", "tcg", "-m", "512", "-nodefaults", "-display", "none",
                     "-serial", "stdio", "-no-reboot", "-kernel", str(self.kernel), "-initrd", str(self.initrd),
                     "-append", "console=ttyS0 panic=-1 quiet"]
        self.failures: list[str] = []

    def _once(self, timeout: float = 120.0) -> float | None:
        t0 = time.monotonic()
        proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,  # noqa: S603  # fixed argv
                                stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        out = b""
        try:
            while STOCK_MARKER not in out:
                left = timeout - (time.monotonic() - t0)
                if left <= 0:
                    self.failures.append("timeout: " + out[-300:].decode(errors="replace"))
                    return None
                ready, _, _ = select.select([proc.stdout], [], [], min(left, 0.5))
                if ready:
                    chunk = os.read(proc.stdout.fileno(), 65536)
                    if not chunk:  # QEMU ended (a panic with panic=-1 and -no-reboot)
                        tail = [ln for ln in out.decode(errors="replace").splitlines() if "panic" in ln.lower()]
                        self.failures.append((tail or ["QEMU exited"])[0][-200:])
                        return None
                    out += chunk
            return time.monotonic() - t0
        finally:
            proc.kill()
            proc.wait()

    def boot(self, tries: int = 3) -> float:
        """Spawn-to-marker seconds (blocking); a boot that fails is retried (and counted)."""
        for _ in range(tries):
            took = self._once()
            if took is not None:
                return took
        raise RuntimeError(f"the stock boot failed {tries} times: {self.failures[-tries:]}")


# -- replay: the driver's own argv -------------------------------------------------------------


class Replay:
    """The driver's argv for one server, replayed on private copies of its files."""

    def __init__(self, base: Path, server_dir: Path) -> None:
        self.base = base
        self.server_dir = server_dir
        rec = json.loads((server_dir / "instance.json").read_text())
        self.argv: list[str] = [str(a) for a in rec["argv"]]
        info = json.loads(subprocess.run(  # noqa: S603  # fixed argv
            ["qemu-img", "info", "--output=json", "-U", str(server_dir / "disk.qcow2")],  # noqa: S607
            check=True, capture_output=True).stdout)
        self.backing = str(info["full-backing-filename"])
        self.backing_fmt = str(info.get("backing-filename-format") or "qcow2")
        self.size = str(info["virtual-size"])  # the flavor's root disk, as the driver made it
        self.files = [p for p in ("config.iso", "kernel", "initrd") if (server_dir / p).exists()]
        self.template = base / "template"  # copied now: the server is deleted before the replays
        self.template.mkdir()
        for name in self.files:
            shutil.copy2(server_dir / name, self.template / name)
        self.made: list[Path] = []

    def _prepare(self, i: int) -> tuple[Path, list[str]]:
        d = self.base / f"replay-{i}"
        d.mkdir()
        self.made.append(d)
        for name in self.files:
            shutil.copy2(self.template / name, d / name)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", self.backing_fmt,  # noqa: S603,S607
                        "-b", self.backing, str(d / "disk.qcow2"), self.size], check=True)
        (d / "console.log").touch()
        src = str(self.server_dir)
        argv = [a.replace(src, str(d)) for a in self.argv]
        argv = [f"bench-replay-{i}" if a.startswith("cumulo-") and argv[k - 1] == "-name" else a
                for k, a in enumerate(argv)]
        return d, argv

    def boot(self, i: int) -> float:
        """Spawn-to-marker seconds of one replayed boot (blocking)."""
        d, argv = self._prepare(i)
        with open(d / "qemu.log", "ab") as log:
            t0 = time.monotonic()
            proc = subprocess.run(argv, stdout=log, stderr=log, cwd=d, check=False)  # noqa: S603  # the driver's argv
        try:
            if proc.returncode != 0:
                raise RuntimeError(f"replayed QEMU failed: {(d / 'qemu.log').read_text()[-1000:]}")
            return wait_marker(d / "console.log", t0)
        finally:
            self.kill(d)

    @staticmethod
    def kill(d: Path) -> None:
        with contextlib.suppress(OSError, ValueError):
            pid = int((d / "qemu.pid").read_text().strip())
            if b"bench-replay-" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
                for _ in range(200):
                    if not Path(f"/proc/{pid}").exists() or b"Z" in _state(pid):
                        break
                    time.sleep(0.01)

    def cleanup(self) -> None:
        for d in self.made:
            self.kill(d)
            shutil.rmtree(d, ignore_errors=True)


def _state(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return b"X"


# -- the API ------------------------------------------------------------------------------------


async def api_boot(client: Any, s: h.Session, cloud: h.CloudProcess, body: dict[str, Any]) -> tuple[float, float, str]:
    """(POST→marker, POST→ACTIVE, server id)."""
    t0 = time.monotonic()
    r = h.expect(await client.post("/compute/v2.1/servers", json=body, headers=s.headers()), 202)
    sid = str(r.json()["server"]["id"])
    active: float | None = None

    async def to_active() -> None:
        nonlocal active
        while True:
            r = h.expect(await client.get(f"/compute/v2.1/servers/{sid}", headers=s.headers()), 200)
            status = r.json()["server"]["status"]
            if status == "ACTIVE":
                active = time.monotonic() - t0
                return
            if status == "ERROR":
                raise RuntimeError(f"server {sid} ended ERROR: {r.json()['server'].get('fault')}")
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(to_active())
    try:
        marker = await asyncio.to_thread(wait_marker, cloud.state_dir.absolute() / "qemu" / sid / "console.log", t0)
        await watcher
    finally:
        watcher.cancel()
    assert active is not None
    return marker, active, sid


async def delete_all(client: Any, s: h.Session, ids: list[str]) -> None:
    for sid in ids:
        await client.delete(f"/compute/v2.1/servers/{sid}", headers=s.headers())
    deadline = time.monotonic() + 120
    for sid in ids:
        while time.monotonic() < deadline:
            r = await client.get(f"/compute/v2.1/servers/{sid}", headers=s.headers())
            if r.status_code == 404:
                break
            await asyncio.sleep(0.1)


async def wait_image(client: Any, s: h.Session, name: str = "tiny-vm", timeout: float = 300.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = h.expect(await client.get("/image/v2/images", params={"name": name},
                                      headers={"X-Auth-Token": s.token}), 200)
        for img in r.json()["images"]:
            if img["status"] == "active":
                return str(img["id"])
            if img["status"] == "killed":
                raise RuntimeError(f"the tiny-vm image failed to build: {img.get('cumulo_error')}")
        await asyncio.sleep(0.5)
    raise RuntimeError("the tiny-vm image did not become active")


def leftovers(cloud: h.CloudProcess, ids: list[str]) -> list[str]:
    left = []
    for sid in ids:
        if (cloud.state_dir / "qemu" / sid).exists():
            left.append(f"dir {sid}")
        for proc in Path("/proc").iterdir():
            with contextlib.suppress(OSError):
                if proc.name.isdigit() and f"cumulo-{sid}".encode() in (proc / "cmdline").read_bytes() \
                        and _state(int(proc.name)) != b"Z":
                    left.append(f"qemu {proc.name} of {sid}")
    return left


async def run(n: int = 5, parallel_boots: int = 4) -> dict[str, Any]:
    if shutil.which("qemu-system-x86_64") is None:
        raise RuntimeError("boot_vm needs QEMU (apt-get install qemu-system-x86 qemu-utils)")
    res: dict[str, Any] = {"name": "boot_vm", "load": [round(os.getloadavg()[0], 2)]}
    made: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="cumulo-bench-vm-"))
    replay: Replay | None = None
    stock = await asyncio.to_thread(Stock, base)
    res["stock_argv"] = [a if not a.startswith(str(base)) else Path(a).name for a in stock.argv]
    async with h.running_cloud(env=CLOUD_ENV) as cloud, h.make_client(cloud.url) as client:
        s = await h.login(client, cloud.credentials())
        try:
            await h.unlimited_quota(client, s, s.project_id)
            image_id = await wait_image(client, s)
            r = h.expect(await client.get("/compute/v2.1/flavors/detail", headers=s.headers()), 200)
            flavor = next(f for f in r.json()["flavors"] if f["name"] == FLAVOR)
            res["flavor"] = {k: flavor[k] for k in ("name", "ram", "vcpus", "disk")}

            def body(name: str) -> dict[str, Any]:
                return h.server_body(name, image_id, flavor["id"], user_data=base64.b64encode(USER_DATA).decode())

            first_marker, first_active, warm = await api_boot(client, s, cloud, body("warm"))
            made.append(warm)
            res["first_boot_s"] = {"marker": round(first_marker, 3), "active": round(first_active, 3)}
            replay = Replay(base, cloud.state_dir.absolute() / "qemu" / warm)
            argv = replay.argv
            res["driver_machine"] = argv[argv.index("-machine") + 1]
            res["driver_append"] = argv[argv.index("-append") + 1] if "-append" in argv else ""
            await delete_all(client, s, [warm])

            stock_s, replay_s, api_marker, api_active = [], [], [], []
            for i in range(n):  # in turn, so all see the same machine
                stock_s.append(await asyncio.to_thread(stock.boot))
                replay_s.append(await asyncio.to_thread(replay.boot, i))
                m, a, sid = await api_boot(client, s, cloud, body(f"vm-{i}"))
                made.append(sid)
                api_marker.append(m)
                api_active.append(a)
                await delete_all(client, s, [sid])
            res["stock_marker_ms"] = h.summary_ms(stock_s)
            res["stock_failures"] = list(stock.failures)
            res["replay_marker_ms"] = h.summary_ms(replay_s)
            res["api_marker_ms"] = h.summary_ms(api_marker)
            res["api_active_ms"] = h.summary_ms(api_active)
            res["ratio_vs_stock"] = round(res["api_marker_ms"]["p50_ms"] / res["stock_marker_ms"]["p50_ms"], 3)
            res["ratio_vs_replay"] = round(res["api_marker_ms"]["p50_ms"] / res["replay_marker_ms"]["p50_ms"], 3)
            res.update(metric="API-to-user_data-marker p50 / stock bare QEMU boot p50", value=res["ratio_vs_stock"],
                       unit="x", target=f"<= {TARGET}x", passed=res["ratio_vs_stock"] <= TARGET)
            res["load"].append(round(os.getloadavg()[0], 2))

            if parallel_boots:
                t0 = time.monotonic()
                names = iter(range(parallel_boots))
                lane_ids: list[str] = []

                async def api_lane() -> None:
                    for i in names:
                        _, _, sid = await api_boot(client, s, cloud, body(f"par-{i}"))
                        made.append(sid)
                        lane_ids.append(sid)
                        # A guest left running would go on taking CPU from the next boots.
                        await client.delete(f"/compute/v2.1/servers/{sid}", headers=s.headers())

                await asyncio.gather(api_lane(), api_lane())
                api_rate = parallel_boots * 60 / (time.monotonic() - t0)
                await delete_all(client, s, lane_ids)
                res["parallel_2"] = {"boots": parallel_boots, "api_per_minute": round(api_rate, 1)}
            res["load"].append(round(os.getloadavg()[0], 2))
        finally:
            await delete_all(client, s, made)
            if replay is not None:
                replay.cleanup()
            shutil.rmtree(base, ignore_errors=True)
            res["leftovers"] = leftovers(cloud, made)
    return res


def print_report(res: dict[str, Any]) -> None:
    st, rp, a, act = res["stock_marker_ms"], res["replay_marker_ms"], res["api_marker_ms"], res["api_active_ms"]
    print(f"boot_vm: tiny-vm on the QEMU driver, flavor {res['flavor']['name']}, machine {res['driver_machine']}")
    print(f"  first boot (checks and links the base)   marker {res['first_boot_s']['marker']:.2f} s")
    print(f"  stock bare QEMU (q35, bzImage) -> marker  p50 {st['p50_ms'] / 1000:.3f} s  p90 {st['p90_ms'] / 1000:.3f} s"
          f"  (n {st['n']}, failed boots retried: {len(res['stock_failures'])})")
    print(f"  driver argv replayed -> marker           p50 {rp['p50_ms'] / 1000:.3f} s  p90 {rp['p90_ms'] / 1000:.3f} s")
    print(f"  API, POST -> user_data marker            p50 {a['p50_ms'] / 1000:.3f} s  p90 {a['p90_ms'] / 1000:.3f} s")
    print(f"  API, POST -> ACTIVE                      p50 {act['p50_ms'] / 1000:.3f} s  p90 {act['p90_ms'] / 1000:.3f} s")
    verdict = "PASS" if res["ratio_vs_stock"] <= TARGET else "MISS"
    print(f"  ratio p50 API/stock:  {res['ratio_vs_stock']:.3f}x (target <= {TARGET}x: {verdict})")
    print(f"  ratio p50 API/replay: {res['ratio_vs_replay']:.3f}x (the control plane and the driver's steps)")
    if "parallel_2" in res:
        p = res["parallel_2"]
        print(f"  2 at a time, {p['boots']} boots to the marker through the API: {p['api_per_minute']}/min")
    print(f"  load average: {res['load']}; leftovers: {res['leftovers'] or 'none'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=5)
    ap.add_argument("--parallel-boots", type=int, default=4, help="boots for the 2-at-a-time run (0: skip)")
    args = ap.parse_args()
    res = asyncio.run(run(args.n, args.parallel_boots))
    print_report(res)
    # Same shape as run_all.py's file: replace this benchmark's entry in "results", keep the others.
    out = Path(__file__).with_name("results.json")
    doc = json.loads(out.read_text()) if out.exists() else {}
    doc.pop("boot_vm", None)  # where older versions of this script put it
    res["loadavg_1m"] = [res["load"][0], res["load"][-1]]
    doc["results"] = [r for r in doc.get("results", []) if r.get("name") != "boot_vm"] + [res]
    doc["when"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    doc.setdefault("python", sys.version.split()[0])
    out.write_text(json.dumps(doc, indent=2) + "\n")
    if res["leftovers"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
