"""Cumulo's network namespaces on the host: names derived from ids, made, listed and deleted.

`cnet-<network uuid>` holds a network's bridge (bridge.py) and its DHCP server; `crtr-<router
uuid>` a router. They are named namespaces (/var/run/netns/<name>, made with `ip netns add`), so
every host command reaches them as `ip -n <name> ...` and a restarted agent finds them again.
Nothing here touches the host's root namespace. The runc driver's per-container namespaces
(`cumulo-<uuid>`) are not ours: `list_names` never returns them unless asked by that prefix.

`run_in(name, fn)` runs a blocking function in a throw-away thread that joined the namespace
(setns), for what only a syscall does there (opening a tap, tap.py): no pooled thread ever
stays in a tenant's namespace.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import re
import threading
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from cumulo import host
from cumulo.errors import HostError, Invalid
from cumulo.host.revert import Reverter

NETNS_DIR = Path("/var/run/netns")
NETWORK_PREFIX = "cnet-"
ROUTER_PREFIX = "crtr-"
IP = "ip"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_CLONE_NEWNET = 0x40000000
_LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
T = TypeVar("T")


def _hex(ident: str) -> str:
    """The 32 hex digits of a uuid (raises Invalid for anything else: names derive from ids only)."""
    try:
        return uuidlib.UUID(str(ident)).hex
    except ValueError:
        raise Invalid(f"not a uuid: {ident!r}") from None


def network_ns(network_id: str) -> str:
    return NETWORK_PREFIX + str(uuidlib.UUID(_hex(network_id)))


def router_ns(router_id: str) -> str:
    return ROUTER_PREFIX + str(uuidlib.UUID(_hex(router_id)))


def port_device(port_id: str) -> str:
    """A port's device on its network's bridge: Neutron's "tap" + 11 hex digits (IFNAMSIZ 15)."""
    return "tap" + _hex(port_id)[:11]


def check_name(name: str) -> str:
    """A namespace name we may pass to `ip -n` (no path separators, no option-looking names)."""
    if not _NAME.match(name or ""):
        raise Invalid(f"bad network namespace name {name!r}")
    return name


def path_of(name: str) -> Path:
    return NETNS_DIR / check_name(name)


def exists(name: str) -> bool:
    return path_of(name).exists()


def identity(name: str) -> tuple[int, int] | None:
    """(device, inode) of the namespace's pin now, None when it is not there: what was made in an
    older namespace of the same name is not in this one."""
    try:
        st = os.stat(path_of(name))
    except OSError:
        return None
    return st.st_dev, st.st_ino


async def ensure(name: str) -> bool:
    """The namespace with its loopback up; returns whether it was made now (idempotent)."""
    if exists(name):
        return False
    async with Reverter() as revert:
        await host.run([IP, "netns", "add", check_name(name)], timeout=30)
        revert.add(delete, name)
        await host.run([IP, "-n", name, "link", "set", "lo", "up"], timeout=30)
        revert.commit()
    return True


async def delete(name: str) -> bool:
    """Delete the namespace (and so every link in it); a missing one is fine. Returns whether one was there."""
    path = path_of(name)
    if not os.path.lexists(path):
        return False
    res = await host.run([IP, "netns", "delete", name], timeout=30, check=False)
    if os.path.lexists(path):
        raise HostError(f"cannot delete network namespace {name}: {res.stderr.decode(errors='replace').strip()}")
    return True


def _scan(prefix: str) -> list[str]:
    try:
        names = os.listdir(NETNS_DIR)
    except OSError:
        return []
    return sorted(n for n in names if n.startswith(prefix) and len(n) > len(prefix))


async def list_names(prefix: str = NETWORK_PREFIX) -> list[str]:
    """Names of the namespaces on the host starting with `prefix` (for the agent's orphan reaping)."""
    if not prefix:
        raise Invalid("a namespace prefix is required")
    return await asyncio.to_thread(_scan, prefix)


def run_in_sync(name: str, fn: Callable[[], T]) -> T:
    """Blocking: fn() in a new thread that joined the namespace `name`; the thread ends right after."""
    return run_in_path_sync(path_of(name), fn, label=name)


def run_in_path_sync(path: str | Path, fn: Callable[[], T], *, label: str) -> T:
    """Blocking: fn() in a new thread that joined the network namespace file at `path` (e.g. a dev
    host's /proc/<pid>/root/run/netns/<name>); sockets fn makes stay in it after the thread ends."""
    result: list[T] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _LIBC.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns into {label}: {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(fn())
        except BaseException as exc:  # handed to the caller
            failure.append(exc)

    worker = threading.Thread(target=work, name=f"netns-{label}", daemon=True)
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return result[0]


async def run_in(name: str, fn: Callable[[], T]) -> T:
    """fn() inside the namespace `name`, off the event loop (run_in_sync in a worker)."""
    return await asyncio.to_thread(run_in_sync, name, fn)
