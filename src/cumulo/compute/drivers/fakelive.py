"""The fake driver's LiveMigration (drivers.base): the server's record travels in the messages.

live_migration_source hands over the record; prepare_incoming keeps it here PAUSED (an incoming
guest); live_migrate leaves the source PAUSED with its figures; finish_incoming makes the
destination's copy RUNNING; drop_migrated forgets the source's copy. `cumulo_fake_fail` reaches it:
"live_migration" fails live_migrate (the source runs on), "pre_live_migration" fails the
destination's prepare (nothing stays), "post_live_migration" fails the destination's finish after
the move (the source is resumed: recover_source), and the pseudo-operation "live_migration_slow" makes
live_migrate last SLOW_SECONDS unless force_complete comes (it is cancellable), for abort and
force_complete tests.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Awaitable, Callable
from typing import Any

from cumulo.compute.drivers.base import InstanceSpec, PowerState
from cumulo.compute.drivers.fakemigrate import FakeCore
from cumulo.errors import DriverError

SLOW = "live_migration_slow"
SLOW_SECONDS = 60.0


class FakeLiveMigration:
    """Mixed into FakeDriver."""

    async def live_migration_source(self: FakeCore, uuid: str) -> dict[str, Any]:
        rec = self._get(uuid)
        power = PowerState(int(rec.get("power", 0)))
        if power not in (PowerState.RUNNING, PowerState.PAUSED):
            raise DriverError(f"Instance {uuid} is {power.name.lower()}; only a running or paused server live-migrates")
        return {"record": copy.deepcopy(rec), "disks": {}}

    async def prepare_incoming(self: FakeCore, spec: InstanceSpec, source: dict[str, Any], listen: str,
                               ports: tuple[int, int] = (49152, 49215)) -> dict[str, Any]:
        if spec.uuid in self._instances:
            raise DriverError(f"Instance {spec.uuid} already exists on fake host {self.host_name}")
        rec = copy.deepcopy(source["record"])
        self._check_fail(rec, "pre_live_migration")
        rec["incoming_power"] = rec.get("power")
        self._set_power(rec, PowerState.PAUSED)
        self._log(rec, f"fake: incoming live migration on {self.host_name} ({listen})")
        self._instances[spec.uuid] = rec
        await self._save(rec)
        return {"host": listen, "migrate_port": ports[0], "nbd_port": ports[0] + 1, "exports": []}

    async def live_migrate(self: FakeCore, uuid: str, target: dict[str, Any], *,
                           progress: Callable[[dict[str, Any]], Awaitable[None]] | None = None) -> dict[str, Any]:
        rec = self._get(uuid)
        before = rec.get("power")
        started = time.monotonic()
        seconds = SLOW_SECONDS if SLOW in rec.get("fail", []) else 0.0
        if progress is not None:
            await progress({"memory_total": 1 << 30, "memory_processed": 0, "memory_remaining": 1 << 30})
        if seconds > 0:
            deadline = started + seconds
            while time.monotonic() < deadline and not rec.get("force_complete"):
                await asyncio.sleep(0.05)
        self._check_fail(rec, "live_migration")
        rec["power_before_migration"] = before
        self._set_power(rec, PowerState.PAUSED)
        self._log(rec, f"fake: live-migrated to {target.get('host')}")
        await self._save(rec)
        return {"downtime_ms": 1, "total_time_ms": int((time.monotonic() - started) * 1000), "ram_bytes": 0,
                "disk_bytes": 0, "memory_total": 1 << 30, "memory_processed": 1 << 30, "memory_remaining": 0}

    async def recover_source(self: FakeCore, uuid: str, resume: bool) -> None:
        rec = self._get(uuid)
        before = rec.pop("power_before_migration", None)
        if resume and before is not None:
            self._set_power(rec, PowerState(int(before)))
            self._log(rec, "fake: live migration rolled back, the guest runs here")
            await self._save(rec)

    async def force_complete(self: FakeCore, uuid: str) -> None:
        rec = self._get(uuid)
        rec["force_complete"] = True

    async def finish_incoming(self: FakeCore, uuid: str, resume: bool = True) -> None:
        rec = self._get(uuid)
        self._check_fail(rec, "post_live_migration")
        power = rec.pop("incoming_power", None)
        self._set_power(rec, PowerState(int(power)) if power is not None else PowerState.RUNNING)
        self._log(rec, f"fake: the guest runs on {self.host_name}")
        await self._save(rec)

    async def abort_incoming(self: FakeCore, uuid: str) -> None:
        if uuid in self._instances:
            await self._remove(uuid)

    async def drop_migrated(self: FakeCore, uuid: str) -> None:
        if uuid in self._instances:
            await self._remove(uuid)
