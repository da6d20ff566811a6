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
a real directory (the writers of drivers/rootfs.py, the one module for files in a tenant's root).
Unlinking a symlink in the overlay only whites it out in the private upper layer; nothing outside
the container root is touched.

The drive's files are 0644 and its dirs 0755 on purpose: any user of the container may read it, as
any user of a VM may read its config drive. They are reachable on the host only through the
instance dir, which is 0700 (the state dir's modes: docs/operations.md).

Names, metadata and user data are written as JSON or raw bytes under fixed file names: no value
ever becomes part of a path or reaches a shell.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from cumulo.compute.drivers import configdata, rootfs
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


def prepare_mount_point(root: Path) -> None:
    """/mnt/config in the container's root as real 0755 dirs, made here (never through an image's
    link) rather than by runc, which would make them with the cloud's umask 077 and lock non-root
    users of the container out of /mnt. Blocking: call in a thread, once the root is mounted."""
    root_fd = rootfs.open_dir(root)
    fds = [root_fd]
    try:
        for name in MOUNT_POINT.strip("/").split("/"):
            fd, created = rootfs.ensure_dir_at(fds[-1], name, _DIR_MODE)
            fds.append(fd)
            if created:
                os.fchmod(fd, _DIR_MODE)
    finally:
        for fd in reversed(fds):
            os.close(fd)


def mount_entry(drive: Path) -> dict[str, Any]:
    """The OCI mount of the drive: a read-only bind at MOUNT_POINT."""
    return {"destination": MOUNT_POINT, "type": "bind", "source": str(drive),
            "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]}


# -- /root/.ssh/authorized_keys --------------------------------------------------------------------


def install_authorized_key(root: Path, key: str) -> Path:
    """Add `key` to <root>/root/.ssh/authorized_keys (0600, dir 0700, owned by root), never following links.

    Blocking: call in a thread. `root` itself is ours (the overlay mount point); everything below
    it comes from the image: rootfs.py's writers replace a link or a non-directory instead of
    following it, and an existing authorized_keys is read only when it is a regular file (at most
    1 MiB; a FIFO or device is replaced unread). Returns the path written (inside root).
    """
    line = key.strip().replace("\n", " ").encode() + b"\n"
    root_fd = rootfs.open_dir(root)
    fds = [root_fd]
    try:
        home_fd, created = rootfs.ensure_dir_at(root_fd, "root", 0o700)
        fds.append(home_fd)
        if created:
            os.fchown(home_fd, 0, 0)
        ssh_fd, _ = rootfs.ensure_dir_at(home_fd, ".ssh", 0o700)
        fds.append(ssh_fd)
        os.fchown(ssh_fd, 0, 0)
        os.fchmod(ssh_fd, 0o700)
        try:
            existing = rootfs.read_file_at(ssh_fd, "authorized_keys", max_bytes=1 << 20) or b""
        except rootfs.UnsafeFile:
            existing = b""  # too large: replaced by our key alone
        if existing and not existing.endswith(b"\n"):
            existing += b"\n"
        content = existing if line in existing.splitlines(keepends=True) else existing + line
        rootfs.replace_file_at(ssh_fd, "authorized_keys", content, mode=0o600, uid=0, gid=0)
    finally:
        for fd in reversed(fds):
            os.close(fd)
    return root / "root" / ".ssh" / "authorized_keys"
