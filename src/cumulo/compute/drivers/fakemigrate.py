"""The fake driver's ColdMigration (drivers.base): the server's record file is its "disk".

migration_files sends `<uuid>.json`; finish_migration adopts the received record with the new
flavor; cleanup_migration_source forgets the source's copy. The fail knobs of the fake driver
(`cumulo_fake_fail`) reach it too: "migrate" fails migration_files on the source, "finish_migration"
fails the destination's step (which then leaves nothing behind).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Protocol

from cumulo.compute.drivers.base import InstanceSpec, MigrationFile, PowerState
from cumulo.errors import DriverError

RECORD = "fake-instance.json"


class FakeCore(Protocol):
    """What the fake driver's migration mixins (this and fakelive) use of FakeDriver."""

    host_name: str
    _instances: dict[str, dict[str, Any]]

    def _get(self, uuid: str) -> dict[str, Any]: ...

    def _path(self, uuid: str) -> Path: ...

    async def _save(self, rec: dict[str, Any]) -> None: ...

    async def _remove(self, uuid: str) -> None: ...

    def _check_fail(self, rec: dict[str, Any], op: str) -> None: ...

    def _log(self, rec: dict[str, Any], *lines: str) -> None: ...

    def _set_power(self, rec: dict[str, Any], power: PowerState) -> None: ...


class FakeColdMigration:
    """Mixed into FakeDriver."""

    async def migration_files(self: FakeCore, uuid: str) -> list[MigrationFile]:
        rec = self._get(uuid)
        self._check_fail(rec, "migrate")
        if PowerState(int(rec.get("power", 0))) == PowerState.RUNNING:
            raise DriverError(f"Instance {uuid} still runs: power it off before migrating it")
        self._log(rec, f"fake: disks sent away from {self.host_name}")
        await self._save(rec)
        return [MigrationFile(name=RECORD, path=str(self._path(uuid)))]

    async def finish_migration(self: FakeCore, spec: InstanceSpec, received: str, power_on: bool) -> None:
        if spec.uuid in self._instances:
            raise DriverError(f"Instance {spec.uuid} already exists on fake host {self.host_name}")
        path = Path(received) / RECORD
        try:
            rec = json.loads(await asyncio.to_thread(path.read_text))
        except (OSError, ValueError) as exc:
            raise DriverError(f"the migrated disk of {spec.uuid} is missing or unreadable: {exc}") from exc
        if not isinstance(rec, dict) or rec.get("uuid") != spec.uuid:
            raise DriverError(f"the files received for {spec.uuid} are another server's")
        fail = {op.strip() for op in str(spec.metadata.get("cumulo_fake_fail", "")).split(",") if op.strip()}
        if "finish_migration" in fail:
            raise DriverError("Fake driver: finish_migration failed as requested by cumulo_fake_fail=finish_migration")
        f = spec.flavor
        rec["flavor"] = {"vcpus": f.vcpus, "memory_mb": f.memory_mb, "root_gb": f.root_gb,
                         "ephemeral_gb": f.ephemeral_gb, "swap": f.swap, "extra_specs": dict(f.extra_specs)}
        rec["fail"] = sorted(fail | set(rec.get("fail") or []) - {"migrate"})
        rec["migrated_to"] = self.host_name
        self._set_power(rec, PowerState.RUNNING if power_on else PowerState.SHUTDOWN)
        self._log(rec, f"fake: server arrived on {self.host_name}")
        try:
            await self._save(rec)
        except BaseException:
            await asyncio.shield(self._remove(spec.uuid))
            raise

    async def cleanup_migration_source(self: FakeCore, uuid: str) -> None:
        await self._remove(uuid)
