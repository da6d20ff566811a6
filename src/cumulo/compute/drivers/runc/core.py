"""What every facet of the runc driver stands on: its settings, the power state of a server, the
markers kept in its dir, starting the bundle and stopping the container.

The facets (freeze.py, suspend.py, resize.py, metrics.py, rebuild.py, snapshot.py, imagecache.py)
are classes derived from RuncCore, and RuncDriver (the package) is made of all of them, as Incus's
driver_lxc_*.go files are methods of one struct. No facet imports the package, so there is no
import circle.

State kept in the instance dir, so a restarted agent sees the same thing:
- `suspended.json` {"mechanism": "freezer"|"criu"}: the server is SUSPENDED, not PAUSED (suspend.py).
  A marker that does not match what runc shows (frozen, or gone) is stale and ignored.
- `exited`: the `created` stamp of the container whose stop is already told in the console log,
  so the power sync (list_instances every few seconds) writes the "exited" line once per run.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cumulo.compute.drivers import files
from cumulo.compute.drivers.base import Capability, DriverInfo, PowerState
from cumulo.compute.drivers.local import CONSOLE, LocalInstances
from cumulo.compute.drivers.runc import console, netns, nics, rootdisk, volhost
from cumulo.compute.drivers.runc.state import Runc, container_id
from cumulo.conf import Settings

CONSOLE_MAX_BYTES = 1 << 20  # console.log never grows past this (console.py)
CONFIG = "config.json"
SUSPENDED = "suspended.json"
EXITED = "exited"
CHECKPOINT = "checkpoint"
CRIU_WORK = "criu-work"
_POWER = {"running": PowerState.RUNNING, "paused": PowerState.PAUSED, "stopped": PowerState.SHUTDOWN,
          "created": PowerState.NOSTATE}


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


def _tell_exit(idir: Path, entry: dict[str, Any] | None) -> None:
    """The "exited" line in the console log, once per run of a container that stopped by itself."""
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


class _Fd:
    """An fd closed once, whoever closes it first (a closed number may be reused by another open)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class RuncCore(LocalInstances):
    label = "runc"

    def __init__(self, conf: Settings, host_name: str, *, local: bool = True) -> None:
        self.conf = conf
        self.host_name = host_name
        self.local = local
        state = Path(conf.state_dir).absolute()
        self.dir = state / "runc"
        self.images = state / "images"
        self.runc = Runc(state / "runc-state")
        self.stop_grace = conf.runc.stop_grace
        self.pids_limit = conf.runc.pids_limit
        # Bound of console.log, kept while the container writes (console.py) and on restart.
        self.console_max = conf.runc.console_max_bytes
        self.consoles = console.Consoles(self.console_max)  # bounds console.log while it is written
        self.spawn_delay = conf.runc.spawn_delay  # test hook: a cancellable spawn
        self._cgroup_parents: set[Path] = set()  # /sys/fs/cgroup/*/cumulo made since init_host
        self._nic_locks: dict[str, asyncio.Lock] = {}  # one NIC change at a time per server
        # The root disk bound to the flavor (rootdisk.py): "auto", "ext4" or "none".
        self.disks = rootdisk.RootDisks(state, conf.runc.root_disk, conf.runc.default_root_gb)
        self.info = DriverInfo(
            name="runc",
            hypervisor_type="container",
            instance_types=("container",),
            version=1,
            capabilities=frozenset({Capability.POWER, Capability.CONSOLE, Capability.PAUSE, Capability.SUSPEND,
                                    Capability.RESIZE, Capability.DIAGNOSTICS, Capability.REBUILD,
                                    Capability.SNAPSHOT, Capability.METRICS, Capability.NICS,
                                    Capability.VOLUMES, Capability.EXEC, Capability.COLD_MIGRATION}),
            details={"runtime": "runc", "rootfs": "overlayfs", "suspend": "freezer"},
        )

    def _nic_lock(self, uuid: str) -> asyncio.Lock:
        return self._nic_locks.setdefault(uuid, asyncio.Lock())

    def _power(self, uuid: str, status: str | None) -> PowerState:
        if not self.has_record(self.dir / uuid):
            return PowerState.NOSTATE  # a spawn under way, or one a crash cut short
        suspended = suspended_state(self.dir / uuid, status)
        if suspended is not None:
            return suspended
        if status is None:
            return PowerState.SHUTDOWN
        return _POWER.get(status, PowerState.NOSTATE)

    async def _current(self, uuid: str) -> tuple[Path, str, str | None, PowerState]:
        """The server's dir, container id, runc status and power state; a stale suspend marker goes."""
        idir = self.existing_dir(uuid)
        cid = container_id(uuid)
        status = await self.runc.status(cid)
        power = self._power(uuid, status)
        if power != PowerState.SUSPENDED and (idir / SUSPENDED).exists():
            await asyncio.to_thread(clear_suspend, idir)  # stale: e.g. a crash between marker and freeze
        return idir, cid, status, power

    async def _housekeep(self, uuids: list[str], listing: dict[str, dict[str, Any]]) -> None:
        """Tell exits in the console log once, and keep running containers' logs bounded."""

        def work() -> None:
            for uuid in uuids:
                idir = self.dir / uuid
                if not self.has_record(idir):
                    continue  # a spawn under way: not ours to touch yet
                _tell_exit(idir, listing.get(container_id(uuid)))
                self.trim_console(idir)

        await asyncio.to_thread(work)

    # -- start and stop ----------------------------------------------------------------------------

    async def _start(self, cid: str, idir: Path, args: list[str]) -> None:
        await asyncio.to_thread(files.note, idir / CONSOLE, f"starting container {cid}: {shlex.join(args)}")
        fresh = not netns.exists(idir.name)
        await netns.ensure(idir.name)  # gone after a host reboot (/run is a tmpfs)
        if fresh:
            await nics.replug(idir, idir.name)  # ... and so are its NICs then
        # Volumes (volhost.py): mounted again where a host reboot dropped them, bound in config.json.
        await volhost.before_start(idir.parent.parent, idir, CONFIG, lambda line: note(idir, line))
        writer = _Fd(await self.console_writer(idir))
        try:
            await self.runc.run_detached(cid, idir, idir / CONSOLE, writer.fd,
                                         flush=self._console_flush(idir, writer))
        finally:
            writer.close()

    async def console_writer(self, idir: Path) -> int:
        """The container's stdout/stderr: the console FIFO, read-write, with its drain running
        (console.py). The caller closes it once runc has handed it to the container."""
        stdio = await asyncio.to_thread(console.open_writer, idir)
        try:
            await self.consoles.start(idir)
        except BaseException:
            os.close(stdio)
            raise
        return stdio

    def _console_flush(self, idir: Path, writer: _Fd) -> Callable[[], Awaitable[None]]:
        """After a failed runc: close our writer, so the drain reaches EOF with runc's error in the log."""
        async def flush() -> None:
            writer.close()
            await self.consoles.wait(idir.name)
        return flush

    async def _stop(self, uuid: str, grace: float, why: str) -> None:
        """Stop and delete the container (SIGTERM, `grace` s, SIGKILL), telling it in the console log.

        A suspended server is stopped too (Nova allows stop and hard reboot of one): the freezer thaws
        it first (Runc.stop), CRIU images are dropped.
        """
        idir = self.existing_dir(uuid)
        cid = container_id(uuid)
        st = await self.runc.state(cid)
        if st is not None and st.get("status") != "stopped":
            how = "SIGKILL" if grace <= 0 else f"SIGTERM, SIGKILL after {grace:g}s"
            await asyncio.to_thread(mark_stop_told, idir, str(st.get("created") or ""), f"stopping container ({why}: {how})")
        await self.runc.stop(cid, grace)
        await self.runc.delete(cid)
        await asyncio.to_thread(clear_suspend, idir)
