"""Exec in a QEMU server (the Exec Protocol of drivers/base.py): the QEMU guest agent's guest-exec
over virtio-serial (qga.py).

Only a server whose image said hw_qemu_guest_agent=yes has the channel (VmConfig.guest_agent,
kept in its record, so every start and a snapshot keep it); another is InvalidState "no guest
agent channel". A server that does not run (stopped, paused, suspended) is InvalidState. One QGA
session per server at a time (the agent serves one client): an exec holds the server's lock for
its whole run, so two execs on one server run one after the other. A guest whose agent does not
answer (still booting, or no qemu-ga in it) is DriverError after the sync timeout.
"""

from __future__ import annotations

import asyncio

from cumulo.compute.drivers.base import PowerState
from cumulo.compute.drivers.execspec import ExecRequest, ExecResult
from cumulo.compute.drivers.qemu import qga
from cumulo.compute.drivers.qemu.core import QemuCore
from cumulo.errors import InvalidState

SYNC_TIMEOUT = 15.0  # how long an exec waits for the guest agent to answer its sync (the bus call waits timeout + 30 s)


class Exec(QemuCore):
    sync_timeout = SYNC_TIMEOUT

    async def exec_in(self, uuid: str, req: ExecRequest) -> ExecResult:
        req.check()
        layout = self._layout(uuid)
        if not await asyncio.to_thread(self.has_record, layout.dir):
            raise InvalidState(f"Instance {uuid} does not exist on QEMU host {self.host_name}")
        if not self._vm_config(layout).guest_agent:
            raise InvalidState(f"Instance {uuid} has no guest agent channel (its image does not set "
                               "hw_qemu_guest_agent=yes, or it started before the channel existed)")
        power = await self._state(layout)
        if power != PowerState.RUNNING:
            raise InvalidState(f"Instance {uuid} is not running (power state {power.name}): cannot exec")
        async with self._qga_locks.setdefault(uuid, asyncio.Lock()):
            return await qga.run(layout.qga, req, sync_timeout=self.sync_timeout)
