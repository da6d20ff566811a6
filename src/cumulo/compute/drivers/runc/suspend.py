"""Suspend and resume of a runc server: CRIU where `criu check` passes on the host (probed once per
process, with a timeout), else the freezer. DriverInfo.details says which and why ("suspend",
"suspend_reason"); `conf.runc.suspend` = "freezer" (extra key runc_suspend) forces the freezer.

`suspended.json` {"mechanism": "freezer"|"criu"} says the server is SUSPENDED, not PAUSED. With the
freezer the container is frozen exactly as by pause; with CRIU it is checkpointed into
`checkpoint/` and has no runc container until resume restores it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time

from cumulo import host
from cumulo.compute.drivers import files
from cumulo.compute.drivers.base import InstanceSpec, PowerState
from cumulo.compute.drivers.local import CONSOLE, guard
from cumulo.compute.drivers.runc.core import (
    CHECKPOINT,
    CRIU_WORK,
    SUSPENDED,
    RuncCore,
    clear_suspend,
    note,
    suspend_mechanism,
)
from cumulo.errors import DriverError, HostError

_CRIU_PROBE: list[tuple[bool, str]] = []  # one probe per process: `criu check` does not change


def _criu_reason(output: str) -> str:
    """The most telling error line of `criu check` (its first lines are often just "exited, status=1")."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "rror" in ln] or lines
    for ln in errors:
        if "exited, status" not in ln:
            return ln[:300]
    return errors[0][:300] if errors else "no output"


async def probe_criu(timeout: float = 10.0) -> tuple[bool, str]:
    """(usable, why): does `criu check` pass here? Probed once per process."""
    if _CRIU_PROBE:
        return _CRIU_PROBE[0]
    if shutil.which("criu") is None:
        result = (False, "criu is not installed")
    else:
        try:
            res = await host.run(["criu", "check"], timeout=timeout, check=False)
        except (HostError, OSError) as exc:
            result = (False, f"criu check failed: {exc}")
        else:
            if res.returncode == 0:
                result = (True, "criu check passed")
            else:
                out = res.stderr.decode(errors="replace") + res.stdout.decode(errors="replace")
                result = (False, f"criu check failed: {_criu_reason(out)}")
    _CRIU_PROBE.append(result)
    return result


async def suspend_details(conf_value: str) -> dict[str, str]:
    """DriverInfo.details entries saying which suspend this host does and why."""
    if conf_value == "freezer":
        return {"suspend": "freezer", "suspend_reason": "runc_suspend=freezer in the settings"}
    ok, why = await probe_criu()
    return {"suspend": "criu" if ok else "freezer", "suspend_reason": why}


class Suspend(RuncCore):
    async def suspend(self, uuid: str) -> None:
        idir, cid, _, power = await self._current(uuid)
        if not guard("suspend", uuid, power, done=PowerState.SUSPENDED, allowed=(PowerState.RUNNING,)):
            return
        mech = str(self.info.details.get("suspend", "freezer"))
        # The marker goes first: a frozen container without it would read as PAUSED.
        await asyncio.to_thread(files.write_json, idir / SUSPENDED, {"mechanism": mech, "at": time.time()})
        try:
            if mech == "criu":
                try:
                    await asyncio.to_thread((idir / CRIU_WORK).mkdir, exist_ok=True)
                    await self.runc.checkpoint(cid, idir / CHECKPOINT, idir / CRIU_WORK)
                    await self.runc.delete(cid)  # checkpoint leaves it stopped or gone
                    await asyncio.to_thread(note, idir, "container suspended (CRIU checkpoint)")
                    return
                except DriverError as exc:
                    if await self.runc.status(cid) != "running":
                        raise
                    # The container still runs: suspend it the other way rather than fail.
                    await asyncio.to_thread(clear_suspend, idir)
                    await asyncio.to_thread(files.write_json, idir / SUSPENDED,
                                            {"mechanism": "freezer", "at": time.time()})
                    await asyncio.to_thread(note, idir, f"CRIU checkpoint failed, using the freezer: {exc}")
            await self.runc.pause(cid)
            await asyncio.to_thread(note, idir, "container suspended (cgroup freezer)")
        except BaseException:
            if await self.runc.status(cid) == "running":
                await asyncio.shield(asyncio.to_thread(clear_suspend, idir))
            raise

    async def resume(self, spec: InstanceSpec) -> None:
        idir, cid, _, power = await self._current(spec.uuid)
        if not guard("resume", spec.uuid, power, done=PowerState.RUNNING, allowed=(PowerState.SUSPENDED,)):
            return
        if suspend_mechanism(idir) == "criu":
            stdio = await self.console_writer(idir)  # the restored container's stdio: the console FIFO
            try:
                await self.runc.restore(cid, idir, idir / CHECKPOINT, idir / CRIU_WORK, idir / CONSOLE, stdio)
            finally:
                os.close(stdio)
            line = "container resumed (CRIU restore)"
        else:
            await self.runc.resume(cid)
            line = "container resumed (thawed)"
        await asyncio.to_thread(clear_suspend, idir)
        await asyncio.to_thread(note, idir, line)
