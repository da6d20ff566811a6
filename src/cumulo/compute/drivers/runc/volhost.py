"""A container's volumes on the host: a container has no block layer, so a volume is a filesystem.

Per attached volume (DiskSpec): a loop device on the block store's file (blockstore.loop.LoopTable,
recorded under `<state>/volumes/.run/loops` before losetup binds it), an ext4 made on it when it
is blank (ext2/ext3/ext4 and xfs written elsewhere, e.g. by a VM, are mounted as they are), mounted
on the host (nosuid, nodev; read-only for a read-only attachment) at
`<state>/volmounts/<instance uuid>/<volume id>`, and seen in the container at
`/mnt/volumes/<volume id>` (MOUNT_ROOT):
- at every start, as a bind in config.json (sync_config; the dirs made 0755 in the root first, not
  by runc with the cloud's umask);
- on a running container, injected into its mount namespace: the host mount is cloned
  (open_tree(OPEN_TREE_CLONE)) and moved (move_mount) onto the dir from a throw-away thread that
  entered the container's mount namespace (setns; paths then resolve inside the container's root
  only, so a link the tenant planted cannot reach the host). Nothing is set up at spawn for
  it, so servers without volumes are as before.

`volumes.json` in the instance dir lists the attached volumes, written before anything is made,
so destroy, a failed spawn and the orphan sweep (release_all) find every loop device and mount.
No device node is given: a raw block device under a filesystem the host kernel has mounted would
let the tenant write the kernel's metadata from below (docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cumulo.blockstore import loop, nbd
from cumulo.blockstore.base import StoreConfig, check_id
from cumulo.compute.drivers import files, rootfs
from cumulo.compute.drivers.base import DiskSpec
from cumulo.compute.drivers.runc import rootdisk
from cumulo.errors import Conflict, DriverError, Invalid

VOLUMES = "volumes.json"
MOUNT_ROOT = "/mnt/volumes"
EXT = ("ext2", "ext3", "ext4")
MOUNTABLE = (*EXT, "xfs")
_DIR_MODE = 0o755
_MS_RDONLY = 1
_MNT_DETACH = 2
_OPEN_TREE_CLONE, _OPEN_TREE_CLOEXEC = 1, os.O_CLOEXEC
_MOVE_MOUNT_F_EMPTY_PATH, _MOVE_MOUNT_T_EMPTY_PATH = 0x4, 0x40
_SYS_OPEN_TREE, _SYS_MOVE_MOUNT = 428, 429  # x86_64
_CLONE_FS, _CLONE_NEWNS = 0x200, 0x20000
_LIBC = ctypes.CDLL(None, use_errno=True)


# -- the record -----------------------------------------------------------------------------------


def read(idir: Path) -> list[dict[str, Any]]:
    """The recorded volumes: DiskSpec dicts, plus "grow" when the filesystem waits to be grown.
    Blocking."""
    doc = files.read_json(idir / VOLUMES) or {}
    out = []
    for d in doc.get("disks") or []:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            DiskSpec.from_dict(d)
            out.append(d)
    return out


def write(idir: Path, entries: list[dict[str, Any]]) -> None:
    """Blocking; no entries: the file goes."""
    if entries:
        files.write_json(idir / VOLUMES, {"disks": entries})
    else:
        (idir / VOLUMES).unlink(missing_ok=True)


def check_disk(disk: DiskSpec) -> None:
    """The volume id is a canonical UUID (it names dirs and mounts) and the path absolute."""
    try:
        canonical = check_id(disk.volume_id)
    except Invalid:
        canonical = ""
    if canonical != disk.volume_id:
        raise DriverError(f"volume id {disk.volume_id!r} is not in canonical UUID form")
    if disk.kind == "nbd":  # another host's volume: connected through FUSE (bring_up)
        if not disk.tls_dir.startswith("/") or "," in disk.tls_dir or not disk.target.get("export"):
            raise DriverError(f"volume {disk.volume_id}: a bad NBD target")
        return
    if not disk.path.startswith("/") or "\x00" in disk.path:
        raise DriverError(f"volume {disk.volume_id}: bad path {disk.path!r}")


def mount_point(state: Path, uuid: str, volume_id: str) -> Path:
    return state / "volmounts" / uuid / volume_id


def loops(state: Path) -> loop.LoopTable:
    return loop.LoopTable(StoreConfig.under(state).run_dir / "loops")


def container_path(volume_id: str) -> str:
    return f"{MOUNT_ROOT}/{volume_id}"


# -- host mounts ----------------------------------------------------------------------------------


def _mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mountinfo") as fh:
        return any(len(f := line.split()) > 4 and f[4] == target for line in fh)


def _source_mounted(device: str) -> bool:
    """Whether `device` is the source of a mount in our namespace."""
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            _left, _sep, right = line.partition(" - ")
            fields = right.split()
            if len(fields) > 1 and fields[1] == device:
                return True
    return False


def _umount(path: Path, flags: int = 0) -> int:
    """umount2; 0, or the errno (EINVAL: nothing mounted there)."""
    if _LIBC.umount2(os.fsencode(str(path)), flags) != 0:
        return ctypes.get_errno()
    return 0


def _mount(device: str, target: Path, fstype: str, read_only: bool) -> None:
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    flags = rootdisk.MS_NOSUID | rootdisk.MS_NODEV | (_MS_RDONLY if read_only else 0)
    rootdisk.sys_mount(device, target, "ext4" if fstype in EXT else fstype, flags, b"")


async def bring_up(state: Path, uuid: str, entry: dict[str, Any]) -> tuple[str, Path]:
    """The volume's loop device and host mount (made where missing: idempotent); its filesystem
    made when blank, grown when it waits to be. Returns (device, mount point). The caller undoes
    with take_down."""
    disk = DiskSpec.from_dict(entry)
    mnt = mount_point(state, uuid, disk.volume_id)
    table = loops(state)
    path = disk.path
    if disk.kind == "nbd":  # the volume host's export, as a file of ours (the loop device's backing)
        try:
            path = str(await nbd.connect(StoreConfig.under(state).run_dir, disk.volume_id, disk.target, disk.tls_dir,
                                         read_only=disk.read_only))
        except Exception as exc:
            raise DriverError(f"cannot connect volume {disk.volume_id}: {exc}") from exc
    try:
        dev = await table.attach(disk.volume_id, path, read_only=disk.read_only)
    except Conflict:
        raise
    except Exception as exc:  # HostError, StoreError, OSError: a clear message either way
        raise DriverError(f"cannot bind volume {disk.volume_id} to a loop device: {exc}") from exc
    if await asyncio.to_thread(_mounted, mnt):
        return dev, mnt
    fstype = await loop.fs_type(dev)
    if fstype is None:
        if disk.read_only:
            raise Conflict(f"volume {disk.volume_id} is blank and attached read-only: no filesystem to mount")
        await loop.make_fs(dev, "ext4", label=disk.volume_id[:16], probed_blank=True)
        fstype = "ext4"
    elif fstype not in MOUNTABLE:
        raise Conflict(f"volume {disk.volume_id} holds {fstype}, which a container cannot mount (it mounts "
                       f"{', '.join(MOUNTABLE)}); attach it to a VM")
    if entry.get("grow") and not disk.read_only:
        await loop.grow_fs(dev, mountpoint=None)
        entry.pop("grow", None)
    try:
        await asyncio.to_thread(_mount, dev, mnt, fstype, disk.read_only)
    except OSError as exc:
        raise DriverError(f"cannot mount volume {disk.volume_id} ({fstype}): {exc.strerror or exc}") from exc
    return dev, mnt


async def take_down(state: Path, uuid: str, volume_id: str, *, lazy: bool = False, grow: bool = False) -> None:
    """Unmount the volume on the host (Conflict naming the holders while busy, unless lazy), grow
    its ext4 offline when asked, release its loop device and the mount point dir."""
    mnt = mount_point(state, uuid, volume_id)
    table = loops(state)
    if await asyncio.to_thread(_mounted, mnt):
        dev_no = (await asyncio.to_thread(os.stat, mnt)).st_dev
        err = await asyncio.to_thread(_umount, mnt, _MNT_DETACH if lazy else 0)
        if err == errno.EBUSY:
            held = await asyncio.to_thread(holders, dev_no, None)
            raise Conflict(f"volume {volume_id} is in use on the host ({held or 'by the kernel'}); "
                           "detach it with force to unmount it lazily")
        if err not in (0, errno.EINVAL):
            raise DriverError(f"cannot unmount volume {volume_id}: {os.strerror(err)}")
    bound = await table.device(volume_id)
    if bound is not None:  # lazily too: a copy elsewhere would keep the loop device after a destroy
        await asyncio.to_thread(drop_copies, mnt, bound)
    if bound is not None and await asyncio.to_thread(_source_mounted, bound):
        # Another server here has the same (multiattach) volume mounted: its device stays.
        with contextlib.suppress(OSError):
            await asyncio.to_thread(mnt.rmdir)
        return
    if grow and not lazy and bound is not None:
        with contextlib.suppress(Exception):  # a failed growth leaves the filesystem as it was
            await loop.grow_fs(bound, mountpoint=None)
    file = ""
    if bound is not None:
        with contextlib.suppress(OSError):
            file = (Path("/sys/block") / Path(bound).name / "loop" / "backing_file").read_text().rstrip("\n")
    try:
        await table.detach(volume_id)
    except Exception as exc:
        raise DriverError(f"cannot release the loop device of volume {volume_id}: {exc}") from exc
    if bound is not None and not lazy:
        await _wait_released(bound, file, volume_id)
    # another host's volume: its connection (qemu-storage-daemon, FUSE file) goes last
    await nbd.disconnect(StoreConfig.under(state).run_dir, volume_id)
    with contextlib.suppress(OSError):
        await asyncio.to_thread(mnt.rmdir)


def drop_copies(mnt: Path, device: str) -> list[int]:
    """Unmount the copies of our host mount `mnt` that other mount namespaces still hold (lazily), when
    its filesystem is still alive after our unmount: a namespace made while the volume was mounted
    (`ip netns exec` for a dnsmasq, another cloud's tools: the host's mounts are private here, so an
    unmount does not propagate) keeps the filesystem mounted and the loop device held. Returns the
    pids whose namespaces were cleaned. Blocking; cheap when nothing is left (one sysfs lookup)."""
    name = Path(device).name
    if not any((Path("/sys/fs") / fs / name).exists() for fs in ("ext4", "xfs")):
        return []  # the superblock is gone: no copy anywhere
    target = str(mnt)
    ours = os.stat("/proc/self/ns/mnt").st_ino
    seen = {ours}
    cleaned: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ns = os.stat(f"/proc/{entry}/ns/mnt").st_ino
            if ns in seen:
                continue
            seen.add(ns)
            with open(f"/proc/{entry}/mountinfo") as fh:
                if not any(len(f := line.split()) > 4 and f[4] == target for line in fh):
                    continue
            _in_namespace(int(entry), lambda: _umount(mnt, _MNT_DETACH))
            cleaned.append(int(entry))
        except OSError:
            continue
    return cleaned


async def _wait_released(device: str, file: str, volume_id: str, timeout: float = 10.0) -> None:
    """Until the loop device lets go of the file. `losetup -d` of a device another opener still
    has (udev's blkid probe after the unmount's writes, for a moment) only sets autoclear: the
    kernel releases it when that opener closes it, and an attach right after would find the file
    still bound."""
    backing = Path("/sys/block") / Path(device).name / "loop" / "backing_file"

    def still_bound() -> bool:
        try:
            return backing.read_text().rstrip("\n").removesuffix(" (deleted)") == file
        except OSError:
            return False

    loop_ = asyncio.get_running_loop()
    deadline = loop_.time() + timeout
    delay = 0.005
    while await asyncio.to_thread(still_bound):
        if loop_.time() > deadline:
            raise DriverError(f"the loop device {device} of volume {volume_id} is still held after {timeout:.0f}s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)


async def release_all(state: Path, idir: Path) -> None:
    """Every recorded volume of a server whose container is gone: unmounted (lazily), released.
    Errors are ignored (destroy and the orphan sweep go on)."""
    for entry in await asyncio.to_thread(read, idir):
        with contextlib.suppress(Exception):
            await take_down(state, idir.name, str(entry["volume_id"]), lazy=True)
    with contextlib.suppress(OSError):
        await asyncio.to_thread((state / "volmounts" / idir.name).rmdir)


# -- what a process holds -------------------------------------------------------------------------


def holders(dev_no: int, mnt_ns: int | None, limit: int = 3) -> str:
    """'pid N (comm), ...' of processes (in the mount namespace of inode mnt_ns, or any) with a
    file, cwd or root on the filesystem of device number dev_no. Blocking."""
    found: list[str] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or len(found) >= limit:
            continue
        base = f"/proc/{entry}"
        try:
            if mnt_ns is not None and os.stat(f"{base}/ns/mnt").st_ino != mnt_ns:
                continue
            paths = [f"{base}/cwd", f"{base}/root"] + [f"{base}/fd/{n}" for n in os.listdir(f"{base}/fd")]
        except OSError:
            continue
        for p in paths:
            try:
                if os.stat(p).st_dev != dev_no:
                    continue
                comm = Path(f"{base}/comm").read_text().strip()
                found.append(f"pid {entry} ({comm}) holds {os.readlink(p)}")
            except OSError:
                continue
            break
    return ", ".join(found)


# -- inside the container's mount namespace ---------------------------------------------------------


def _check(rc: int, what: str) -> None:
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _in_namespace(pid: int, work: Callable[..., Any], before: Callable[[], Any] | None = None) -> Any:
    """`work()` in a throw-away thread that entered the mount namespace of `pid` (`before()` runs in
    that thread first, still in ours; its result is passed to work). Blocking."""
    out: list[Any] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            ns = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
            try:
                prep = before() if before is not None else None
                _check(_LIBC.unshare(_CLONE_FS), "unshare(CLONE_FS)")  # our own root and cwd
                _check(_LIBC.setns(ns, _CLONE_NEWNS), "setns(mnt)")
            finally:
                os.close(ns)
            out.append(work() if prep is None else work(prep))
        except BaseException as exc:  # handed to the caller
            failure.append(exc)

    worker = threading.Thread(target=run, name=f"mntns-{pid}", daemon=True)
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return out[0] if out else None


def make_dirs(root_fd: int, volume_id: str) -> int:
    """/mnt/volumes/<id> under root_fd as real 0755 dirs (never through a link); its fd."""
    fds = [root_fd]
    try:
        for name in (*MOUNT_ROOT.strip("/").split("/"), volume_id):
            fd, created = rootfs.ensure_dir_at(fds[-1], name, _DIR_MODE)
            fds.append(fd)
            if created:
                os.fchmod(fd, _DIR_MODE)
        return fds.pop()
    finally:
        for fd in fds[1:]:
            os.close(fd)


def inject(pid: int, host_mount: Path, volume_id: str) -> None:
    """The host mount cloned onto /mnt/volumes/<id> in the mount namespace of `pid`. Blocking."""
    def clone() -> int:
        fd = int(_LIBC.syscall(_SYS_OPEN_TREE, -100, os.fsencode(str(host_mount)),
                               _OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC))
        _check(fd, f"open_tree {host_mount}")
        return fd

    def place(tree: int) -> None:
        try:
            root = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                target = make_dirs(root, volume_id)
            finally:
                os.close(root)
            try:
                _check(_LIBC.syscall(_SYS_MOVE_MOUNT, tree, b"", target, b"",
                                     _MOVE_MOUNT_F_EMPTY_PATH | _MOVE_MOUNT_T_EMPTY_PATH), "move_mount")
            finally:
                os.close(target)
        finally:
            os.close(tree)

    _in_namespace(pid, place, clone)


def eject(pid: int, volume_id: str, *, lazy: bool) -> tuple[int, int]:
    """Unmount /mnt/volumes/<id> in the mount namespace of `pid`: (errno, device number of what
    was mounted there; 0 when nothing was). Blocking."""
    path = container_path(volume_id)

    def work() -> tuple[int, int]:
        try:
            dev_no = os.stat(path).st_dev
            parent = os.stat(os.path.dirname(path)).st_dev
        except OSError:
            return 0, 0
        if dev_no == parent:
            return 0, 0  # nothing mounted there
        return _umount(Path(path), _MNT_DETACH if lazy else 0), dev_no

    result: tuple[int, int] = _in_namespace(pid, work)
    return result


def mounted_in(pid: int, volume_id: str) -> bool:
    """Whether something is mounted at /mnt/volumes/<id> in the mount namespace of `pid`. Blocking."""
    path = container_path(volume_id)

    def work() -> bool:
        try:
            return os.stat(path).st_dev != os.stat(os.path.dirname(path)).st_dev
        except OSError:
            return False

    return bool(_in_namespace(pid, work))


def mnt_ns_of(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/mnt").st_ino


# -- config.json ----------------------------------------------------------------------------------


def mount_entry(state: Path, uuid: str, entry: dict[str, Any]) -> dict[str, Any]:
    disk = DiskSpec.from_dict(entry)
    opts = ["rbind", "nosuid", "nodev"] + (["ro"] if disk.read_only else [])
    return {"destination": container_path(disk.volume_id), "type": "bind",
            "source": str(mount_point(state, uuid, disk.volume_id)), "options": opts}


def sync_config(state: Path, idir: Path, entries: list[dict[str, Any]], config_name: str) -> None:
    """config.json's /mnt/volumes binds made to match `entries` (their dirs made in the root when
    it is mounted). Blocking."""
    path = idir / config_name
    config = json.loads(path.read_text())
    mounts = [m for m in config.get("mounts") or []
              if not str(m.get("destination", "")).startswith(MOUNT_ROOT + "/")]
    wanted = [mount_entry(state, idir.name, e) for e in entries]
    if mounts + wanted == config.get("mounts"):
        return
    config["mounts"] = mounts + wanted
    root = idir / "rootfs"
    if wanted and root.is_dir():
        root_fd = rootfs.open_dir(root)
        try:
            for e in entries:
                os.close(make_dirs(root_fd, str(e["volume_id"])))
        finally:
            os.close(root_fd)
    files.write_json(path, config)


async def before_start(state: Path, idir: Path, config_name: str, note: Callable[[str], None]) -> None:
    """At every start of a server with volumes: each one brought up (after a host reboot the loop
    devices and mounts are gone) and bound in config.json; one that cannot be is told in the
    console log and left out (the server still starts)."""
    if not (idir / VOLUMES).exists():
        return
    entries = await asyncio.to_thread(read, idir)
    ready = []
    for entry in entries:
        try:
            await bring_up(state, idir.name, entry)
            ready.append(entry)
        except (Conflict, DriverError, OSError) as exc:
            await asyncio.to_thread(note, f"volume {entry.get('volume_id')} not mounted: {exc}")
    await asyncio.to_thread(write, idir, entries)  # a growth done is no longer pending
    await asyncio.to_thread(sync_config, state, idir, ready, config_name)
