"""The QEMU driver asks the guest again for a hot unplug it did not answer: QEMU's ACPI event is
lost when it reaches a guest whose ACPI is not up yet (a detach right after a start), a repeated
device_del is not. A fake QMP session stands in for QEMU (the real unplug is the driver contract
test's; Tempest's AttachVolumeTestJSON.test_attach_detach_volume with VMs found it)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from cumulo.compute.drivers.qemu import volumes as qvolumes
from cumulo.compute.drivers.qemu.volumes import Volumes

VOLUME = "0d2f5a4e-6c1b-4b7e-9a59-2f1c0e6d7a11"


class LosesFirstRequest:
    """A guest that misses the first device_del and answers the second."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.requests = 0
        self.calls: list[str] = []

    async def execute(self, command: str, args: dict[str, Any] | None = None) -> Any:
        self.calls.append(command)
        if command == "device_del":
            self.requests += 1
        return {}

    async def wait_device_deleted(self, dev: str, since: int, timeout: float) -> bool:
        self.calls.append("wait")
        return self.requests >= 2


class Layout:
    uuid = "5b0e0c2a-3f71-4c86-9a0e-0f6f1d7d4c55"


async def test_an_unanswered_unplug_is_asked_again() -> None:
    conn = LosesFirstRequest()
    drv = Volumes.__new__(Volumes)

    @contextlib.asynccontextmanager
    async def session(layout: Any) -> AsyncIterator[LosesFirstRequest]:
        yield conn

    drv._session = session  # type: ignore[method-assign,assignment]
    await drv._unplug_disk(Layout(), VOLUME, force=False)  # type: ignore[arg-type]
    assert conn.calls == ["device_del", "wait", "device_del", "wait", "blockdev-del", "blockdev-del"]
    assert qvolumes.UNPLUG_RETRY < qvolumes.UNPLUG_TIMEOUT
