"""The overlayfs root of one container: the shared, read-only image root below a private upper dir."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cumulo import host
from cumulo.compute.drivers.runc import rootdisk
from cumulo.errors import DriverError


def _unescape(field: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as octal.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as fh:
        return [_unescape(line.split()[4]) for line in fh if len(line.split()) > 4]


async def mounts_under(base: Path) -> list[str]:
    """Mount points at or below `base`, deepest first (the order to unmount them)."""
    prefix = str(base.resolve()) if base.exists() else str(base)
    points = await asyncio.to_thread(_mount_points)
    found = [p for p in points if p == prefix or p.startswith(prefix.rstrip("/") + "/")]
    return sorted(set(found), key=len, reverse=True)


def _lower_of(point: str) -> str | None:
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            f, r = left.split(), right.split()
            if len(f) > 4 and _unescape(f[4]) == point and len(r) > 2 and r[0] == "overlay":
                for opt in r[2].split(","):
                    if opt.startswith("lowerdir="):
                        return _unescape(opt[len("lowerdir="):])
    return None


def lower_of_sync(merged: Path) -> str | None:
    """Blocking `lower_of`."""
    return _lower_of(str(merged.resolve()))


async def lower_of(merged: Path) -> Path | None:
    """The lower dir of the overlay mounted at `merged` (None when there is none)."""
    found = await asyncio.to_thread(_lower_of, str(merged.resolve()))
    return Path(found) if found else None


async def is_mounted(path: Path) -> bool:
    return str(path.resolve()) in await asyncio.to_thread(_mount_points)


def mount_sync(lower: Path, upper: Path, work: Path, merged: Path) -> None:
    """Blocking `mount`, for callers already in a thread."""
    # nosuid,nodev: a tenant's setuid binary or device node is inert in the host's view of the root.
    # mount(2) rather than mount(8): no process forked on the boot path.
    for p in (lower, upper, work):
        if "," in str(p) or ":" in str(p):  # overlay options cannot escape these; our paths never hold them
            raise DriverError(f"cannot mount an overlay over {p}: the path holds ',' or ':'")
    opts = f"lowerdir={lower},upperdir={upper},workdir={work}".encode()
    try:
        rootdisk.sys_mount("overlay", merged, "overlay", rootdisk.MS_NOSUID | rootdisk.MS_NODEV, opts)
    except OSError as exc:
        raise DriverError(f"overlay mount on {merged} failed: {exc.strerror or exc}") from None


async def mount(lower: Path, upper: Path, work: Path, merged: Path) -> None:
    await asyncio.to_thread(mount_sync, lower, upper, work, merged)


async def unmount_strict(point: Path, timeout: float = 10.0) -> None:
    """Unmount `point` for real, retrying while it is busy (a dying container's mount namespace
    lets go of its root a moment after its processes exit); never lazily: a lazily detached
    overlay keeps its upper filesystem alive, which a disk check or resize must not race."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await is_mounted(point):
        res = await host.run(["umount", str(point)], timeout=30, check=False)
        if res.returncode == 0:
            return
        if loop.time() > deadline:
            msg = res.stderr.decode(errors="replace").strip()
            raise DriverError(f"{point} stays busy: {msg or 'umount failed'}")
        await asyncio.sleep(0.05)


async def unmount_all(base: Path) -> list[str]:
    """Unmount everything at or below `base` (lazily if busy); return what was unmounted."""
    gone = []
    for point in await mounts_under(base):
        res = await host.run(["umount", point], timeout=30, check=False)
        if res.returncode != 0:
            await host.run(["umount", "-l", point], timeout=30)
        gone.append(point)
    return gone
