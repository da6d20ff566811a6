"""One named network namespace per server: `cumulo-<uuid>`, at /var/run/netns/cumulo-<uuid>.

Made with iproute2 (`ip netns add`, then `ip -n <ns> link set lo up`: a fresh namespace has its
loopback DOWN) before the container starts; config.json's network namespace names its path, so
runc joins it instead of making an anonymous one. Being named, it outlives the container across
stop/start and is where the network service plugs the server's veths. Deleted on destroy and on a
failed spawn; `ensure` re-creates it when the host rebooted (/run is a tmpfs).

The names are global to the host, but uuids are unique, so a namespace belongs to whoever owns
the instance dir of its uuid; the driver reaps only namespaces of its own instance dirs.
"""

from __future__ import annotations

import asyncio
import os
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


async def create(uuid: str) -> Path:
    """A fresh namespace with loopback up (a stale one of the same uuid is replaced)."""
    name = name_for(uuid)
    if exists(uuid):
        await delete(uuid)
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
