"""Pause and unpause of a runc server: the cgroup freezer (`runc pause` / `runc resume`)."""

from __future__ import annotations

import asyncio

from cumulo.compute.drivers.base import PowerState
from cumulo.compute.drivers.local import guard
from cumulo.compute.drivers.runc.core import RuncCore, note


class Freeze(RuncCore):
    async def pause(self, uuid: str) -> None:
        idir, cid, _, power = await self._current(uuid)
        if not guard("pause", uuid, power, done=PowerState.PAUSED, allowed=(PowerState.RUNNING,)):
            return
        await self.runc.pause(cid)
        await asyncio.to_thread(note, idir, "container paused (cgroup freezer)")

    async def unpause(self, uuid: str) -> None:
        idir, cid, _, power = await self._current(uuid)
        if not guard("unpause", uuid, power, done=PowerState.RUNNING, allowed=(PowerState.PAUSED,)):
            return
        await self.runc.resume(cid)
        await asyncio.to_thread(note, idir, "container unpaused")
