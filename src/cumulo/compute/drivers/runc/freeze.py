"""Pause and unpause of a runc server: the cgroup freezer (`runc pause` / `runc resume`)."""

from __future__ import annotations

import asyncio

from cumulo.compute.drivers.base import PowerState
from cumulo.compute.drivers.runc.core import RuncCore, cannot, note


class Freeze(RuncCore):
    async def pause(self, uuid: str) -> None:
        idir, cid, _, power = await self._current(uuid)
        if power == PowerState.PAUSED:
            return
        if power != PowerState.RUNNING:
            raise cannot("pause", uuid, power)
        await self.runc.pause(cid)
        await asyncio.to_thread(note, idir, "container paused (cgroup freezer)")

    async def unpause(self, uuid: str) -> None:
        idir, cid, _, power = await self._current(uuid)
        if power == PowerState.RUNNING:
            return
        if power != PowerState.PAUSED:
            raise cannot("unpause", uuid, power)
        await self.runc.resume(cid)
        await asyncio.to_thread(note, idir, "container unpaused")
