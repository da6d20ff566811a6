"""Volume attach, detach and extend on a runc server (the Volumes capability; the host side and
the mechanism: volhost.py). A volume is a filesystem at /mnt/volumes/<volume id> in the container.

attach (running, paused or stopped): recorded in volumes.json, bound to a loop device, an ext4
made when blank, mounted on the host, bound in config.json for every later start and, when the
container runs, injected into its mount namespace at once; a failed step takes back the ones
before it (no loop device, mount or dir is left). A suspended server refuses (its saved state).

detach: the mount leaves the container first. While a process of the container holds a file,
its cwd or its root on it, detach is a Conflict naming the process; `force` unmounts lazily
instead (the kernel's MNT_DETACH): the path goes at once, processes that hold files keep reading
and writing them until they close them, and the loop device stays bound until the last one does
(so the volume cannot be attached to another container meanwhile: LoopTable refuses a file bound
to a device it did not record). Then the host mount and the loop device go.

extend: `losetup -c`, then the filesystem grows. A mounted ext4 grows only with CAP_SYS_RESOURCE
(loop.grow_fs raises OnlineResizeUnavailable without it, as on the machine this was built on);
then, when no process of the container holds the volume, it is unmounted for the moment of an
offline `e2fsck -f -p` + `resize2fs` and mounted again (host and container); when one holds it,
the growth waits in the record ("grow") for the next detach, attach or start.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
from pathlib import Path
from typing import Any

from cumulo.blockstore import loop
from cumulo.blockstore.base import OnlineResizeUnavailable
from cumulo.compute.drivers import files
from cumulo.compute.drivers.base import DiskSpec, PowerState
from cumulo.compute.drivers.local import CONSOLE
from cumulo.compute.drivers.runc import volhost
from cumulo.compute.drivers.runc.core import CONFIG, RuncCore
from cumulo.compute.drivers.runc.state import container_id
from cumulo.errors import Conflict, CumuloError, DriverError, NotFound
from cumulo.host.revert import Reverter


class Volumes(RuncCore):
    @property
    def state_dir(self) -> Path:
        return self.dir.parent

    async def _live_pid(self, uuid: str) -> int | None:
        """The container's init pid while it runs or is paused (its mount namespace is there): read
        in-process from runc's state.json once `status` (runc's own rule, no process) says it lives;
        a `runc state` process (4-8 ms, on every attach and detach) only when that is unsure."""
        cid = container_id(uuid)
        if await self.runc.status(cid) not in ("running", "paused"):
            return None
        pid = _init_pid(self.runc.root, cid)
        if pid is not None:
            return pid
        st = await self.runc.state(cid)
        if st is None or st.get("status") not in ("running", "paused"):
            return None
        pid = int(st.get("pid") or 0)
        return pid if pid > 0 else None

    def _note(self, idir: Path, line: str) -> None:
        files.note(idir / CONSOLE, line, create=False)

    async def attached_volumes(self, uuid: str) -> list[str]:
        return [str(e["volume_id"]) for e in await asyncio.to_thread(volhost.read, self.existing_dir(uuid))]

    async def attach_volume(self, uuid: str, disk: DiskSpec) -> None:
        idir = self.existing_dir(uuid)
        volhost.check_disk(disk)
        async with self._nic_lock(uuid):
            entries = await asyncio.to_thread(volhost.read, idir)
            known = next((e for e in entries if e["volume_id"] == disk.volume_id), None)
            if known is not None:  # attached already; made whole if a crash came in between
                await self._complete(uuid, idir, entries, known)
                return
            status = await self.runc.status(container_id(uuid))
            if self._power(uuid, status) == PowerState.SUSPENDED:
                raise Conflict(f"Instance {uuid} is suspended: resume it before attaching a volume")
            state = self.state_dir
            entry = disk.to_dict()
            async with Reverter() as revert:
                await asyncio.to_thread(volhost.write, idir, [*entries, entry])
                revert.add(asyncio.to_thread, volhost.write, idir, entries)
                revert.add(volhost.take_down, state, uuid, disk.volume_id, lazy=True)
                _dev, mnt = await volhost.bring_up(state, uuid, entry)
                await asyncio.to_thread(volhost.sync_config, state, idir, [*entries, entry], CONFIG)
                revert.add(asyncio.to_thread, volhost.sync_config, state, idir, entries, CONFIG)
                pid = await self._live_pid(uuid)
                if pid is not None:
                    try:
                        await asyncio.to_thread(volhost.inject, pid, mnt, disk.volume_id)
                    except OSError as exc:
                        raise DriverError(f"cannot mount volume {disk.volume_id} in container {uuid}: "
                                          f"{exc.strerror or exc}") from exc
                    revert.add(asyncio.to_thread, volhost.eject, pid, disk.volume_id, lazy=True)
                revert.commit()
        await asyncio.to_thread(self._note, idir, f"volume {disk.volume_id} attached at "
                                f"{volhost.container_path(disk.volume_id)}" + ("" if pid else " (from the next start)"))

    async def _complete(self, uuid: str, idir: Path, entries: list[dict[str, Any]], entry: dict[str, Any]) -> None:
        growing = bool(entry.get("grow"))
        _dev, mnt = await volhost.bring_up(self.state_dir, uuid, entry)
        if growing and not entry.get("grow"):  # grown while brought up: no longer pending
            await asyncio.to_thread(volhost.write, idir, entries)
        await asyncio.to_thread(volhost.sync_config, self.state_dir, idir, entries, CONFIG)
        pid = await self._live_pid(uuid)
        if pid is not None and not await asyncio.to_thread(volhost.mounted_in, pid, str(entry["volume_id"])):
            await asyncio.to_thread(volhost.inject, pid, mnt, str(entry["volume_id"]))

    async def detach_volume(self, uuid: str, volume_id: str, force: bool = False) -> None:
        idir = self.existing_dir(uuid)
        async with self._nic_lock(uuid):
            entries = await asyncio.to_thread(volhost.read, idir)
            entry = next((e for e in entries if e["volume_id"] == volume_id), None)
            if entry is None:
                return
            pid = await self._live_pid(uuid)
            if pid is not None:
                await self._eject(uuid, pid, volume_id, lazy=force)
            rest = [e for e in entries if e is not entry]
            await asyncio.to_thread(volhost.sync_config, self.state_dir, idir, rest, CONFIG)
            try:
                await volhost.take_down(self.state_dir, uuid, volume_id, lazy=force, grow=bool(entry.get("grow")))
            except Conflict:
                await asyncio.to_thread(volhost.sync_config, self.state_dir, idir, entries, CONFIG)
                raise
            await asyncio.to_thread(volhost.write, idir, rest)
        await asyncio.to_thread(self._note, idir, f"volume {volume_id} detached" + (" (forced)" if force else ""))

    async def _eject(self, uuid: str, pid: int, volume_id: str, *, lazy: bool) -> None:
        try:
            err, dev_no = await asyncio.to_thread(volhost.eject, pid, volume_id, lazy=lazy)
        except OSError as exc:
            raise DriverError(f"cannot unmount volume {volume_id} in container {uuid}: {exc.strerror or exc}") from exc
        if err == errno.EBUSY:
            held = await asyncio.to_thread(volhost.holders, dev_no, await asyncio.to_thread(volhost.mnt_ns_of, pid))
            raise Conflict(f"volume {volume_id} is in use in server {uuid}: {held or 'a process holds it'} "
                           f"(under {volhost.container_path(volume_id)}); stop that process, or detach with "
                           "force (a lazy unmount)")
        if err not in (0, errno.EINVAL):
            raise DriverError(f"cannot unmount volume {volume_id} in container {uuid}: {os.strerror(err)}")

    async def extend_volume(self, uuid: str, volume_id: str, new_size_bytes: int) -> None:
        idir = self.existing_dir(uuid)
        async with self._nic_lock(uuid):
            entries = await asyncio.to_thread(volhost.read, idir)
            entry = next((e for e in entries if e["volume_id"] == volume_id), None)
            if entry is None:
                raise NotFound(f"volume {volume_id} is not attached to instance {uuid}")
            table = volhost.loops(self.state_dir)
            dev = await table.device(volume_id)
            if dev is None:  # not brought up (a start left it out): it grows when it is
                entry["grow"] = True
                await asyncio.to_thread(volhost.write, idir, entries)
                return
            try:
                await table.refresh(volume_id)
            except CumuloError as exc:
                raise DriverError(f"cannot tell the loop device of volume {volume_id} it grew: {exc}") from exc
            if DiskSpec.from_dict(entry).read_only:
                return  # a read-only filesystem is not grown here; a writable attachment grows it
            # Pending until grown: a crash in the offline grow (the volume unmounted for a moment)
            # leaves the flag, and the next attach (the agent's reconcile), detach or start grows it.
            entry["grow"] = True
            await asyncio.to_thread(volhost.write, idir, entries)
            how = await self._grow(uuid, idir, {k: v for k, v in entry.items() if k != "grow"}, dev)
            if how != "later":
                entry.pop("grow", None)
                await asyncio.to_thread(volhost.write, idir, entries)
        await asyncio.to_thread(self._note, idir, f"volume {volume_id} grew to {int(new_size_bytes)} bytes; "
                                + ("its filesystem grows when no process holds it (next detach, attach or start)"
                                   if how == "later" else f"filesystem grown {how}"))

    async def _grow(self, uuid: str, idir: Path, entry: dict[str, Any], dev: str) -> str:
        volume_id = str(entry["volume_id"])
        mnt = volhost.mount_point(self.state_dir, uuid, volume_id)
        try:
            await loop.grow_fs(dev, mountpoint=mnt)
            return "online"
        except OnlineResizeUnavailable:
            pass
        except CumuloError as exc:
            raise DriverError(f"cannot grow the filesystem of volume {volume_id}: {exc}") from exc
        pid = await self._live_pid(uuid)
        if pid is not None:
            err, _dev_no = await asyncio.to_thread(volhost.eject, pid, volume_id, lazy=False)
            if err == errno.EBUSY:
                return "later"
        try:
            async with Reverter() as revert:
                if pid is not None:
                    revert.add(asyncio.to_thread, volhost.inject, pid, mnt, volume_id)
                revert.add(volhost.bring_up, self.state_dir, uuid, entry)  # runs first: mounted again
                await volhost.take_down(self.state_dir, uuid, volume_id, grow=True)
                await volhost.bring_up(self.state_dir, uuid, entry)
                if pid is not None:
                    await asyncio.to_thread(volhost.inject, pid, mnt, volume_id)
                revert.commit()
        except Conflict:
            # The host mount is held (not by the container): put the container's back, grow later.
            with contextlib.suppress(OSError, CumuloError):
                await volhost.bring_up(self.state_dir, uuid, entry)
                if pid is not None:
                    await asyncio.to_thread(volhost.inject, pid, mnt, volume_id)
            return "later"
        return "offline (unmounted for the moment)"


def _init_pid(root: Path, cid: str) -> int | None:
    """The init pid runc recorded for a container (`<root>/<cid>/state.json`), None when unreadable."""
    try:
        with open(root / cid / "state.json", "rb") as fh:
            pid = int(json.load(fh)["init_process_pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid if pid > 0 else None
