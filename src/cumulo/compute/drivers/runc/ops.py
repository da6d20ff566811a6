"""The runc driver's cgroup-side operations: pause, suspend, resize, console upkeep (diagnostics: metrics.py).

Functions here take the RuncDriver; its methods delegate to them. State they keep lives in the
instance dir, so a restarted agent sees the same thing:
- `suspended.json` {"mechanism": "freezer"|"criu"}: the server is SUSPENDED, not PAUSED. With the
  freezer the container is frozen exactly as by pause; with CRIU it is checkpointed into
  `checkpoint/` and has no runc container until resume restores it. A marker that does not match
  what runc shows (frozen, or gone) is stale and ignored.
- `resize-old-flavor.json`: the flavor before a resize, kept until confirm_resize or revert_resize.
- `exited`: the `created` stamp of the container whose stop is already told in the console log,
  so the power sync (list_instances every few seconds) writes the "exited" line once per run.

Suspend uses CRIU only where `criu check` passes on the host (probed once per process, with a
timeout), else the freezer; DriverInfo.details says which and why ("suspend", "suspend_reason").
`conf.extra["runc_suspend"] = "freezer"` forces the freezer.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cumulo import host
from cumulo.compute.drivers import files
from cumulo.compute.drivers.base import FlavorSpec, InstanceSpec, PowerState
from cumulo.compute.drivers.runc.bundle import CPU_PERIOD_US
from cumulo.compute.drivers.runc.state import container_id
from cumulo.errors import DriverError, HostError

if TYPE_CHECKING:
    from cumulo.compute.drivers.runc import RuncDriver

MIB = 1024 * 1024
SUSPENDED = "suspended.json"
OLD_FLAVOR = "resize-old-flavor.json"
EXITED = "exited"
CHECKPOINT = "checkpoint"
CRIU_WORK = "criu-work"
CONSOLE = "console.log"
RECORD = "instance.json"

_CRIU_PROBE: list[tuple[bool, str]] = []  # one probe per process: `criu check` does not change


# -- small file helpers (run in threads) -------------------------------------------------------


def note(idir: Path, line: str) -> None:
    """A line of ours in an existing console log (never creates it: a dir being removed)."""
    files.note(idir / CONSOLE, line, create=False)


def suspend_mechanism(idir: Path) -> str | None:
    rec = files.read_json(idir / SUSPENDED)
    return str(rec.get("mechanism")) if rec else None


def suspended_state(idir: Path, status: str | None) -> PowerState | None:
    """SUSPENDED when the marker matches what runc shows; None to let the runc status speak."""
    mech = suspend_mechanism(idir)
    if (mech == "freezer" and status == "paused") or (mech == "criu" and status is None):
        return PowerState.SUSPENDED
    return None


def clear_suspend(idir: Path) -> None:
    """Forget a suspend (after a stop, reboot or resume): the marker and any CRIU images."""
    (idir / SUSPENDED).unlink(missing_ok=True)
    for sub in (CHECKPOINT, CRIU_WORK):
        shutil.rmtree(idir / sub, ignore_errors=True)


def mark_stop_told(idir: Path, created: str | None, line: str) -> None:
    """A stop we make ourselves: tell it now, so the power sync does not call it an exit."""
    if created:
        (idir / EXITED).write_text(created)
    note(idir, line)


# -- CRIU probe ---------------------------------------------------------------------------------


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


# -- power-state housekeeping (from list_instances) ----------------------------------------------


def _housekeep_one(idir: Path, entry: dict[str, Any] | None, bound: int) -> None:
    if not (idir / RECORD).is_file():
        return  # a spawn under way: not ours to touch yet
    if entry is not None and entry.get("status") == "stopped":
        created = str(entry.get("created") or "")
        try:
            told = (idir / EXITED).read_text()
        except OSError:
            told = None
        if told != created:
            # runc keeps no exit status of a detached container (its init is reaped elsewhere).
            note(idir, "container process exited; the server is shut down")
            (idir / EXITED).write_text(created)
    files.trim_in_place(idir / CONSOLE, bound)


async def housekeep(drv: RuncDriver, uuids: list[str], listing: dict[str, dict[str, Any]]) -> None:
    """Tell exits in the console log once, and keep running containers' logs bounded."""

    def work() -> None:
        for uuid in uuids:
            _housekeep_one(drv.dir / uuid, listing.get(container_id(uuid)), drv.console_max)

    await asyncio.to_thread(work)


# -- pause / suspend ----------------------------------------------------------------------------


async def _current(drv: RuncDriver, uuid: str) -> tuple[Path, str, str | None, PowerState]:
    idir = drv._existing(uuid)
    cid = container_id(uuid)
    status = await drv.runc.status(cid)
    power = drv._power(uuid, status)
    if power != PowerState.SUSPENDED and (idir / SUSPENDED).exists():
        await asyncio.to_thread(clear_suspend, idir)  # stale: e.g. a crash between marker and freeze
    return idir, cid, status, power


def _cannot(op: str, uuid: str, power: PowerState) -> DriverError:
    return DriverError(f"Cannot {op} instance {uuid} in power state {power.name}")


async def pause(drv: RuncDriver, uuid: str) -> None:
    idir, cid, _, power = await _current(drv, uuid)
    if power == PowerState.PAUSED:
        return
    if power != PowerState.RUNNING:
        raise _cannot("pause", uuid, power)
    await drv.runc.pause(cid)
    await asyncio.to_thread(note, idir, "container paused (cgroup freezer)")


async def unpause(drv: RuncDriver, uuid: str) -> None:
    idir, cid, _, power = await _current(drv, uuid)
    if power == PowerState.RUNNING:
        return
    if power != PowerState.PAUSED:
        raise _cannot("unpause", uuid, power)
    await drv.runc.resume(cid)
    await asyncio.to_thread(note, idir, "container unpaused")


async def suspend(drv: RuncDriver, uuid: str) -> None:
    idir, cid, _, power = await _current(drv, uuid)
    if power == PowerState.SUSPENDED:
        return
    if power != PowerState.RUNNING:
        raise _cannot("suspend", uuid, power)
    mech = str(drv.info.details.get("suspend", "freezer"))
    # The marker goes first: a frozen container without it would read as PAUSED.
    await asyncio.to_thread(files.write_json, idir / SUSPENDED, {"mechanism": mech, "at": time.time()})
    try:
        if mech == "criu":
            try:
                await asyncio.to_thread((idir / CRIU_WORK).mkdir, exist_ok=True)
                await drv.runc.checkpoint(cid, idir / CHECKPOINT, idir / CRIU_WORK)
                await drv.runc.delete(cid)  # checkpoint leaves it stopped or gone
                await asyncio.to_thread(note, idir, "container suspended (CRIU checkpoint)")
                return
            except DriverError as exc:
                if await drv.runc.status(cid) != "running":
                    raise
                # The container still runs: suspend it the other way rather than fail.
                await asyncio.to_thread(clear_suspend, idir)
                await asyncio.to_thread(files.write_json, idir / SUSPENDED, {"mechanism": "freezer", "at": time.time()})
                await asyncio.to_thread(note, idir, f"CRIU checkpoint failed, using the freezer: {exc}")
        await drv.runc.pause(cid)
        await asyncio.to_thread(note, idir, "container suspended (cgroup freezer)")
    except BaseException:
        if await drv.runc.status(cid) == "running":
            await asyncio.shield(asyncio.to_thread(clear_suspend, idir))
        raise


async def resume(drv: RuncDriver, spec: InstanceSpec) -> None:
    idir, cid, _, power = await _current(drv, spec.uuid)
    if power == PowerState.RUNNING:
        return
    if power != PowerState.SUSPENDED:
        raise _cannot("resume", spec.uuid, power)
    if suspend_mechanism(idir) == "criu":
        stdio = await drv.console_writer(idir)  # the restored container's stdio: the console FIFO
        try:
            await drv.runc.restore(cid, idir, idir / CHECKPOINT, idir / CRIU_WORK, idir / CONSOLE, stdio)
        finally:
            os.close(stdio)
        line = "container resumed (CRIU restore)"
    else:
        await drv.runc.resume(cid)
        line = "container resumed (thawed)"
    await asyncio.to_thread(clear_suspend, idir)
    await asyncio.to_thread(note, idir, line)


# -- resize -------------------------------------------------------------------------------------


def _flavor_dict(f: FlavorSpec) -> dict[str, Any]:
    return {"vcpus": f.vcpus, "memory_mb": f.memory_mb, "root_gb": f.root_gb,
            "ephemeral_gb": f.ephemeral_gb, "swap": f.swap, "extra_specs": dict(f.extra_specs)}


async def apply_flavor(drv: RuncDriver, uuid: str, flavor: FlavorSpec) -> None:
    """The flavor's limits, live (`runc update`) when a container exists, and in config.json for later starts."""
    idir = drv._existing(uuid)
    cid = container_id(uuid)
    config = await asyncio.to_thread(files.read_json, idir / "config.json")
    if config is None:
        raise DriverError(f"The config.json of instance {uuid} is missing or unreadable")
    res = config.setdefault("linux", {}).setdefault("resources", {})
    memory = flavor.memory_mb * MIB
    period = int(res.get("cpu", {}).get("period") or CPU_PERIOD_US)
    pids = int(res.get("pids", {}).get("limit") or drv.pids_limit)
    res["memory"] = {**res.get("memory", {}), "limit": memory, "swap": memory}
    res["cpu"] = {**res.get("cpu", {}), "quota": flavor.vcpus * period, "period": period}
    res["pids"] = {"limit": pids}
    if await drv.runc.status(cid) in ("running", "paused", "created"):
        # Live first: a limit the kernel refuses (memory below usage) leaves config.json as it was.
        await drv.runc.update(cid, memory=memory, cpu_quota=flavor.vcpus * period, cpu_period=period, pids=pids)
    await asyncio.to_thread(files.write_json, idir / "config.json", config)
    await drv.resize_root_disk(uuid, flavor.root_gb)  # another disk size: a restart (rootdisk.py)


async def resize(drv: RuncDriver, spec: InstanceSpec, old_flavor: FlavorSpec) -> None:
    idir = drv._existing(spec.uuid)
    if not (idir / OLD_FLAVOR).exists():  # a retried resize keeps the first old flavor
        await asyncio.to_thread(files.write_json, idir / OLD_FLAVOR, _flavor_dict(old_flavor))
    await apply_flavor(drv, spec.uuid, spec.flavor)
    await asyncio.to_thread(
        note, idir, f"resized to {spec.flavor.vcpus} vCPUs, {spec.flavor.memory_mb} MB (live cgroup update)")


async def confirm_resize(drv: RuncDriver, uuid: str) -> None:
    idir = drv._existing(uuid)
    await asyncio.to_thread((idir / OLD_FLAVOR).unlink, missing_ok=True)


async def revert_resize(drv: RuncDriver, spec: InstanceSpec) -> None:
    """Back to spec.flavor (the manager passes the old one; the kept copy is what we had saved)."""
    idir = drv._existing(spec.uuid)
    await apply_flavor(drv, spec.uuid, spec.flavor)
    await asyncio.to_thread((idir / OLD_FLAVOR).unlink, missing_ok=True)
    await asyncio.to_thread(
        note, idir, f"resize reverted to {spec.flavor.vcpus} vCPUs, {spec.flavor.memory_mb} MB")


# -- stop (power_off, reboot) -------------------------------------------------------------------


async def stop(drv: RuncDriver, uuid: str, grace: float, why: str) -> None:
    """Stop and delete the container (SIGTERM, `grace` s, SIGKILL), telling it in the console log.

    A suspended server is stopped too (Nova allows stop and hard reboot of one): the freezer thaws
    it first (Runc.stop), CRIU images are dropped.
    """
    idir = drv._existing(uuid)
    cid = container_id(uuid)
    st = await drv.runc.state(cid)
    if st is not None and st.get("status") != "stopped":
        how = "SIGKILL" if grace <= 0 else f"SIGTERM, SIGKILL after {grace:g}s"
        await asyncio.to_thread(mark_stop_told, idir, str(st.get("created") or ""), f"stopping container ({why}: {how})")
    await drv.runc.stop(cid, grace)
    await drv.runc.delete(cid)
    await asyncio.to_thread(clear_suspend, idir)
