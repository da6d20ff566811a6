"""Running test code inside a server's network namespace, wherever its host is.

`cumulo.netplane.netns.run_in_sync` joins a namespace by its name under /run/netns, which is the
machine's own in the embedded configuration. On the scaled one a server's `cumulo-<uuid>` is in
its dev host's private mount namespace: `cloud.host_path(uuid, ...)` names the same file through
that host's holder process (/proc/<holder>/root/...), and the thread joins it by that path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from cumulo.netplane.netns import run_in_path_sync

if TYPE_CHECKING:
    from conftest import CumuloCloud

T = TypeVar("T")


def run_in_server_ns(cloud: CumuloCloud, uuid: str, fn: Callable[[], T]) -> T:
    """Blocking: fn() in a new thread that joined server `uuid`'s network namespace (sockets it
    makes stay in that namespace after the thread ends)."""
    return run_in_path_sync(cloud.host_path(uuid, f"/run/netns/cumulo-{uuid}"), fn, label=uuid)
