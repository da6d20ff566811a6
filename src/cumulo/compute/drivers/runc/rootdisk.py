"""A container's root disk: an ext4 file per server on a loop device, sized to the flavor's root_gb.

The overlay's private layers (`upper`, `work`) live inside `<idir>/disk/`, the mount point of
`<idir>/disk.ext4`, a sparse ext4 image of exactly the flavor's disk. What the tenant writes
(new files and copy-ups) is bounded by that filesystem: a full disk answers ENOSPC inside the
container and `df /` there shows the flavor's size; the host's filesystem grows by at most that
much (deleting files gives the space back: the disk is mounted with `discard`, which the loop
device turns into holes in the image). The shared image root below is not counted, as with
Docker's overlay2 `size` option.

Why this and not a project quota: this kernel family ships without XFS quota and without ext4's
quota formats (CONFIG_XFS_QUOTA, CONFIG_QFMT_V2 unset), so project quotas cannot be mounted; a
filesystem per server needs nothing but the loop driver. It is cheap on the boot path because
nothing is formatted there: `mkfs.ext4` runs once per size into a template (no journal, inode
tables left lazy: holes read as zeros), and a boot copies only the template's few hundred KB of
data extents (copy_file_range over SEEK_DATA/SEEK_HOLE), attaches a loop device (LOOP_CONFIGURE
with autoclear) and mounts it (mount(2)), all by syscalls from a thread: about 1.5 ms measured.
Unmounting detaches the loop device (autoclear); removing the instance dir frees the space.

No journal: a host crash can leave a container's disk inconsistent, so mounting it again after a
reboot runs `e2fsck -p` first. A resize to another disk size is offline, as Nova's resize
power-cycles the guest: the container stops, the disk is checked (`e2fsck -f`) and resized
(`resize2fs`, growing or shrinking), and the container starts again. Online growing
(EXT4_IOC_RESIZE_FS) would need CAP_SYS_RESOURCE, which the cloud's root may not have (it does not
on the machine this was built on), and ext4 never shrinks online. A shrink (a reverted resize)
that does not fit what the tenant wrote keeps the larger disk and says so in the console log.

Servers made before this existed (or with `runc_root_disk: none`) keep `upper`/`work` directly in
the instance dir; `layers()` tells which.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import logging
import os
import shutil
import struct
import tempfile
import weakref
from pathlib import Path

from cumulo import host
from cumulo.errors import DriverError, HostError

LOG = logging.getLogger(__name__)

GIB = 1 << 30
BLOCK = 4096
DISK_FILE = "disk.ext4"
DISK_DIR = "disk"
TEMPLATES_DIR = "runc-disk-templates"
MODES = ("auto", "ext4", "none")

_LOOP_CTL_GET_FREE = 0x4C82
_LOOP_CONFIGURE = 0x4C0A
_LO_FLAGS_AUTOCLEAR = 4
MS_NOSUID, MS_NODEV = 2, 4
_MOUNT_DATA = b"discard,noinit_itable"
_LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def sys_mount(source: str, target: Path, fstype: str, flags: int, data: bytes) -> None:
    """mount(2), called directly: no `mount` process forked from the cloud (a few ms per call)."""
    rc = _LIBC.mount(source.encode(), os.fsencode(target), fstype.encode(), ctypes.c_ulong(flags), data)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype} on {target}: {os.strerror(err)}")


def layers(idir: Path) -> tuple[Path, Path]:
    """(upper, work) of a server: inside its disk when it has one, else in its dir (older servers)."""
    base = idir / DISK_DIR if (idir / DISK_FILE).exists() else idir
    return base / "upper", base / "work"


# -- blocking syscall helpers (run in threads) -----------------------------------------------------


def _copy_sparse(src: Path, dst: Path) -> None:
    """dst as a copy of src's data extents only (the holes stay holes); dst must not exist."""
    fi = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fo = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            size = os.fstat(fi).st_size
            os.ftruncate(fo, size)
            off = 0
            while off < size:
                try:
                    start = os.lseek(fi, off, os.SEEK_DATA)
                except OSError as exc:
                    if exc.errno == errno.ENXIO:
                        break  # only a hole is left
                    raise
                end = os.lseek(fi, start, os.SEEK_HOLE)
                pos = start
                while pos < end:
                    try:
                        n = os.copy_file_range(fi, fo, end - pos, pos, pos)
                    except OSError:
                        n = os.pwrite(fo, os.pread(fi, min(end - pos, 1 << 20), pos), pos)
                    if n <= 0:
                        raise OSError(errno.EIO, f"short copy of {src}")
                    pos += n
                off = end
        finally:
            os.close(fo)
    finally:
        os.close(fi)


def _loop_config(fd: int) -> bytes:
    # struct loop_config { u32 fd; u32 block_size; struct loop_info64 info (232 bytes); u64 reserved[8]; }
    info = bytearray(232)
    struct.pack_into("=I", info, 52, _LO_FLAGS_AUTOCLEAR)  # loop_info64.lo_flags
    return struct.pack("=II", fd, 0) + bytes(info) + bytes(64)


def _attach(image: Path) -> tuple[int, str]:
    """A free loop device bound to `image` (autoclear): (open fd of the device, its path)."""
    fd = os.open(image, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        for _ in range(64):  # concurrent spawns may be handed the same free device: retry
            ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
            try:
                num = fcntl.ioctl(ctl, _LOOP_CTL_GET_FREE)
            finally:
                os.close(ctl)
            dev = f"/dev/loop{num}"
            try:
                lfd = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                fcntl.ioctl(lfd, _LOOP_CONFIGURE, _loop_config(fd))
            except OSError as exc:
                os.close(lfd)
                if exc.errno == errno.EBUSY:
                    continue
                raise
            return lfd, dev
        raise OSError(errno.EBUSY, "no free loop device")
    finally:
        os.close(fd)


def _mount_image(image: Path, target: Path) -> None:
    """Attach `image` to a loop device and mount it (ext4, nosuid, nodev) at `target`."""
    lfd, dev = _attach(image)
    try:
        sys_mount(dev, target, "ext4", MS_NOSUID | MS_NODEV, _MOUNT_DATA)
    finally:
        os.close(lfd)  # the mount holds the device now; without one, autoclear detaches it


def _unmount(target: Path) -> None:
    if _LIBC.umount2(os.fsencode(target), 0) != 0:
        err = ctypes.get_errno()
        if err != errno.EINVAL:  # EINVAL: not mounted
            raise OSError(err, f"umount {target}: {os.strerror(err)}")


def _mount_source(target: Path) -> str | None:
    """The device mounted at `target` (None when nothing is); blocking."""
    want = str(target.resolve())
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fields = left.split()
            if len(fields) > 4 and fields[4] == want:
                return right.split()[1] if len(right.split()) > 1 else None
    return None


def _loops_of(image: Path) -> list[str]:
    """Loop devices bound to `image` (sysfs), mounted or not."""
    want = str(image)
    found = []
    for f in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            if f.read_text().strip() == want:
                found.append(f.parent.parent.name)
        except OSError:
            continue
    return found


def _probe(template: Path) -> None:
    """Mount a copy of the template once and unmount it: loop devices and ext4 mounts work here."""
    with tempfile.TemporaryDirectory(prefix=".probe-", dir=template.parent) as tmp:
        image, mnt = Path(tmp) / "probe.ext4", Path(tmp) / "mnt"
        _copy_sparse(template, image)
        mnt.mkdir()
        _mount_image(image, mnt)
        _unmount(mnt)


def _tail(res: host.Result) -> str:
    return (res.stderr.decode(errors="replace") + res.text).strip()[-500:] or f"exit status {res.returncode}"


# -- the driver's side ---------------------------------------------------------------------------------

_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = weakref.WeakKeyDictionary()


def _lock(key: str) -> asyncio.Lock:
    return _LOCKS.setdefault(asyncio.get_running_loop(), {}).setdefault(key, asyncio.Lock())


class RootDisks:
    """Root disks of one runc node. `mode` (conf.runc.root_disk): "auto" (ext4 where loop
    devices work, else unlimited with the reason in the driver details), "ext4" (required) or "none"."""

    def __init__(self, state_dir: Path, mode: str = "auto", default_gb: int = 1) -> None:
        if mode not in MODES:
            raise DriverError(f"runc_root_disk must be one of {', '.join(MODES)}, not {mode!r}")
        self.templates = state_dir / TEMPLATES_DIR
        self.mode = mode
        self.default_gb = max(1, int(default_gb))
        self.enabled = False
        self.reason = "not probed yet"
        self._made: set[int] = set()  # sizes whose template is known to exist

    def size_gb(self, root_gb: int) -> int:
        """A flavor without a root disk (0) still gets a bounded one, of `runc_default_root_gb`."""
        return root_gb if root_gb > 0 else self.default_gb

    async def probe(self) -> dict[str, str]:
        """Decide whether servers get a disk; the driver details that say which and why."""
        if self.mode == "none":
            self.enabled, self.reason = False, "runc_root_disk=none in the settings"
        else:
            why = ""
            if os.geteuid() != 0:
                why = "not running as root"
            elif not os.path.exists("/dev/loop-control"):
                why = "no /dev/loop-control (loop devices)"
            elif shutil.which("mkfs.ext4") is None:
                why = "mkfs.ext4 (e2fsprogs) is not installed"
            else:
                try:
                    await asyncio.to_thread(_probe, await self.template(self.default_gb))
                except (OSError, DriverError) as exc:
                    why = f"an ext4 loop mount failed: {exc}"
            if why and self.mode == "ext4":
                raise DriverError(f"runc_root_disk=ext4, but {why}")
            self.enabled = not why
            self.reason = "ext4 file per server on a loop device, sized to the flavor" if not why else why
        return {"root_disk": "ext4" if self.enabled else "unlimited", "root_disk_reason": self.reason}

    async def template(self, gb: int) -> Path:
        """The formatted, empty ext4 image of `gb` GiB (made once per size)."""
        path = self.templates / f"ext4-{int(gb)}g.img"
        if gb in self._made:
            return path
        async with _lock(str(path)):
            if await asyncio.to_thread(path.is_file):
                self._made.add(gb)
                return path
            await asyncio.to_thread(self.templates.mkdir, mode=0o700, parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            await asyncio.to_thread(tmp.unlink, missing_ok=True)
            try:
                await host.run(["mkfs.ext4", "-q", "-F", "-b", str(BLOCK), "-m", "0", "-O", "^has_journal",
                                "-E", "lazy_itable_init=1,nodiscard,root_owner=0:0", "-L", "cumulo-root",
                                str(tmp), f"{int(gb)}G"], timeout=120)
                await asyncio.to_thread(os.chmod, tmp, 0o600)
                await asyncio.to_thread(os.replace, tmp, path)
                self._made.add(gb)
            except (HostError, OSError) as exc:
                await asyncio.to_thread(tmp.unlink, missing_ok=True)
                raise DriverError(f"cannot format a root disk template of {gb} GiB: {exc}") from exc
        return path

    async def create(self, idir: Path, root_gb: int) -> tuple[Path, Path]:
        """Give a new server its disk (when enabled); return its (upper, work) dirs, made empty.
        One thread does it all: the copy, the loop device, the mount and the two dirs."""
        template = await self.template(self.size_gb(root_gb)) if self.enabled else None
        base = idir / DISK_DIR if template is not None else idir
        upper, work = base / "upper", base / "work"

        def make() -> None:
            if template is not None:
                _copy_sparse(template, idir / DISK_FILE)
                (idir / DISK_DIR).mkdir(mode=0o700)
                _mount_image(idir / DISK_FILE, idir / DISK_DIR)
            upper.mkdir(mode=0o755)
            work.mkdir(mode=0o755)

        try:
            await asyncio.to_thread(make)
        except OSError as exc:
            if template is not None and not template.exists():
                self._made.discard(self.size_gb(root_gb))  # removed behind our back: made again next time
            raise DriverError(f"cannot make the root disk of {idir.name}: {exc}") from exc
        return upper, work

    async def ensure_mounted(self, idir: Path) -> tuple[Path, Path]:
        """The server's disk mounted (again, after a host reboot: checked with e2fsck first)."""
        if await asyncio.to_thread(lambda: (idir / DISK_FILE).exists() and _mount_source(idir / DISK_DIR) is None):
            await self._wait_released(idir)
            await self._fsck(idir)
            try:
                await asyncio.to_thread(_mount_image, idir / DISK_FILE, idir / DISK_DIR)
            except OSError as exc:
                raise DriverError(f"cannot mount the root disk of {idir.name} again: {exc}") from exc
        return await asyncio.to_thread(layers, idir)

    def resize_needed(self, idir: Path, root_gb: int) -> bool:
        """Whether the server's disk is not the flavor's size (servers without a disk: never)."""
        try:
            return os.stat(idir / DISK_FILE).st_size != self.size_gb(root_gb) * GIB
        except FileNotFoundError:
            return False

    async def resize_offline(self, idir: Path, root_gb: int) -> str:
        """Make the disk the flavor's size. The overlay must be unmounted (the container stopped):
        online growing needs CAP_SYS_RESOURCE, which a cloud's root may lack, and ext4 shrinks only
        offline. A shrink that does not fit what the tenant wrote keeps the disk as it is. Returns a
        line for the console log; leaves the disk mounted."""
        image, mnt = idir / DISK_FILE, idir / DISK_DIR
        old = (await asyncio.to_thread(os.stat, image)).st_size
        new = self.size_gb(root_gb) * GIB
        try:
            await asyncio.to_thread(_unmount, mnt)
        except OSError as exc:
            raise DriverError(f"cannot resize the root disk of {idir.name}: {exc}") from exc
        try:
            await self._wait_released(idir)
            await self._fsck(idir, force=True)
            if new > old:
                await asyncio.to_thread(os.truncate, image, new)
            res = await host.run(["resize2fs", str(image), f"{new // BLOCK}"], timeout=600, check=False)
            if res.returncode != 0:
                if new > old:
                    raise DriverError(f"resize2fs of the root disk of {idir.name} failed: {_tail(res)}")
                line = f"the root disk stays at {old // GIB} GiB: what is written does not fit {new // GIB} GiB"
            else:
                if new < old:
                    await asyncio.to_thread(os.truncate, image, new)
                line = f"root disk resized from {old // GIB} GiB to {new // GIB} GiB"
        finally:
            await self.ensure_mounted(idir)
        return line

    async def _wait_released(self, idir: Path, timeout: float = 10.0) -> None:
        """Wait until no loop device holds the disk: its filesystem is really closed (unmounted
        from everywhere). A new loop device on a file another still holds would be a second,
        corrupting mount of one filesystem; checking or resizing it live would be no better."""
        image = (idir / DISK_FILE).resolve()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while busy := await asyncio.to_thread(_loops_of, image):
            if loop.time() > deadline:
                raise DriverError(f"the root disk of {idir.name} is still in use ({', '.join(busy)})")
            await asyncio.sleep(0.05)

    async def _fsck(self, idir: Path, *, force: bool = False) -> None:
        argv = ["e2fsck", "-p", *(["-f"] if force else []), str(idir / DISK_FILE)]
        res = await host.run(argv, timeout=600, check=False)
        if res.returncode >= 4:  # 1: fixed; 2: fixed, "reboot" (not ours to do)
            raise DriverError(f"the root disk of {idir.name} has errors e2fsck cannot fix: {_tail(res)}")

    async def recreate(self, idir: Path, root_gb: int) -> tuple[Path, Path]:
        """Rebuild: a fresh, empty disk of the flavor's size (the old one and its data go)."""
        if (idir / DISK_FILE).exists() or self.enabled:
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(_unmount, idir / DISK_DIR)
            # As resize_offline: autoclear lets the loop device go only when its last opener (udev's
            # probe after the unmount, for a moment) closes it; unlinked before that, the old file
            # (and its space) would stay bound beside the new disk's device. The old data goes
            # anyway: a disk something else still holds (a mount namespace that copied the mount)
            # is unlinked after the wait, and its device lets go when that holder does.
            if await asyncio.to_thread((idir / DISK_FILE).exists):
                try:
                    await self._wait_released(idir)
                except DriverError as exc:
                    LOG.warning("rebuild of %s: %s; its old disk is freed when that holder lets go", idir.name, exc)
            await asyncio.to_thread((idir / DISK_FILE).unlink, missing_ok=True)
            await asyncio.to_thread(shutil.rmtree, idir / DISK_DIR, True)
        for sub in ("upper", "work"):  # an older server's layers, in its dir
            await asyncio.to_thread(shutil.rmtree, idir / sub, True)
        return await self.create(idir, root_gb)
