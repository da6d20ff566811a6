"""What every driver that keeps each server in a dir of its own on this host shares (Incus's
`common`, embedded in each driver): the runc and QEMU drivers derive from LocalInstances.

- uuid-safe instance dirs: `<driver dir>/<uuid>/`, 0700, never a name that leaves the driver dir;
- the record file, `instance.json`, written last: a dir without it is a spawn that never finished
  (or one a crash cut short), which the power sync sees as NOSTATE and the orphan sweep removes;
- the orphan sweep of dirs no known server owns;
- the console log, `console.log`: read (the last bytes, as text) and trimmed in place to its bound;
- the idempotent state guard of power operations: asking for the state a server is already in is
  a no-op; asking from a state the operation does not start from is a DriverError naming both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Container
from pathlib import Path
from typing import Any, ClassVar

from cumulo.compute.drivers import files
from cumulo.compute.drivers.base import PowerState
from cumulo.errors import DriverError

RECORD = "instance.json"
CONSOLE = "console.log"


def guard(op: str, uuid: str, power: PowerState, *, done: PowerState | None,
          allowed: Container[PowerState]) -> bool:
    """The idempotent state guard: False when the server is already `done` (nothing to do), True
    when `op` may go ahead from `power`; a DriverError otherwise."""
    if done is not None and power == done:
        return False
    if power not in allowed:
        raise DriverError(f"Cannot {op} instance {uuid} in power state {power.name}")
    return True


class LocalInstances:
    # How errors name the host ("Instance X does not exist on runc host h1").
    label: ClassVar[str] = "local"
    # Characters a uuid may not hold besides "/" (QEMU's -drive options split on ",").
    unsafe: ClassVar[str] = "/"
    dir: Path  # <state_dir>/<driver>: one dir per server below it
    host_name: str
    console_max: int  # the bound of console.log

    # -- instance dirs ----------------------------------------------------------------------------

    def instance_dir(self, uuid: str) -> Path:
        """The server's dir; a DriverError for a uuid that would name anything else."""
        if not uuid or uuid in (".", "..") or any(c in uuid for c in self.unsafe):
            raise DriverError(f"bad instance uuid {uuid!r}")
        return self.dir / uuid

    def existing_dir(self, uuid: str) -> Path:
        """The dir of a server whose spawn finished (its record is there)."""
        idir = self.instance_dir(uuid)
        if not (idir / RECORD).is_file():
            raise DriverError(f"Instance {uuid} does not exist on {self.label} host {self.host_name}")
        return idir

    async def make_instance_dir(self, uuid: str) -> Path:
        """A new, empty, private dir for a spawn; a DriverError when the server is already here."""
        idir = self.instance_dir(uuid)
        await asyncio.to_thread(files.private_dir, self.dir)
        try:
            await asyncio.to_thread(idir.mkdir, files.PRIVATE_DIR)
        except FileExistsError:
            raise DriverError(f"Instance {uuid} already exists on {self.label} host {self.host_name}") from None
        return idir

    async def instance_uuids(self) -> list[str]:
        """The names of the dirs here, sorted (finished or not)."""
        if not self.dir.is_dir():
            return []
        return sorted(p.name for p in await asyncio.to_thread(lambda: list(self.dir.iterdir())) if p.is_dir())

    # -- the record -------------------------------------------------------------------------------

    @staticmethod
    def has_record(idir: Path) -> bool:
        return (idir / RECORD).is_file()

    @staticmethod
    def read_record(idir: Path) -> dict[str, Any]:
        """The record (blocking); a DriverError when it is missing or unreadable."""
        rec = files.read_json(idir / RECORD)
        if rec is None:
            raise DriverError(f"the record of instance {idir.name} is missing or unreadable")
        return rec

    @staticmethod
    async def write_record(idir: Path, rec: dict[str, Any]) -> None:
        """The record, atomically (a crash leaves the old one or the new one)."""
        await asyncio.to_thread(files.write_json, idir / RECORD, rec)

    # -- orphans ----------------------------------------------------------------------------------

    async def sweep_dirs(self, known_uuids: set[str], remove: Callable[[str], Awaitable[bool]]) -> list[str]:
        """Remove (with `remove(uuid)`, True when it did) every dir no known server owns."""
        removed: list[str] = []
        for uuid in await self.instance_uuids():
            if uuid in known_uuids:
                continue
            try:
                self.instance_dir(uuid)
            except DriverError:
                continue  # not a name of ours
            if await remove(uuid):
                removed.append(uuid)
        return removed

    # -- the console ------------------------------------------------------------------------------

    def trim_console(self, idir: Path) -> bool:
        """Keep console.log within its bound, in place (blocking)."""
        return files.trim_in_place(idir / CONSOLE, self.console_max)

    async def get_console_output(self, uuid: str, max_bytes: int = 65536) -> str:
        idir = self.existing_dir(uuid)
        return await asyncio.to_thread(files.console_text, idir / CONSOLE, max_bytes)
