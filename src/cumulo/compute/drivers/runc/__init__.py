"""The runc driver: each server is an OCI container run by Debian's `runc`, with no daemon.

hypervisor_type is "container" (shown by os-hypervisors; images ask for it with the
`hypervisor_type=container` property), instance_types ("container",).

Per server, `<state_dir>/runc/<uuid>/` is the OCI bundle: config.json, `rootfs` (an overlayfs of
the image root shared by every server of that image, `<state_dir>/images/rootfs/<sha>/rootfs`, under
the private `upper` and `work` dirs), console.log (the container's stdout and stderr) and
instance.json (written last: a dir without it is a spawn that never finished). runc keeps its
state under `<state_dir>/runc-state`. A stopped server keeps its dir and mount but has no runc
container; power_on runs the bundle again.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import time
from pathlib import Path

from cumulo.compute.drivers import hostres
from cumulo.compute.drivers.base import (
    Capability,
    DriverInfo,
    HostResources,
    InstanceSpec,
    InstanceStatus,
    PowerState,
)
from cumulo.compute.drivers.runc import bundle, overlay
from cumulo.compute.drivers.runc.state import Runc, container_id, uuid_of
from cumulo.conf import Settings
from cumulo.errors import CumuloError, DriverError
from cumulo.image.formats.unpack import cached_rootfs

CONSOLE_MAX_BYTES = 1 << 20  # console.log is cut to this on every (re)start
_RECORD = "instance.json"
_POWER = {"running": PowerState.RUNNING, "paused": PowerState.PAUSED, "stopped": PowerState.SHUTDOWN,
          "created": PowerState.NOSTATE}


def _trim(path: Path, keep: int) -> None:
    """Keep the last `keep` bytes of a log (the bound on the console log)."""
    try:
        size = path.stat().st_size
    except OSError:
        return
    if size > keep:
        with open(path, "rb") as fh:
            fh.seek(size - keep)
            tail = fh.read()
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(tail)
        os.replace(tmp, path)


def _note(path: Path, line: str) -> None:
    """A line of our own in the console log, so it tells when and what was started."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with open(path, "a") as fh:
        fh.write(f"[cumulo {stamp}] {line}\n")


def _tail(path: Path, max_bytes: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - max_bytes))
            data = fh.read(max_bytes)
    except OSError:
        return ""
    return data.decode(errors="ignore")


class RuncDriver:
    def __init__(self, conf: Settings, host_name: str, *, local: bool = True) -> None:
        self.conf = conf
        self.host_name = host_name
        self.local = local
        state = Path(conf.state_dir).absolute()
        self.dir = state / "runc"
        self.images = state / "images"
        self.runc = Runc(state / "runc-state")
        self.stop_grace = float(conf.extra.get("runc_stop_grace", 10.0))
        self.pids_limit = int(conf.extra.get("runc_pids_limit", bundle.DEFAULT_PIDS_LIMIT))
        self.info = DriverInfo(
            name="runc",
            hypervisor_type="container",
            instance_types=("container",),
            version=1,
            capabilities=frozenset({Capability.POWER, Capability.CONSOLE}),
            details={"runtime": "runc", "rootfs": "overlayfs"},
        )

    def _idir(self, uuid: str) -> Path:
        if not uuid or "/" in uuid or uuid in (".", ".."):
            raise DriverError(f"bad instance uuid {uuid!r}")
        return self.dir / uuid

    # -- Host -----------------------------------------------------------------------------------

    async def init_host(self) -> None:
        await asyncio.to_thread(self.dir.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(self.runc.root.mkdir, parents=True, exist_ok=True)

    async def get_host_resources(self) -> HostResources:
        return hostres.local_host_resources(self.dir)

    async def _dirs(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        return sorted(p.name for p in await asyncio.to_thread(lambda: list(self.dir.iterdir())) if p.is_dir())

    async def list_instances(self) -> list[InstanceStatus]:
        containers = await self.runc.list()
        out = []
        for uuid in await self._dirs():
            out.append(InstanceStatus(uuid, self._power(uuid, containers.get(container_id(uuid)))))
        return out

    def _power(self, uuid: str, status: str | None) -> PowerState:
        if not (self.dir / uuid / _RECORD).is_file():
            return PowerState.NOSTATE  # a spawn under way, or one a crash cut short
        if status is None:
            return PowerState.SHUTDOWN
        return _POWER.get(status, PowerState.NOSTATE)

    async def cleanup_orphans(self, known_uuids: set[str]) -> list[str]:
        removed: list[str] = []
        for cid in await self.runc.list():
            uuid = uuid_of(cid)
            if uuid is not None and uuid not in known_uuids:
                await self.runc.delete(cid)
                removed.append(uuid)
        for uuid in await self._dirs():
            if uuid not in known_uuids:
                await self._remove_dir(self.dir / uuid)
                if uuid not in removed:
                    removed.append(uuid)
        return removed

    # -- Lifecycle ------------------------------------------------------------------------------

    async def spawn(self, spec: InstanceSpec) -> None:
        if spec.image is None:
            raise DriverError("The runc driver needs a container image (docker or oci)")
        idir = self._idir(spec.uuid)
        cid = container_id(spec.uuid)
        await asyncio.to_thread(self.dir.mkdir, parents=True, exist_ok=True)
        try:
            await asyncio.to_thread(idir.mkdir)
        except FileExistsError:
            raise DriverError(f"Instance {spec.uuid} already exists on runc host {self.host_name}") from None
        try:
            lower, image_cfg = await cached_rootfs(self.images, spec.image.id, Path(spec.image.path))
            config = bundle.runtime_config(
                spec, image_cfg, lower, cgroups_path=f"/cumulo/{cid}", pids_limit=self.pids_limit
            )
            merged = idir / "rootfs"
            for sub in ("upper", "work", "rootfs"):
                await asyncio.to_thread((idir / sub).mkdir)
            await asyncio.to_thread((idir / "config.json").write_text, json.dumps(config, indent=1))
            await overlay.mount(lower, idir / "upper", idir / "work", merged)
            await self._start(cid, idir, config["process"]["args"])
            record = {"uuid": spec.uuid, "hostname": spec.hostname, "image_id": spec.image.id,
                      "created_at": time.time()}
            await asyncio.to_thread((idir / _RECORD).write_text, json.dumps(record))
        except BaseException as exc:
            # Contract: a failed (or cancelled) spawn leaves nothing behind.
            await asyncio.shield(self._undo(spec.uuid))
            if isinstance(exc, DriverError) or not isinstance(exc, Exception):
                raise
            if isinstance(exc, CumuloError | OSError):
                raise DriverError(f"spawn of {spec.uuid} failed: {exc}") from exc
            raise

    async def _start(self, cid: str, idir: Path, args: list[str]) -> None:
        await asyncio.to_thread(_note, idir / "console.log", f"starting container {cid}: {shlex.join(args)}")
        await self.runc.run_detached(cid, idir, idir / "console.log")

    async def _undo(self, uuid: str) -> None:
        await self.runc.delete(container_id(uuid))
        await self._remove_dir(self.dir / uuid)

    async def _remove_dir(self, idir: Path) -> None:
        await overlay.unmount_all(idir)
        if idir.exists():
            await asyncio.to_thread(shutil.rmtree, idir)

    async def destroy(self, uuid: str) -> None:
        await self._undo(self._idir(uuid).name)

    async def get_power_state(self, uuid: str) -> PowerState:
        if not self._idir(uuid).is_dir():
            return PowerState.NOSTATE
        return self._power(uuid, await self.runc.status(container_id(uuid)))

    # -- Power ----------------------------------------------------------------------------------

    def _existing(self, uuid: str) -> Path:
        idir = self._idir(uuid)
        if not (idir / _RECORD).is_file():
            raise DriverError(f"Instance {uuid} does not exist on runc host {self.host_name}")
        return idir

    async def power_off(self, uuid: str, timeout: float = 10.0) -> None:
        self._existing(uuid)
        cid = container_id(uuid)
        await self.runc.stop(cid, min(timeout, self.stop_grace))
        await self.runc.delete(cid)

    async def power_on(self, spec: InstanceSpec) -> None:
        idir = self._existing(spec.uuid)
        cid = container_id(spec.uuid)
        status = await self.runc.status(cid)
        if status == "running":
            return
        if status == "paused":
            raise DriverError(f"Instance {spec.uuid} is paused, not shut down")
        if status is not None:  # stopped by itself, or a leftover "created"
            await self.runc.delete(cid)
        if not await overlay.is_mounted(idir / "rootfs"):
            raise DriverError(f"The root of instance {spec.uuid} is not mounted")
        await asyncio.to_thread(_trim, idir / "console.log", CONSOLE_MAX_BYTES)
        config = json.loads(await asyncio.to_thread((idir / "config.json").read_text))
        await self._start(cid, idir, config["process"]["args"])

    async def reboot(self, spec: InstanceSpec, hard: bool) -> None:
        self._existing(spec.uuid)
        cid = container_id(spec.uuid)
        if not hard and await self.runc.status(cid) != "running":
            raise DriverError(f"Instance {spec.uuid} is not running; a soft reboot needs a running container")
        await self.runc.stop(cid, 0 if hard else self.stop_grace)
        await self.runc.delete(cid)
        await self.power_on(spec)

    # -- Console --------------------------------------------------------------------------------

    async def get_console_output(self, uuid: str, max_bytes: int = 65536) -> str:
        idir = self._existing(uuid)
        if max_bytes <= 0:
            return ""
        text = await asyncio.to_thread(_tail, idir / "console.log", max_bytes)
        while len(text.encode()) > max_bytes:
            text = text[1:]
        return text


__all__ = ["RuncDriver"]
