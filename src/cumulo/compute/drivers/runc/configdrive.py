"""The config drive of a container, and the SSH key put into its root.

Per server, `<idir>/config-drive/` holds what Nova's config drive (label `config-2`) holds:

    openstack/latest/{meta_data.json, network_data.json, vendor_data.json, user_data, public_key}
    (what each holds: drivers/configdata.py, shared with the QEMU driver)

It is bind-mounted READ-ONLY into the container at `/mnt/config` (MOUNT_POINT), where cloud-init
users mount `config-2` on a VM, so the same scripts work. It is rewritten (never edited in place)
on spawn and rebuild, while the container is stopped.

`install_authorized_key` writes `/root/.ssh/authorized_keys` into the container's merged root.
The image is untrusted: `/root` or `/root/.ssh` may be symlinks to anywhere (the host's /etc,
`../../..`). No symlink is ever followed: each component is opened with O_NOFOLLOW relative to a
directory fd of the root, and a component that is a symlink (or not a directory) is replaced by
a real directory. Unlinking a symlink in the overlay only whites it out in the private upper
layer; nothing outside the container root is touched.

Names, metadata and user data are written as JSON or raw bytes under fixed file names: no value
ever becomes part of a path or reaches a shell.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path
from typing import Any

from cumulo.compute.drivers import configdata
from cumulo.compute.drivers.base import InstanceSpec

DRIVE_DIR = "config-drive"
MOUNT_POINT = "/mnt/config"
_FILE_MODE = 0o644  # like Nova's metadata service: any user of the guest may read it
_DIR_MODE = 0o755


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, _FILE_MODE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, _FILE_MODE)  # not narrowed by the umask


def write_drive(idir: Path, spec: InstanceSpec) -> Path:
    """(Re)write `<idir>/config-drive` for spec and return it (blocking: call in a thread).

    Built next to the old one and swapped in, so a crash leaves the old drive or the new one.
    """
    final = idir / DRIVE_DIR
    tmp = idir / f".{DRIVE_DIR}.new"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=_DIR_MODE)
    os.chmod(tmp, _DIR_MODE)
    for rel, data in sorted(configdata.files(spec).items()):
        path = tmp / rel
        for d in reversed(path.relative_to(tmp).parents[:-1]):
            if not (tmp / d).is_dir():
                (tmp / d).mkdir(mode=_DIR_MODE)
                os.chmod(tmp / d, _DIR_MODE)
        _write(path, data)
    old = idir / f".{DRIVE_DIR}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.rename(final, old)
    os.rename(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def mount_entry(drive: Path) -> dict[str, Any]:
    """The OCI mount of the drive: a read-only bind at MOUNT_POINT."""
    return {"destination": MOUNT_POINT, "type": "bind", "source": str(drive),
            "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]}


# -- /root/.ssh/authorized_keys --------------------------------------------------------------------

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _remove_dir_at(dir_fd: int, name: str) -> None:
    """Remove the directory `name` in dir_fd; rmtree's fd-based walk never follows a symlink."""
    shutil.rmtree(name, dir_fd=dir_fd)


def _open_dir(parent_fd: int, name: str, mode: int) -> tuple[int, bool]:
    """A real directory `name` in parent_fd, made if missing, replacing a symlink or a non-dir.

    Returns (fd, created).
    """
    for _ in range(3):
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent_fd), False
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            # A symlink (ELOOP under O_NOFOLLOW) or a file: unlink it, then make a real dir.
            os.unlink(name, dir_fd=parent_fd)
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, mode, dir_fd=parent_fd)
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
            return fd, True
    raise OSError(errno.EAGAIN, f"{name!r} keeps changing under us")


def install_authorized_key(root: Path, key: str) -> Path:
    """Add `key` to <root>/root/.ssh/authorized_keys (0600, dir 0700, owned by root), never following links.

    Blocking: call in a thread. `root` itself is ours (the overlay mount point); everything below
    it comes from the image. Returns the path written (inside root).
    """
    line = key.strip().replace("\n", " ").encode() + b"\n"
    root_fd = os.open(root, _DIR_FLAGS)
    fds = [root_fd]
    try:
        home_fd, created = _open_dir(root_fd, "root", 0o700)
        fds.append(home_fd)
        if created:
            os.fchown(home_fd, 0, 0)
        ssh_fd, _ = _open_dir(home_fd, ".ssh", 0o700)
        fds.append(ssh_fd)
        os.fchown(ssh_fd, 0, 0)
        os.fchmod(ssh_fd, 0o700)
        existing = b""
        try:
            fd = os.open("authorized_keys", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=ssh_fd)
        except OSError:
            fd = -1  # missing, or a symlink/special file: replaced below without being read
        if fd >= 0:
            with os.fdopen(fd, "rb") as fh:
                if os.fstat(fh.fileno()).st_mode & 0o170000 == 0o100000:
                    existing = fh.read(1 << 20)
        if existing and not existing.endswith(b"\n"):
            existing += b"\n"
        content = existing if line in existing.splitlines(keepends=True) else existing + line
        tmp = ".authorized_keys.cumulo"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=ssh_fd)
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=ssh_fd)
        with os.fdopen(out, "wb") as fh:
            fh.write(content)
            os.fchown(fh.fileno(), 0, 0)
            os.fchmod(fh.fileno(), 0o600)
        try:
            os.rename(tmp, "authorized_keys", src_dir_fd=ssh_fd, dst_dir_fd=ssh_fd)
        except OSError as exc:  # an image's authorized_keys that is a directory
            if exc.errno not in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
                raise
            _remove_dir_at(ssh_fd, "authorized_keys")
            os.rename(tmp, "authorized_keys", src_dir_fd=ssh_fd, dst_dir_fd=ssh_fd)
    finally:
        for fd in reversed(fds):
            os.close(fd)
    return root / "root" / ".ssh" / "authorized_keys"
