"""One named network namespace per server: `cumulo-<uuid>`, at /var/run/netns/cumulo-<uuid>.

Made before the container starts, the way `ip netns add` makes one: unshare(CLONE_NEWNET) in a
short-lived thread of our own, the thread's namespace bind-mounted on /var/run/netns/<name>, and its
loopback set UP with SIOCSIFFLAGS (a fresh namespace has it DOWN): no process forked on the boot
path. iproute2 (`ip netns add`, `ip -n <ns> link set lo up`) is the fallback, and does it the first
time, when /var/run/netns is not yet the shared mount point iproute2 sets up; config.json's network namespace names its path, so
runc joins it instead of making an anonymous one. Being named, it outlives the container across
stop/start and is where the network service plugs the server's veths. Deleted on destroy and on a
failed spawn; `ensure` re-creates it when the host rebooted (/run is a tmpfs).

The names are global to the host, but uuids are unique, so a namespace belongs to whoever owns
the instance dir of its uuid; the driver reaps only namespaces of its own instance dirs.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import fcntl
import os
import socket
import struct
import threading
from pathlib import Path

from cumulo import host
from cumulo.errors import DriverError, HostError

NETNS_DIR = Path("/var/run/netns")
PREFIX = "cumulo-"
IP = "ip"


def name_for(uuid: str) -> str:
    if not uuid or "/" in uuid or uuid in (".", "..") or "\x00" in uuid:
        raise DriverError(f"bad instance uuid {uuid!r}")
    return PREFIX + uuid


def path_for(uuid: str) -> Path:
    return NETNS_DIR / name_for(uuid)


def exists(uuid: str) -> bool:
    return path_for(uuid).exists()


_CLONE_NEWNET = 0x40000000
_MS_BIND = 0x1000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _netns_dir_ready() -> bool:
    """Whether /var/run/netns is a mount point already (iproute2 makes it one, shared, on its first
    `ip netns add`): only then is a bind mount on a file in it all that `ip netns add` would do."""
    target = str(NETNS_DIR.resolve()) if NETNS_DIR.exists() else str(NETNS_DIR)
    with open("/proc/self/mountinfo") as fh:
        return any(line.split()[4] == target for line in fh if len(line.split()) > 4)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _make_in_thread(path: Path) -> None:
    """In the calling (throw-away) thread: a new network namespace, pinned at `path`, lo up."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    os.close(fd)
    _check(_LIBC.unshare(_CLONE_NEWNET), "unshare(CLONE_NEWNET)")
    _check(_LIBC.mount(b"/proc/thread-self/ns/net", os.fsencode(path), b"none", ctypes.c_ulong(_MS_BIND), None),
           f"bind mount on {path}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # in the new namespace
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack_from("16sH", fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(sock.fileno(), _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def _create_sync(path: Path) -> None:
    """Run _make_in_thread in a thread that ends right after, so no pooled thread is ever left
    in a tenant's namespace; undo a half-made namespace on failure."""
    failure: list[BaseException] = []

    def work() -> None:
        try:
            _make_in_thread(path)
        except BaseException as exc:  # handed to the caller
            failure.append(exc)

    worker = threading.Thread(target=work, name=f"netns-{path.name}", daemon=True)
    worker.start()
    worker.join()
    if failure:
        _LIBC.umount2(os.fsencode(path), 2)  # MNT_DETACH; harmless when nothing is mounted
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        raise failure[0]


async def create(uuid: str) -> Path:
    """A fresh namespace with loopback up (a stale one of the same uuid is replaced)."""
    name = name_for(uuid)
    if exists(uuid):
        await delete(uuid)
    if os.geteuid() == 0 and await asyncio.to_thread(_netns_dir_ready):
        try:
            await asyncio.to_thread(_create_sync, path_for(uuid))
            return path_for(uuid)
        except OSError as exc:
            raise DriverError(f"cannot create network namespace {name}: {exc}") from exc
    try:
        await host.run([IP, "netns", "add", name], timeout=30)
        await host.run([IP, "-n", name, "link", "set", "lo", "up"], timeout=30)
    except HostError as exc:
        await delete(uuid)
        raise DriverError(f"cannot create network namespace {name}: {exc}") from exc
    except FileNotFoundError:
        raise DriverError("iproute2's `ip` is not installed (apt-get install iproute2)") from None
    return path_for(uuid)


async def ensure(uuid: str) -> Path:
    """The namespace, made again if it is gone (after a host reboot)."""
    if exists(uuid):
        return path_for(uuid)
    return await create(uuid)


async def delete(uuid: str) -> bool:
    """Delete the namespace; a missing one is fine. Returns whether one was there."""
    path = path_for(uuid)
    if not os.path.lexists(path):
        return False
    try:
        res = await host.run([IP, "netns", "delete", name_for(uuid)], timeout=30, check=False)
    except FileNotFoundError:
        res = None
    if os.path.lexists(path):
        # `ip` failed or is missing: undo what `ip netns add` did (a bind mount on a file).
        await host.run(["umount", "-l", str(path)], timeout=30, check=False)
        try:
            await asyncio.to_thread(path.unlink)
        except FileNotFoundError:
            pass
        except OSError as exc:
            msg = res.stderr.decode(errors="replace").strip() if res is not None else str(exc)
            raise DriverError(f"cannot delete network namespace {path.name}: {msg}") from exc
    return True


async def list_uuids() -> list[str]:
    """uuids of every cumulo-* namespace on the host (whoever made it)."""
    def scan() -> list[str]:
        try:
            names = os.listdir(NETNS_DIR)
        except OSError:
            return []
        return sorted(n[len(PREFIX):] for n in names if n.startswith(PREFIX) and len(n) > len(PREFIX))

    return await asyncio.to_thread(scan)
