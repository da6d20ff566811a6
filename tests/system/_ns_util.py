"""Running test code inside a server's network namespace, wherever its host is.

`cumulo.netplane.netns.run_in_sync` joins a namespace by its name under /run/netns, which is the
machine's own in the embedded configuration. On the scaled one a server's `cumulo-<uuid>` is in
its dev host's private mount namespace: `cloud.host_path(uuid, ...)` names the same file through
that host's holder process (/proc/<holder>/root/...), and the thread joins it by that path.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from conftest import CumuloCloud

T = TypeVar("T")
_LIBC = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNET = 0x40000000


def run_in_server_ns(cloud: CumuloCloud, uuid: str, fn: Callable[[], T]) -> T:
    """Blocking: fn() in a new thread that joined server `uuid`'s network namespace (sockets it
    makes stay in that namespace after the thread ends)."""
    path = cloud.host_path(uuid, f"/run/netns/cumulo-{uuid}")
    result: list[T] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _LIBC.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns into {path}: {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(fn())
        except BaseException as exc:  # handed to the caller
            failure.append(exc)

    worker = threading.Thread(target=work, name=f"netns-{uuid}", daemon=True)
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return result[0]
