"""Pause and unpause of a QEMU server: QMP `stop` and `cont` (the guest's vCPUs halt; QEMU stays)."""

from __future__ import annotations

import asyncio

from cumulo.compute.drivers.base import PowerState
from cumulo.compute.drivers.local import guard
from cumulo.compute.drivers.qemu.core import QemuCore
from cumulo.compute.drivers.qemu.files import note


class Freeze(QemuCore):
    async def pause(self, uuid: str) -> None:
        layout = self._existing(uuid)
        async with self._op_lock(uuid):
            power = await self._state(layout)
            if not guard("pause", uuid, power, done=PowerState.PAUSED, allowed=(PowerState.RUNNING,)):
                return
            await self._qmp(layout, "stop")
            await asyncio.to_thread(note, layout, "paused (QMP stop)")

    async def unpause(self, uuid: str) -> None:
        layout = self._existing(uuid)
        async with self._op_lock(uuid):
            power = await self._state(layout)
            if not guard("unpause", uuid, power, done=PowerState.RUNNING, allowed=(PowerState.PAUSED,)):
                return
            await self._qmp(layout, "cont")
            await asyncio.to_thread(note, layout, "unpaused (QMP cont)")
