"""Tiny-VM boots: API-to-banner through a real cloud against a bare QEMU boot of the same VM.

One run, on a real `cumulo up` with the QEMU driver (CUMULO_LOCAL_DRIVER=qemu):
  warm-up  one server of the `tiny-vm` image (the first boot checks and links the base image); its
           instance.json holds the exact QEMU argv the driver used.
  bare     that argv, re-pointed at a private copy of the server's files (a fresh qcow2 overlay on
           the same base with the same virtual size, the same config drive, kernel and initramfs), started the driver's way
           (daemonized, stderr to a file), timed from spawning QEMU to the banner line appearing in
           the serial console file; the QEMU is killed by its pidfile's pid.
  API      POST /servers of `tiny-vm` (flavor m1.tiny), timed from sending the POST to the banner
           appearing in the server's console file (`<state>/qemu/<uuid>/console.log`: the same
           file-polling as the bare run, every 5 ms), and to ACTIVE (the driver waits for the banner).
  Bare and API boots alternate, so both see the same machine. Ratio = API p50 / bare p50
  (target <= 1.15x).
  parallel boots per minute with 2 at a time (the cores here), bare and through the API, to the
           banner (bare) or ACTIVE (API); each guest is killed/deleted right after, so running
           guests do not slow the next boots.
Every server is deleted; no QEMU of ours and no instance dir may be left.

    .venv/bin/python benchmarks/boot_vm.py [-n 5] [--parallel-boots 6]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
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

BANNER = b"Cumulo tiny-vm booting"
FLAVOR = "m1.tiny"
CLOUD_ENV = {"CUMULO_LOCAL_DRIVER": "qemu", "CUMULO_RAM_ALLOCATION_RATIO": "4.0"}
POLL = 0.005


def wait_banner(console: Path, t0: float, timeout: float = 180.0) -> float:
    """Seconds from t0 until BANNER is in the file (blocking: run in a thread)."""
    while True:
        with contextlib.suppress(OSError):
            if BANNER in console.read_bytes():
                return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"no banner in {console} after {timeout}s")
        time.sleep(POLL)


class BareQemu:
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
        self.template = base / "template"  # copied now: the server is deleted before the bare boots
        self.template.mkdir()
        for name in self.files:
            shutil.copy2(server_dir / name, self.template / name)
        self.made: list[Path] = []

    def _prepare(self, i: int) -> tuple[Path, list[str]]:
        d = self.base / f"bare-{i}"
        d.mkdir()
        self.made.append(d)
        for name in self.files:
            shutil.copy2(self.template / name, d / name)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", self.backing_fmt,  # noqa: S603,S607
                        "-b", self.backing, str(d / "disk.qcow2"), self.size], check=True)
        (d / "console.log").touch()
        src = str(self.server_dir)
        argv = [a.replace(src, str(d)) for a in self.argv]
        argv = [f"bench-bare-{i}" if a.startswith("cumulo-") and argv[k - 1] == "-name" else a
                for k, a in enumerate(argv)]
        return d, argv

    def boot(self, i: int) -> float:
        """Spawn-to-banner seconds of one bare boot (blocking)."""
        d, argv = self._prepare(i)
        with open(d / "qemu.log", "ab") as log:
            t0 = time.monotonic()
            proc = subprocess.run(argv, stdout=log, stderr=log, cwd=d, check=False)  # noqa: S603  # the driver's argv
        try:
            if proc.returncode != 0:
                raise RuntimeError(f"bare QEMU failed: {(d / 'qemu.log').read_text()[-1000:]}")
            return wait_banner(d / "console.log", t0)
        finally:
            self.kill(d)

    @staticmethod
    def kill(d: Path) -> None:
        with contextlib.suppress(OSError, ValueError):
            pid = int((d / "qemu.pid").read_text().strip())
            if b"bench-bare-" in Path(f"/proc/{pid}/cmdline").read_bytes():
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


async def api_boot(client: Any, s: h.Session, cloud: h.CloudProcess, body: dict[str, Any]) -> tuple[float, float, str]:
    """(POST→banner, POST→ACTIVE, server id)."""
    t0 = time.monotonic()
    r = h.expect(await client.post("/compute/v2.1/servers", json=body, headers=s.headers()), 202)
    sid = str(r.json()["server"]["id"])
    banner = await asyncio.to_thread(wait_banner, cloud.state_dir.absolute() / "qemu" / sid / "console.log", t0)
    while True:
        r = h.expect(await client.get(f"/compute/v2.1/servers/{sid}", headers=s.headers()), 200)
        status = r.json()["server"]["status"]
        if status in ("ACTIVE", "ERROR"):
            break
        await asyncio.sleep(0.02)
    if status != "ACTIVE":
        raise RuntimeError(f"server {sid} ended {status}: {r.json()['server'].get('fault')}")
    return banner, time.monotonic() - t0, sid


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


async def run(n: int = 5, parallel_boots: int = 6) -> dict[str, Any]:
    if shutil.which("qemu-system-x86_64") is None:
        raise RuntimeError("boot_vm needs QEMU (apt-get install qemu-system-x86 qemu-utils)")
    res: dict[str, Any] = {"name": "boot_vm", "load": [round(os.getloadavg()[0], 2)]}
    made: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="cumulo-bench-vm-"))
    bare: BareQemu | None = None
    async with h.running_cloud(env=CLOUD_ENV) as cloud, h.make_client(cloud.url) as client:
        s = await h.login(client, cloud.credentials())
        try:
            await h.unlimited_quota(client, s, s.project_id)
            image_id = await wait_image(client, s)
            r = h.expect(await client.get("/compute/v2.1/flavors/detail", headers=s.headers()), 200)
            flavor = next(f for f in r.json()["flavors"] if f["name"] == FLAVOR)
            res["flavor"] = {k: flavor[k] for k in ("name", "ram", "vcpus", "disk")}

            def body(name: str) -> dict[str, Any]:
                return h.server_body(name, image_id, flavor["id"])

            first_banner, first_active, warm = await api_boot(client, s, cloud, body("warm"))
            made.append(warm)
            res["first_boot_s"] = {"banner": round(first_banner, 3), "active": round(first_active, 3)}
            bare = BareQemu(base, cloud.state_dir.absolute() / "qemu" / warm)
            res["accel_argv"] = [a for a in bare.argv if "accel" in a or a.startswith("q35")]
            await delete_all(client, s, [warm])

            bare_s, api_banner, api_active = [], [], []
            for i in range(n):  # alternate, so both see the same machine
                bare_s.append(await asyncio.to_thread(bare.boot, i))
                b, a, sid = await api_boot(client, s, cloud, body(f"vm-{i}"))
                made.append(sid)
                api_banner.append(b)
                api_active.append(a)
                await delete_all(client, s, [sid])
            res["bare_banner_ms"] = h.summary_ms(bare_s)
            res["api_banner_ms"] = h.summary_ms(api_banner)
            res["api_active_ms"] = h.summary_ms(api_active)
            res["ratio_p50"] = round(res["api_banner_ms"]["p50_ms"] / res["bare_banner_ms"]["p50_ms"], 3)
            res.update(metric="API-to-banner p50 / bare QEMU boot p50", value=res["ratio_p50"], unit="x",
                       target="<= 1.15x", passed=res["ratio_p50"] <= 1.15)
            res["load"].append(round(os.getloadavg()[0], 2))

            if parallel_boots:
                # Bare: 2 lanes of boots to the banner, each QEMU killed after its banner.
                t0 = time.monotonic()
                idx = iter(range(n, n + parallel_boots))

                async def bare_lane() -> None:
                    assert bare is not None
                    for i in idx:
                        await asyncio.to_thread(bare.boot, i)

                await asyncio.gather(bare_lane(), bare_lane())
                bare_rate = parallel_boots * 60 / (time.monotonic() - t0)
                # API: 2 lanes of POST → banner; servers deleted after the run.
                t0 = time.monotonic()
                names = iter(range(parallel_boots))
                lane_ids: list[str] = []

                async def api_lane() -> None:
                    for i in names:
                        _, _, sid = await api_boot(client, s, cloud, body(f"par-{i}"))
                        made.append(sid)
                        lane_ids.append(sid)
                        # Like the bare lane, which kills each QEMU at its banner: a guest left
                        # running would go on taking CPU from the next boots.
                        await client.delete(f"/compute/v2.1/servers/{sid}", headers=s.headers())

                await asyncio.gather(api_lane(), api_lane())
                api_rate = parallel_boots * 60 / (time.monotonic() - t0)
                await delete_all(client, s, lane_ids)
                res["parallel_2"] = {"boots": parallel_boots, "bare_per_minute": round(bare_rate, 1),
                                     "api_per_minute": round(api_rate, 1)}
            res["load"].append(round(os.getloadavg()[0], 2))
        finally:
            await delete_all(client, s, made)
            if bare is not None:
                bare.cleanup()
            shutil.rmtree(base, ignore_errors=True)
            res["leftovers"] = leftovers(cloud, made)
    return res


def print_report(res: dict[str, Any]) -> None:
    b, a, act = res["bare_banner_ms"], res["api_banner_ms"], res["api_active_ms"]
    print(f"boot_vm: tiny-vm on the QEMU driver, flavor {res['flavor']['name']}; {res['accel_argv']}")
    print(f"  first boot (checks and links the base)  banner {res['first_boot_s']['banner']:.2f} s")
    print(f"  bare QEMU, spawn -> banner   p50 {b['p50_ms'] / 1000:.3f} s  p90 {b['p90_ms'] / 1000:.3f} s  (n {b['n']})")
    print(f"  API, POST -> banner          p50 {a['p50_ms'] / 1000:.3f} s  p90 {a['p90_ms'] / 1000:.3f} s")
    print(f"  API, POST -> ACTIVE          p50 {act['p50_ms'] / 1000:.3f} s  p90 {act['p90_ms'] / 1000:.3f} s")
    verdict = "PASS" if res["ratio_p50"] <= 1.15 else "MISS"
    print(f"  ratio p50 API/bare: {res['ratio_p50']:.3f}x (target <= 1.15x: {verdict})")
    if "parallel_2" in res:
        p = res["parallel_2"]
        print(f"  2 at a time, {p['boots']} boots to the banner: bare {p['bare_per_minute']}/min, "
              f"API {p['api_per_minute']}/min")
    print(f"  load average: {res['load']}; leftovers: {res['leftovers'] or 'none'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=5)
    ap.add_argument("--parallel-boots", type=int, default=6, help="boots for the 2-at-a-time run (0: skip)")
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
