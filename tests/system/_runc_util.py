"""Helpers for system tests of the runc driver: a `cumulo up` with real containers, what is on the
host per server (runc container, mounts, bundle dir, netns, cgroups), and commands run inside.

Everything here is looked up by this cloud's own state dir and server uuids: other clouds on the
machine (parallel test runs) are never touched.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from conftest import CumuloCloud

CGROUP_ROOT = Path("/sys/fs/cgroup")
# Short grace: busybox `sleep` as pid 1 ignores SIGTERM, so every stop would wait the whole grace.
RUNC_CONFIG = {"extra": {"runc_stop_grace": 1.0}, "power_sync_interval": 5.0}


def write_config(root: Path, settings: dict[str, Any] | None = None, **extra: Any) -> Path:
    """A settings file for `cumulo up --config`: `settings` at the top, `extra` under conf.extra."""
    root.mkdir(parents=True, exist_ok=True)
    data = {**RUNC_CONFIG, **(settings or {}), "extra": {**RUNC_CONFIG["extra"], **extra}}
    path = root / "cumulo.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def launch_runc(
    launcher: Callable[..., CumuloCloud], tmp: Path, *, fake_hosts: int = 0, settings: dict[str, Any] | None = None,
    config: str = "embedded", cluster_fake_hosts: int = 0, **extra: Any,
) -> CumuloCloud:
    """`config`: the module's `cumulo_config` ("scaled": a cluster.ClusterCloud, 3 runc dev hosts, and
    `cluster_fake_hosts` fake hosts in its L3 host's process)."""
    # A runc-only cloud boots no VM: no tiny-vm demo image, whose background build (on by default
    # when QEMU is installed) costs a cloud start ~1.2 s of CPU and holds its ready line ~0.5 s.
    path = write_config(tmp, settings, **{"tiny_vm_image": "off", **extra})
    if config == "scaled":
        return launcher(driver="runc", args=["--config", str(path)], config=config, cluster_fake_hosts=cluster_fake_hosts)
    return launcher(fake_hosts=fake_hosts, driver="runc", args=["--config", str(path)], config=config)


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.1, what: str = "") -> Any:
    """Poll `predicate` until it returns something truthy; return that, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or predicate!r}")
        time.sleep(interval)


# -- the API, polled directly (osc --wait polls every 5 s: too slow for these tests) ----------


def server(cloud: CumuloCloud, uuid: str) -> dict[str, Any] | None:
    with cloud.client("cumulo", headers={"X-OpenStack-Nova-API-Version": "2.79"}) as c:
        r = c.get(f"/compute/v2.1/servers/{uuid}")
    if r.status_code == 404:
        return None
    r.raise_for_status()
    body: dict[str, Any] = r.json()["server"]
    return body


def wait_status(cloud: CumuloCloud, uuid: str, *statuses: str, timeout: float = 60.0) -> dict[str, Any]:
    """Wait until the server shows one of `statuses` with no task in flight; ERROR fails at once
    unless asked for."""

    def ready() -> dict[str, Any] | None:
        s = server(cloud, uuid)
        assert s is not None, f"server {uuid} disappeared"
        if s["status"] == "ERROR" and "ERROR" not in statuses:
            raise AssertionError(f"server {uuid} went ERROR: {s.get('fault')}\n{cloud.log()[-4000:]}")
        if s["status"] in statuses and s.get("OS-EXT-STS:task_state") is None:
            return s
        return None

    result: dict[str, Any] = wait_for(ready, timeout=timeout, interval=0.1, what=f"{uuid} to be {statuses}")
    return result


def wait_gone(cloud: CumuloCloud, uuid: str, timeout: float = 60.0) -> None:
    wait_for(lambda: server(cloud, uuid) is None, timeout=timeout, interval=0.1, what=f"{uuid} deleted")


def wait_image_active(cloud: CumuloCloud, image_id: str, timeout: float = 60.0) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        with cloud.client("cumulo") as c:
            img: dict[str, Any] = c.get(f"/image/v2/images/{image_id}").json()
        assert img.get("status") not in ("killed", "deleted"), img
        return img if img.get("status") == "active" else None

    result: dict[str, Any] = wait_for(ready, timeout=timeout, interval=0.2, what=f"image {image_id} active")
    return result


def wait_tiny_vm(cloud: CumuloCloud, timeout: float = 300.0) -> str:
    """The tiny-vm demo image's id once it is active: `cumulo up` builds it in the background on its
    first start (seconds with a warm build cache)."""
    image_id: str = wait_for(lambda: next((i["ID"] for i in cloud.osc("image", "list") if i["Name"] == "tiny-vm"),
                                          None), timeout=60, what="the tiny-vm image record")
    wait_image_active(cloud, image_id, timeout=timeout)
    return image_id


# -- the host --------------------------------------------------------------------------------


def _server_of(args: tuple[str, ...]) -> str:
    """The server uuid a runc command names (`cumulo-<uuid>`), or ""."""
    for a in args:
        if a.startswith("cumulo-") and len(a) == len("cumulo-") + 36:
            return a[len("cumulo-"):]
    return ""


def runc(cloud: CumuloCloud, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """runc on the host of the server the args name (in a scaled cloud: its dev host's runc root,
    inside its namespaces), else the cloud's own state dir."""
    uuid = _server_of(args)
    root = cloud.server_host_dir(uuid) if uuid else cloud.state_dir
    argv = ["runc", "--root", str(root / "runc-state"), *args]
    if uuid:
        argv = cloud.host_argv(uuid, argv)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)  # noqa: S603


def containers(cloud: CumuloCloud) -> set[str]:
    """The ids of every runc container of this cloud: its one host's, or on a cluster every dev
    host's (each host's runc root, inside its namespaces)."""
    hosts: list[str] = list(getattr(cloud, "hosts", None) or [])
    argvs = [cloud.in_host(h, ["runc", "--root", str(cloud.host_dir(h) / "runc-state"), "list", "--format", "json"])
             for h in hosts] or [["runc", "--root", str(cloud.state_dir / "runc-state"), "list", "--format", "json"]]
    found: set[str] = set()
    for argv in argvs:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)  # noqa: S603
        assert done.returncode == 0, f"{argv}: {done.stderr}"
        found |= {c["id"] for c in json.loads(done.stdout or "null") or []}
    return found


def runc_state(cloud: CumuloCloud, uuid: str) -> dict[str, Any] | None:
    done = runc(cloud, "state", f"cumulo-{uuid}")
    if done.returncode != 0:
        return None
    state: dict[str, Any] = json.loads(done.stdout)
    return state


def inside(cloud: CumuloCloud, uuid: str, script: str) -> str:
    """Run `sh -c script` inside the server's container; its stdout (fails on a non-zero exit)."""
    done = runc(cloud, "exec", f"cumulo-{uuid}", "/bin/sh", "-c", script)
    assert done.returncode == 0, f"exec in {uuid} failed ({done.returncode}): {done.stderr}{done.stdout}"
    return done.stdout


def memory_limit(uuid: str) -> int:
    return int((CGROUP_ROOT / "memory" / "cumulo" / f"cumulo-{uuid}" / "memory.limit_in_bytes").read_text())


def leftovers(cloud: CumuloCloud, uuid: str) -> list[str]:
    """Whatever of this server is still on the host: runc container, mounts, bundle dir, netns, cgroups."""
    found: list[str] = []
    if runc_state(cloud, uuid) is not None:
        found.append(f"runc container cumulo-{uuid}")
    with open(cloud.host_mountinfo(uuid)) as fh:
        for line in fh:
            if uuid in line:
                found.append(f"mount {line.split()[4]}")
    bundle = cloud.server_host_dir(uuid) / "runc" / uuid
    if bundle.exists():
        found.append(f"dir {bundle}")
    netns = cloud.host_path(uuid, "/run/netns")
    if netns.is_dir():
        found += [f"netns {p.name}" for p in netns.iterdir() if uuid in p.name or uuid[:8] in p.name]
    for ctrl in ("memory", "cpu", "pids", "freezer", "cpuacct", "blkio", "devices", "cpuset"):
        cg = CGROUP_ROOT / ctrl / "cumulo" / f"cumulo-{uuid}"
        if cg.exists():
            found.append(f"cgroup {cg}")
    return found


# -- images ----------------------------------------------------------------------------------


def _layer(files: dict[str, bytes], dirs: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
            tf.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def layered_image(out: Path) -> Path:
    """A three-layer Docker-format image: busybox; /data/{keep,gone}.txt; a whiteout of gone.txt
    plus /data/new.txt. Its command lists /data, so the console shows what the root holds."""
    from cumulo.image.demo.busybox import busybox_layer
    from cumulo.oci.docker import write_docker_archive
    from cumulo.oci.layout import host_arch

    layers = [
        busybox_layer(),
        _layer({"data/keep.txt": b"kept\n", "data/gone.txt": b"to be removed\n"}, dirs=("data/",)),
        _layer({"data/.wh.gone.txt": b"", "data/new.txt": b"added\n"}, dirs=("data/",)),
    ]
    config = {
        "architecture": host_arch(),
        "os": "linux",
        "config": {
            "Env": ["PATH=/bin", "LAYERED=yes"],
            "Cmd": ["/bin/sh", "-c", "echo layered listing: $(ls /data); exec sleep 3600"],
            "WorkingDir": "/data",
        },
    }
    return write_docker_archive(out, layers, config, "cumulo/layered:test")


def demo_image_file(cloud: CumuloCloud) -> Path:
    return cloud.state_dir / "images" / "demo" / "busybox.tar"


def until(predicate: Callable[[], Any], timeout: float, what: str) -> float:
    """Seconds until `predicate` holds (fails after `timeout`)."""
    t0 = time.monotonic()
    wait_for(predicate, timeout=timeout, interval=0.1, what=what)
    return time.monotonic() - t0


def kill_our_qemus(state_dir: Path) -> None:
    """Last resort at teardown: QEMU outlives the cloud by design, so kill what our pidfiles name."""
    root = state_dir / "qemu"
    if not root.is_dir():
        return
    for d in root.iterdir():
        with contextlib.suppress(OSError, ValueError):
            pid = int((d / "qemu.pid").read_text().strip())
            if d.name.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)


def qemu_processes_of(uuid: str) -> list[int]:
    """Every process on the machine whose command line names this server (there must be none after delete)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if f"cumulo-{uuid}".encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
    return found


def volume_of(cloud: CumuloCloud, vid: str, *, as_cloud: str) -> dict[str, Any] | None:
    """The volume as `as_cloud` (a clouds.yaml entry) sees it through the Cinder API, or None (404)."""
    with cloud.client(as_cloud) as c:
        resp = c.get(f"/volume/v3/volumes/{vid}", headers={"OpenStack-API-Version": "volume 3.67"})
    if resp.status_code == 404:
        return None
    assert resp.status_code == 200, resp.text
    return dict(resp.json()["volume"])


def wait_volume(cloud: CumuloCloud, vid: str, status: str, *, as_cloud: str, timeout: float, **want: Any) -> dict[str, Any]:
    """Wait until the volume has `status` (and every field in `want`); an error status fails at once.
    A timeout names the last status seen and the cloud log's lines about the volume."""
    last: list[dict[str, Any]] = []

    def ready() -> dict[str, Any] | None:
        vol = volume_of(cloud, vid, as_cloud=as_cloud)
        assert vol is not None, f"volume {vid} vanished"
        assert not vol["status"].startswith("error"), vol
        last[:] = [vol]
        return vol if vol["status"] == status and all(vol[k] == v for k, v in want.items()) else None

    try:
        return dict(wait_for(ready, timeout=timeout, what=f"volume {vid} {status} {want}"))
    except AssertionError as exc:
        log = [ln for ln in cloud.log().splitlines() if vid in ln or "Traceback" in ln or "ERROR" in ln]
        raise AssertionError(f"{exc}; last seen {last}\n" + "\n".join(log[-40:])) from None


def volume_on_host(vid: str, cloud: CumuloCloud | None = None) -> list[str]:
    """The volume's mounts and loop devices still on the host (a cluster's: its volume host)."""
    with open(cloud.mountinfo_of(cloud.volume_host) if cloud else "/proc/self/mountinfo") as fh:
        found = [f"mount {line.split()[4]}" for line in fh if vid in line]
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=False).stdout  # noqa: S607
    return found + [f"loop {line}" for line in loops.splitlines() if vid in line]
