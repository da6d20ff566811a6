"""A volume reached from another host over NBD: the volume host's export and the consumer's connection.

Cinder's split: the volume host's *target* (`serve`: one `qemu-nbd` per attachment, on the host's
underlay address and a port of its own, export name random) and the compute host's *connector*
(`connect`: a `qemu-storage-daemon` that opens the export with QEMU's nbd driver and exports it
again as a regular file through FUSE, for the loop device a container's volume needs; a QEMU VM
opens the export itself, with no file). Both ends authenticate with NBD's TLS and a pre-shared key
per attachment (`tls-creds-psk`): the key is `psk_key(cluster secret, attachment id)`, so each side
derives it and it never travels; a peer without it fails the handshake before any option, and the
data is encrypted on the underlay.

Processes are daemons (`--fork` / `--daemonize`): they outlive the agent that started them, as the
servers' QEMUs do, so an agent restart never cuts a volume's I/O. Each has a dir of its own under
the run dir (`nbd-exports/<attachment id>/`, `nbd-connections/<volume id>/`) holding its pidfile,
its key file (0600) and, for an export, its record. A process is signalled only when its
/proc/<pid>/cmdline names that very pidfile (never another cloud's, never a reused pid).
Blocking file work runs in threads; commands go through cumulo.host.run.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cumulo import host
from cumulo.blockstore.base import StoreError, check_id

EXPORTS = "nbd-exports"
CONNECTIONS = "nbd-connections"
PSK_FILE = "keys.psk"  # QEMU's name for the key file in a tls-creds-psk dir
_MNT_DETACH = 2
_LIBC = ctypes.CDLL(None, use_errno=True)


def psk_key(secret: bytes, attachment_id: str) -> str:
    """The attachment's pre-shared key (hex), derived from the cluster secret: both ends compute it."""
    return hmac.new(secret, f"nbd|{attachment_id}".encode(), hashlib.sha256).hexdigest()


def psk_identity(attachment_id: str) -> str:
    return f"cumulo-{check_id(attachment_id)}"


def write_psk(directory: Path, identity: str, key: str) -> Path:
    """A tls-creds-psk dir (0700) with its keys.psk (0600). Blocking; idempotent."""
    if "," in str(directory):
        raise StoreError(f"{directory}: a comma cannot go into QEMU's option syntax")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = directory / PSK_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{identity}:{key}\n")
    return directory


# -- processes by pidfile -----------------------------------------------------------------------------


def _pid_of(pidfile: Path) -> int | None:
    """The live process the pidfile names, when its command line names the pidfile too. Blocking."""
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    named = os.fsencode(str(pidfile))
    if not any(arg == named or arg.endswith(b"=" + named) for arg in cmdline):
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return None if stat.rpartition(")")[2].split()[:1] == ["Z"] else pid


async def _stop(pidfile: Path, timeout: float = 10.0) -> None:
    """SIGTERM to the pidfile's process (a clean exit: QEMU flushes, unmounts its FUSE export),
    SIGKILL after `timeout`; returns once it is gone."""
    pid = await asyncio.to_thread(_pid_of, pidfile)
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.01
    while await asyncio.to_thread(_pid_of, pidfile) == pid:
        if loop.time() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = loop.time() + timeout
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)


# -- the target (volume host) ------------------------------------------------------------------------


@dataclass(frozen=True)
class Export:
    attachment_id: str
    volume_id: str
    name: str  # the NBD export name (random)
    bind: str  # the volume host's underlay address
    port: int
    read_only: bool = False

    def target(self) -> dict[str, Any]:
        """connection_info's part that the consumer needs to open it."""
        return {"target_host": self.bind, "target_port": self.port, "export": self.name,
                "tls": "psk", "psk_identity": psk_identity(self.attachment_id)}


def export_dir(run_dir: Path, attachment_id: str) -> Path:
    return run_dir / EXPORTS / check_id(attachment_id)


def new_export(attachment_id: str, volume_id: str, bind: str, port: int, *, read_only: bool) -> Export:
    return Export(attachment_id=check_id(attachment_id), volume_id=check_id(volume_id), name=secrets.token_hex(16),
                  bind=bind, port=port, read_only=read_only)


def exports(run_dir: Path) -> list[Export]:
    """Every recorded export of this host. Blocking."""
    out: list[Export] = []
    base = run_dir / EXPORTS
    with contextlib.suppress(FileNotFoundError):
        for entry in sorted(os.listdir(base)):
            try:
                doc = json.loads((base / entry / "export.json").read_text())
                out.append(Export(**{k: doc[k] for k in Export.__dataclass_fields__}))
            except (OSError, ValueError, KeyError, TypeError):
                continue
    return out


def recorded(run_dir: Path, attachment_id: str) -> Export | None:
    return next((e for e in exports(run_dir) if e.attachment_id == attachment_id), None)


def serving(run_dir: Path, attachment_id: str) -> bool:
    """Whether the export's qemu-nbd runs. Blocking."""
    return _pid_of(export_dir(run_dir, attachment_id) / "pid") is not None


def free_port(bind: str, first: int, last: int, taken: set[int]) -> int:
    """A port of [first, last] no export here records and nothing listens on. Blocking."""
    for port in range(first, last + 1):
        if port in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((bind, port))
            except OSError:
                continue
        return port
    raise StoreError(f"no free port for a volume export in {first}-{last} on {bind}")


async def serve(run_dir: Path, export: Export, path: str, key: str) -> None:
    """Start the export's qemu-nbd (returns once it listens); its record is written first, so a
    crash in between leaves something `unserve` finds."""
    d = export_dir(run_dir, export.attachment_id)
    await asyncio.to_thread(write_psk, d, psk_identity(export.attachment_id), key)
    await asyncio.to_thread((d / "export.json").write_text, json.dumps(asdict(export)))
    pidfile = d / "pid"
    argv = ["qemu-nbd", "--image-opts", "--object", f"tls-creds-psk,id=tls0,endpoint=server,dir={d}",
            "--tls-creds=tls0", f"--bind={export.bind}", f"--port={export.port}", f"--export-name={export.name}",
            "--persistent", "--shared=4", "--fork", f"--pid-file={pidfile}"]
    if export.read_only:
        argv.append("--read-only")
    else:
        argv.append("--discard=unmap")
    # raw, never probed; no image lock: a server moving off the volume host (live migration) still
    # has the file open in its QEMU while its destination connects (the attachment rules keep
    # anything else from writing it)
    image = "driver=raw,file.driver=file,file.locking=off,file.filename=" + path.replace(",", ",,")
    try:
        await host.run([*argv, image], timeout=30.0)
    except Exception as exc:
        raise StoreError(f"cannot export volume {export.volume_id} over NBD: {exc}") from exc


async def unserve(run_dir: Path, attachment_id: str) -> None:
    """Stop the export's qemu-nbd and remove its dir (nothing there: fine)."""
    d = export_dir(run_dir, attachment_id)
    await _stop(d / "pid")
    await asyncio.to_thread(shutil.rmtree, d, True)


# -- the connector (compute host, for a container) ------------------------------------------------------


def connection_dir(run_dir: Path, volume_id: str) -> Path:
    return run_dir / CONNECTIONS / check_id(volume_id)


def _is_mount(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mountinfo") as fh:
        return any(len(f := line.split()) > 4 and f[4] == target for line in fh)


def _lazy_umount(path: Path) -> None:
    if _LIBC.umount2(os.fsencode(str(path)), _MNT_DETACH) != 0 and ctypes.get_errno() not in (errno.EINVAL, errno.ENOENT):
        raise OSError(ctypes.get_errno(), f"umount {path}")


def connected(run_dir: Path, volume_id: str) -> Path | None:
    """The FUSE file of a live connection of the volume, else None. Blocking."""
    d = connection_dir(run_dir, volume_id)
    if _pid_of(d / "pid") is None or not _is_mount(d / "disk"):
        return None
    return d / "disk"


async def connect(run_dir: Path, volume_id: str, target: dict[str, Any], tls_dir: str, *, read_only: bool) -> Path:
    """The volume's export as a regular file on this host (idempotent: a live connection is
    reused): qemu-storage-daemon with an nbd block node and a FUSE export onto `<dir>/disk`."""
    live = await asyncio.to_thread(connected, run_dir, volume_id)
    if live is not None:
        return live
    await disconnect(run_dir, volume_id)  # whatever a crash left
    d = connection_dir(run_dir, volume_id)
    disk, pidfile = d / "disk", d / "pid"

    def prepare() -> None:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(disk, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))

    await asyncio.to_thread(prepare)
    node: dict[str, Any] = {
        "driver": "nbd", "node-name": "nbd0", "export": str(target["export"]), "tls-creds": "tls0",
        "server": {"type": "inet", "host": str(target["target_host"]), "port": str(int(target["target_port"]))},
        "reconnect-delay": 10, "read-only": read_only}
    creds = {"qom-type": "tls-creds-psk", "id": "tls0", "endpoint": "client", "dir": tls_dir,
             "username": str(target["psk_identity"])}
    fuse = {"type": "fuse", "id": "fuse0", "node-name": "nbd0", "mountpoint": str(disk),
            "writable": not read_only, "allow-other": "off"}
    argv = ["qemu-storage-daemon", "--object", json.dumps(creds), "--blockdev", json.dumps(node),
            "--export", json.dumps(fuse), "--daemonize", "--pidfile", str(pidfile)]
    try:
        await host.run(argv, timeout=60.0)
    except Exception as exc:
        await disconnect(run_dir, volume_id)
        raise StoreError(f"cannot connect volume {volume_id} from {target.get('target_host')}: {exc}") from exc
    return disk


async def disconnect(run_dir: Path, volume_id: str) -> bool:
    """The connection's daemon stopped, its FUSE mount gone, its dir removed. Returns whether there
    was one."""
    d = connection_dir(run_dir, volume_id)
    if not await asyncio.to_thread(d.exists):
        return False
    await _stop(d / "pid")
    if await asyncio.to_thread(_is_mount, d / "disk"):  # a daemon killed -9 leaves its mount
        await asyncio.to_thread(_lazy_umount, d / "disk")
    await asyncio.to_thread(shutil.rmtree, d, True)
    return True
