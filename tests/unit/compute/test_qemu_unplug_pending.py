"""The QEMU driver's hot unplug when QEMU answers device_del with "already in the process of
unplug": a detach a crash cut short asked already and the guest has not answered yet. The driver
waits for that answer (DEVICE_DELETED) and removes the block nodes, as for its own request; a
guest that never answers is still a DriverError. A fake QMP session stands in for QEMU (the real
unplug is the driver contract test's)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cumulo.compute.drivers.qemu import blockdev, qmp
from cumulo.compute.drivers.qemu.volumes import Volumes
from cumulo.errors import DriverError

VOLUME = "0d2f5a4e-6c1b-4b7e-9a59-2f1c0e6d7a11"


class FakeQmp:
    def __init__(self, deleted: bool) -> None:
        self.events: list[dict[str, Any]] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.deleted = deleted

    async def execute(self, command: str, args: dict[str, Any] | None = None) -> Any:
        self.calls.append((command, dict(args or {})))
        if command == "device_del":
            raise qmp.QmpError(command, "GenericError", f"Device {args and args['id']} is already in the process of unplug")
        return {}

    async def wait_device_deleted(self, dev: str, since: int, timeout: float) -> bool:
        self.calls.append(("wait DEVICE_DELETED", {"device": dev}))
        return self.deleted


class Layout:
    uuid = "5b0e0c2a-3f71-4c86-9a0e-0f6f1d7d4c55"


def driver_with(conn: FakeQmp) -> Volumes:
    drv = Volumes.__new__(Volumes)

    @contextlib.asynccontextmanager
    async def session(layout: Any) -> AsyncIterator[FakeQmp]:
        yield conn

    drv._session = session  # type: ignore[method-assign,assignment]
    return drv


async def test_a_pending_unplug_is_waited_for_then_the_nodes_go() -> None:
    conn = FakeQmp(deleted=True)
    await driver_with(conn)._unplug_disk(Layout(), VOLUME, force=True)  # type: ignore[arg-type]
    dev = blockdev.device_id(VOLUME)
    assert conn.calls == [
        ("device_del", {"id": dev}),
        ("wait DEVICE_DELETED", {"device": dev}),
        ("blockdev-del", {"node-name": blockdev.node_name(VOLUME)}),
        ("blockdev-del", {"node-name": blockdev.file_node(VOLUME)}),
    ]


async def test_a_pending_unplug_the_guest_never_answers_is_an_error() -> None:
    conn = FakeQmp(deleted=False)
    with pytest.raises(DriverError, match="did not release volume"):
        await driver_with(conn)._unplug_disk(Layout(), VOLUME, force=False)  # type: ignore[arg-type]
    assert not [c for c in conn.calls if c[0] == "blockdev-del"]
