"""A container's merged root as a new Docker-format image (Nova's createImage for runc).

Layering: the snapshot is ONE flattened layer holding the whole merged root (image layers plus the
server's changes), so it boots on its own, with no reference to the image it came from. The
container is frozen (`runc pause`) while the root is read, for a consistent view, and resumed
after; a container that was already paused (or suspended) stays paused, a stopped one (its overlay
stays mounted) is read as it is.

Left out: the contents of /proc, /sys and /dev (runc mounts its own there; their empty dirs are
kept) and the config drive's mount point, /mnt/config. Sockets are skipped, devices kept (the
unpacker skips them). Owners are numeric only: host user names never leak into the image.

The image config is the original image's (Entrypoint, Cmd, Env, WorkingDir, User, ExposedPorts).
An `os_command_line` override becomes the snapshot's Cmd (with no Entrypoint) and is kept as a
property too, so the snapshot runs exactly as the server did. The layer is streamed to disk, not
held in memory; the outer tar has `write_docker_archive`'s layout (manifest.json, <id>.json,
<diff id>/layer.tar).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import shlex
import tarfile
import time
from pathlib import Path
from typing import IO, Any

from cumulo.compute.drivers.base import SnapshotResult
from cumulo.compute.drivers.local import RECORD
from cumulo.compute.drivers.runc import overlay
from cumulo.compute.drivers.runc.configdrive import MOUNT_POINT
from cumulo.compute.drivers.runc.core import CONFIG, RuncCore
from cumulo.compute.drivers.runc.state import container_id
from cumulo.errors import DriverError
from cumulo.oci import ImageConfig
from cumulo.oci.docker import FIXED_MTIME
from cumulo.oci.layout import host_arch

# Paths (relative to the root) whose contents are never captured; the first three stay as empty dirs.
EMPTIED = ("proc", "sys", "dev")
SKIPPED = (MOUNT_POINT.strip("/"),)


def image_config_doc(image: ImageConfig, properties: dict[str, Any], created: float | None = None) -> dict[str, Any]:
    """The Docker image config of a snapshot of a server booted from `image` with `properties`."""
    cfg: dict[str, Any] = {
        "Env": list(image.env),
        "Entrypoint": list(image.entrypoint) or None,
        "Cmd": list(image.cmd) or None,
        "WorkingDir": image.working_dir,
        "User": image.user,
    }
    override = properties.get("os_command_line")
    if override:
        try:
            cfg["Cmd"], cfg["Entrypoint"] = shlex.split(str(override)), None
        except ValueError:
            pass  # an unparsable override never booted: keep the image's own command
    if image.exposed_ports:
        cfg["ExposedPorts"] = {p: {} for p in image.exposed_ports}
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if created is None else created))
    return {"architecture": host_arch(), "os": "linux", "created": stamp, "config": cfg,
            "history": [{"created": stamp, "created_by": "cumulo server snapshot (createImage)"}]}


class _HashingWriter:
    """A write-only file that hashes what goes through it (tarfile's stream mode only writes)."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.fh.write(data)


def _add_entry(tf: tarfile.TarFile, path: str, arcname: str) -> bool:
    """Add one filesystem entry (not following symlinks); return whether it is a dir to descend into."""
    info = tf.gettarinfo(path, arcname)
    if info is None:  # a socket
        return False
    info.uname = info.gname = ""
    if info.isreg():
        # O_NOFOLLOW: the entry was lstat'ed as a file; never read through a link swapped in.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            tf.addfile(info, fh)
        return False
    tf.addfile(info)
    return info.isdir()


def write_layer(root: Path, out: Path) -> tuple[str, int]:
    """Tar the tree under `root` (uncompressed) into `out`; return (sha256 hex, size). Blocking."""
    with open(out, "wb") as raw:
        hasher = _HashingWriter(raw)
        with tarfile.open(fileobj=hasher, mode="w|", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
            stack = [""]
            while stack:
                rel = stack.pop()
                base = os.path.join(root, rel) if rel else str(root)
                with os.scandir(base) as it:
                    entries = sorted(it, key=lambda e: e.name)
                subdirs = []
                for entry in entries:
                    arc = f"{rel}/{entry.name}" if rel else entry.name
                    if arc in SKIPPED:
                        continue
                    try:
                        is_dir = _add_entry(tf, entry.path, arc)
                    except FileNotFoundError:
                        continue  # gone meanwhile (only a stopped server's root is unfrozen: no process)
                    if is_dir and arc not in EMPTIED:
                        subdirs.append(arc)
                stack.extend(reversed(subdirs))  # depth-first, in name order
    return hasher.sha.hexdigest(), hasher.size


def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), FIXED_MTIME, 0o644
    tf.addfile(info, io.BytesIO(data))


def write_image(root: Path, out: Path, config: dict[str, Any], repo_tag: str) -> Path:
    """Write `root` as a one-layer `docker save` tarball at `out` (blocking; temp files next to it)."""
    layer = out.with_name(f".{out.name}.layer")
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        digest, _ = write_layer(root, layer)
        doc = {**config, "rootfs": {"type": "layers", "diff_ids": [f"sha256:{digest}"]}}
        config_bytes = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        config_name = f"{hashlib.sha256(config_bytes).hexdigest()}.json"
        layer_name = f"{digest}/layer.tar"
        manifest = [{"Config": config_name, "RepoTags": [repo_tag], "Layers": [layer_name]}]
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tf:
            info = tarfile.TarInfo(layer_name)
            info.size, info.mtime, info.mode = layer.stat().st_size, FIXED_MTIME, 0o644
            with open(layer, "rb") as fh:
                tf.addfile(info, fh)
            _add_bytes(tf, config_name, config_bytes)
            _add_bytes(tf, "manifest.json", json.dumps(manifest, separators=(",", ":")).encode())
        os.replace(tmp, out)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise DriverError(f"cannot write the snapshot of {root}: {exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            layer.unlink()
    return out



def _config_from_runtime(config: dict[str, Any]) -> ImageConfig:
    """The image config of a server whose record predates image_config: its process as the command."""
    proc = config.get("process") or {}
    user = proc.get("user") or {}
    return ImageConfig(
        cmd=tuple(str(a) for a in proc.get("args") or ()),
        env=tuple(str(e) for e in proc.get("env") or () if not str(e).startswith("HOSTNAME=")),
        working_dir=str(proc.get("cwd") or "/"),
        user=f"{int(user.get('uid', 0))}:{int(user.get('gid', 0))}",
    )


class Snapshot(RuncCore):
    async def snapshot(self, uuid: str, workdir: str) -> SnapshotResult:
        idir = self.existing_dir(uuid)
        merged = idir / "rootfs"
        if not await overlay.is_mounted(merged):
            raise DriverError(f"The root of instance {uuid} is not mounted; cannot snapshot it")
        try:
            rec = json.loads(await asyncio.to_thread((idir / RECORD).read_text))
            if isinstance(rec.get("image_config"), dict):
                image_cfg = ImageConfig.from_json(rec["image_config"])
            else:
                image_cfg = _config_from_runtime(json.loads(await asyncio.to_thread((idir / CONFIG).read_text)))
        except (OSError, ValueError) as exc:
            raise DriverError(f"cannot read the record of instance {uuid}: {exc}") from exc
        props = {str(k): str(v) for k, v in (rec.get("image_properties") or {}).items()}
        doc = image_config_doc(image_cfg, props)
        out = Path(workdir) / f"{uuid}.tar"
        cid = container_id(uuid)
        frozen = False
        if await self.runc.status(cid) == "running":
            await self.runc.pause(cid)  # a consistent view; a paused or suspended one stays as it is
            frozen = True
        try:
            await asyncio.to_thread(write_image, merged, out, doc, f"cumulo-snapshot/{uuid}:latest")
        finally:
            if frozen:
                await asyncio.shield(self.runc.resume(cid))
        return SnapshotResult(path=str(out), disk_format="raw", container_format="docker",
                              properties={"hypervisor_type": "container", **props})
