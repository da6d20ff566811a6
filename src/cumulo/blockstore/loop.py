"""Loop devices for volume files attached to containers (recorded, reaped after a crash); ext4 on them.

The filesystem (ext4, or xfs) is made on a blank device only, and grown online or offline.

Every device is recorded as `<run_dir>/<volume uuid>.json` (the backing file) *before* `losetup`
binds it, so a process killed at any point leaves a record naming what it may have bound; `reap`
releases the devices of recorded volumes the caller no longer wants, found by backing file in
sysfs. Only recorded volumes are touched: another cloud's loop devices, or a runc root disk's,
never are.

Growing a mounted ext4 (`resize2fs` on a mounted device: EXT4_IOC_RESIZE_FS) needs
CAP_SYS_RESOURCE, which the cloud's root may lack (it does on the machine this was built on):
`grow_fs` then raises OnlineResizeUnavailable and the caller grows it unmounted (`e2fsck -f`,
`resize2fs`) at its next unmount or attach. A mounted xfs grows with CAP_SYS_ADMIN alone
(`xfs_growfs`), which is why `make_fs` offers it (at least 300 MiB; a guest needs the xfs module).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from pathlib import Path

from cumulo import host
from cumulo.blockstore.base import OnlineResizeUnavailable, StoreError, check_id
from cumulo.blockstore.sparse import started_after
from cumulo.errors import Conflict, HostError
from cumulo.host.revert import Reverter

CAP_SYS_RESOURCE = 24
_PARTIAL = re.compile(r"^\..+\.json\.(\d+)\.tmp$")  # a record being written (`_write`)
SYS_BLOCK = Path("/sys/block")


def devices_of(path: Path | str, sys_block: Path = SYS_BLOCK) -> list[str]:
    """The loop devices (`/dev/loopN`) bound to the file `path`, found by backing file in sysfs."""
    want = os.path.abspath(path)
    found: list[str] = []
    for f in sorted(sys_block.glob("loop*/loop/backing_file")):
        try:
            backing = f.read_text().rstrip("\n")
        except OSError:
            continue  # detached meanwhile
        if backing == want or backing == f"{want} (deleted)":
            found.append(f"/dev/{f.parent.parent.name}")
    return found


def capable(cap: int, status: str) -> bool:
    """Whether the CapEff line of a /proc/<pid>/status text holds capability `cap`."""
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> cap & 1)
    return False


def can_grow_online() -> bool:
    """Whether this process may grow a mounted ext4 (CAP_SYS_RESOURCE)."""
    try:
        return capable(CAP_SYS_RESOURCE, Path("/proc/self/status").read_text())
    except OSError:
        return False


class LoopTable:
    """The loop devices this store bound, one per volume, recorded under `run_dir`."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)

    def _record(self, volume_id: str) -> Path:
        return self.run_dir / f"{check_id(volume_id)}.json"

    def _write(self, volume_id: str, backing: str, device: str | None) -> None:
        self.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        rec = self._record(volume_id)
        tmp = rec.with_name(f".{rec.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"volume_id": volume_id, "backing_file": backing, "device": device}))
        os.replace(tmp, rec)

    def _read(self, volume_id: str) -> dict[str, str | None] | None:
        try:
            doc = json.loads(self._record(volume_id).read_text())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def recorded(self) -> list[str]:
        """The volume ids with a record (bound, or maybe bound by a process that crashed)."""
        try:
            names = os.listdir(self.run_dir)
        except FileNotFoundError:
            return []
        ids = []
        for name in names:
            if name.endswith(".json") and not name.startswith("."):
                with contextlib.suppress(ValueError):
                    ids.append(check_id(name[: -len(".json")]))
        return sorted(ids)

    async def device(self, volume_id: str) -> str | None:
        """The loop device bound to the volume's recorded file, if any."""
        rec = await asyncio.to_thread(self._read, volume_id)
        if not rec or not rec.get("backing_file"):
            return None
        devs = await asyncio.to_thread(devices_of, str(rec["backing_file"]))
        return devs[0] if devs else None

    async def attach(self, volume_id: str, path: Path | str, *, read_only: bool = False) -> str:
        """Bind the file to a free loop device (the one already bound when attached again);
        returns the device. The volume is recorded before the device is bound."""
        backing = os.path.abspath(path)
        held = await asyncio.to_thread(devices_of, backing)
        if held:
            rec = await asyncio.to_thread(self._read, volume_id)
            if rec and rec.get("backing_file") == backing:
                return held[0]
            raise Conflict(f"{Path(backing).name} is bound to {held[0]}, which this store did not record")
        async with Reverter() as r:
            await asyncio.to_thread(self._write, volume_id, backing, None)
            r.add(asyncio.to_thread, self._forget, volume_id)
            argv = ["losetup", "--find", "--show", "--direct-io=off"]
            if read_only:
                argv.append("--read-only")
            res = await host.run([*argv, backing], timeout=60.0)
            dev = res.text.strip()
            r.add(self._detach_devices, [dev])
            if not dev.startswith("/dev/loop"):
                raise StoreError(f"losetup gave no loop device: {dev!r}")
            await asyncio.to_thread(self._write, volume_id, backing, dev)
            r.commit()
        return dev

    def _reap_partial_records(self) -> None:
        """Records a dead process was writing (killed between the write and the rename)."""
        try:
            names = os.listdir(self.run_dir)
        except FileNotFoundError:
            return
        for name in names:
            m = _PARTIAL.match(name)
            if not m:
                continue
            with contextlib.suppress(FileNotFoundError):
                pid, changed = int(m[1]), (self.run_dir / name).lstat().st_mtime
                if not host.pid_alive(pid) or started_after(pid, changed):  # gone, or the pid reused
                    (self.run_dir / name).unlink()

    def _forget(self, volume_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._record(volume_id).unlink()

    async def _detach_devices(self, devices: list[str]) -> None:
        for dev in devices:
            try:
                await host.run(["losetup", "--detach", dev], timeout=60.0)
            except HostError:
                # gone already (autoclear, a concurrent detach) is fine; still bound is not
                if await asyncio.to_thread(os.path.exists, f"/sys/block/{Path(dev).name}/loop/backing_file"):
                    raise

    async def detach(self, volume_id: str) -> None:
        """Release the volume's loop device(s) and its record; nothing bound is no error."""
        rec = await asyncio.to_thread(self._read, volume_id)
        if rec and rec.get("backing_file"):
            devs = await asyncio.to_thread(devices_of, str(rec["backing_file"]))
            await self._detach_devices(devs)
        await asyncio.to_thread(self._forget, volume_id)

    async def reap(self, keep: set[str]) -> list[str]:
        """Detach every recorded volume not in `keep` (after a crash: the volumes the DB does not
        have attached here); returns the ids released."""
        released = []
        await asyncio.to_thread(self._reap_partial_records)
        for volume_id in await asyncio.to_thread(self.recorded):
            if volume_id not in keep:
                await self.detach(volume_id)
                released.append(volume_id)
        return released

    async def refresh(self, volume_id: str) -> None:
        """Make the device see its file's new size (`losetup -c`), after the file grew."""
        dev = await self.device(volume_id)
        if dev is None:
            raise StoreError(f"volume {volume_id} has no loop device")
        await host.run(["losetup", "--set-capacity", dev], timeout=60.0)


# -- a filesystem on a device (ext4 by default; xfs where online growth matters) ----------------------

FILESYSTEMS = ("ext4", "xfs")
XFS_MIN_BYTES = 300 << 20  # mkfs.xfs refuses smaller devices


async def fs_type(device: str) -> str | None:
    """The filesystem (or other signature) on a device, None when it is blank (`blkid -p`)."""
    res = await host.run(["blkid", "-p", "-o", "value", "-s", "TYPE", device], timeout=60.0, check=False)
    if res.returncode == 2:  # nothing found
        return None
    if res.returncode != 0:
        raise StoreError(f"blkid {device} failed ({res.returncode}): {res.stderr.decode(errors='replace').strip()}")
    return res.text.strip() or "unknown"


async def make_fs(device: str, fstype: str = "ext4", label: str = "", *, probed_blank: bool = False) -> None:
    """mkfs on a blank device (Conflict when it holds a filesystem or signature already).
    `probed_blank`: the caller's own `fs_type(device)` just found nothing (no second blkid)."""
    if fstype not in FILESYSTEMS:
        raise StoreError(f"filesystem {fstype!r} is not one of {', '.join(FILESYSTEMS)}")
    found = None if probed_blank else await fs_type(device)
    if found is not None:
        raise Conflict(f"{device} is not blank (it holds {found}); not formatting it")
    if fstype == "ext4":
        argv = ["mkfs.ext4", "-q", "-m", "0", "-E", "lazy_itable_init=1"] + (["-L", label[:16]] if label else [])
    else:
        argv = ["mkfs.xfs", "-q"] + (["-L", label[:12]] if label else [])
    await host.run([*argv, device], timeout=600.0)


async def grow_fs(device: str, *, mountpoint: Path | None) -> str:
    """Grow the filesystem on `device` to the device's size (after `LoopTable.refresh`); returns
    its type. Mounted (at `mountpoint`): online; an ext4 then needs CAP_SYS_RESOURCE
    (OnlineResizeUnavailable without it), an xfs only CAP_SYS_ADMIN. Unmounted: an ext4 is checked
    (`e2fsck -f -p`, as resize2fs requires) and grown; an xfs grows only mounted (Conflict)."""
    fstype = await fs_type(device)
    if fstype == "xfs":
        if mountpoint is None:
            raise Conflict(f"the xfs on {device} grows only while mounted")
        await host.run(["xfs_growfs", str(mountpoint)], timeout=600.0)
        return fstype
    if fstype not in ("ext2", "ext3", "ext4"):  # resize2fs grows the whole family (a VM's mke2fs makes ext2)
        raise StoreError(f"{device} holds {fstype or 'no filesystem'}, not ext2/3/4 or xfs")
    if mountpoint is not None:
        if not await asyncio.to_thread(can_grow_online):
            raise OnlineResizeUnavailable(
                "this host cannot grow a mounted ext4 (the cloud lacks CAP_SYS_RESOURCE); "
                "it grows when next detached or attached")
        await host.run(["resize2fs", device], timeout=600.0)
        return fstype
    res = await host.run(["e2fsck", "-f", "-p", device], timeout=600.0, check=False)
    if res.returncode not in (0, 1):  # 1: errors corrected
        raise StoreError(f"e2fsck {device} failed ({res.returncode}): {res.text.strip()[-500:]}")
    await host.run(["resize2fs", device], timeout=600.0)
    return fstype
