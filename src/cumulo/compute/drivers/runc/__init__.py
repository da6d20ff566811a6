"""The runc driver: each server is an OCI container run by Debian's `runc`, with no daemon.

hypervisor_type is "container" (shown by os-hypervisors; images ask for it with the
`hypervisor_type=container` property), instance_types ("container",).

Per server, `<state_dir>/runc/<uuid>/` is the OCI bundle: config.json, `rootfs` (an overlayfs of
the image root shared by every server of that image, `<state_dir>/images/rootfs/<sha>/rootfs`, under
the private `upper` and `work` dirs, which live on the server's own root disk `disk.ext4`, mounted
at `disk/` and sized to the flavor: rootdisk.py), console.log (the container's stdout and stderr) and
instance.json (written last: a dir without it is a spawn that never finished). runc keeps its
state under `<state_dir>/runc-state`. A stopped server keeps its dir and mount but has no runc
container; power_on runs the bundle again.

Also per server: `config-drive/` (bind-mounted read-only at /mnt/config, configdrive.py), the
named network namespace `cumulo-<uuid>` (netns.py) and its NICs, veths plugged before the
container runs and hot attached later (nics.py, listed in `nics.json`).
Volumes (volumes.py, volhost.py, listed in `volumes.json`): an ext4 on a loop device, mounted on
the host under `<state_dir>/volmounts/<uuid>/` and in the container at /mnt/volumes/<volume id>.

The driver is one class made of facets, one module each (Incus's driver_lxc_*.go): what they
stand on (settings, power state, start and stop, console upkeep) in core.py; pause in freeze.py;
suspend (freezer, or CRIU where `criu check` passes) in suspend.py; resize in resize.py; rebuild
in rebuild.py; snapshot in snapshot.py; exec (`runc exec`, the PaaS recipes) in exec.py; the image cache in imagecache.py; diagnostics and metrics
(one sampling function) in metrics.py; what spawn puts in the bundle in provision.py. cgroup v1
reads are in cgroup.py. Lifecycle, power and the console are here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from cumulo.compute.drivers import files, hostres
from cumulo.compute.drivers.base import (
    HostResources,
    InstanceSpec,
    InstanceStatus,
    NicSpec,
    PowerState,
)
from cumulo.compute.drivers.probe import HostFacts, missing_programs
from cumulo.compute.drivers.runc import cgroup, criu, netns, nics, overlay, provision, volhost
from cumulo.compute.drivers.runc.coldmigrate import ColdMigrate
from cumulo.compute.drivers.runc.core import CONFIG
from cumulo.compute.drivers.runc.exec import Exec
from cumulo.compute.drivers.runc.freeze import Freeze
from cumulo.compute.drivers.runc.imagecache import ImageCache
from cumulo.compute.drivers.runc.metrics import Metrics
from cumulo.compute.drivers.runc.rebuild import Rebuild
from cumulo.compute.drivers.runc.resize import Resize
from cumulo.compute.drivers.runc.snapshot import Snapshot
from cumulo.compute.drivers.runc.state import container_id, uuid_of
from cumulo.compute.drivers.runc.suspend import Suspend, suspend_details
from cumulo.compute.drivers.runc.volumes import Volumes
from cumulo.errors import CumuloError, DriverError
from cumulo.host.revert import Reverter


async def _settle(step: asyncio.Future[Any]) -> None:
    """Wait for a step under way to end, however it ends (its undo comes after)."""
    await asyncio.gather(step, return_exceptions=True)


async def _plug_nics(made: asyncio.Future[Any], idir: Path, spec: InstanceSpec) -> None:
    await asyncio.shield(made)
    await nics.plug_all(idir, spec.uuid, spec.nics)


def root_mode_from(lower: Path, upper: Path) -> None:
    """The top of the upper layer is the container's "/": give it the image root's mode (not the
    cloud's umask 077, which would lock every non-root user of the container out of /)."""
    os.chmod(upper, os.stat(lower).st_mode & 0o7777)


def _prepare_root(idir: Path, spec: InstanceSpec, config: dict[str, Any], lower: Path, upper: Path,
                  work: Path) -> None:
    """The bundle's file work, in one thread hop (each hop costs the boot ~0.2 ms): the merged root
    mounted, config.json, the config drive and the key."""
    merged = idir / "rootfs"
    merged.mkdir(files.PRIVATE_DIR)
    root_mode_from(lower, upper)
    (idir / CONFIG).write_text(json.dumps(config, indent=1))
    overlay.mount_sync(lower, upper, work, merged)
    provision.provision_sync(idir, spec)


class RuncDriver(ColdMigrate, Freeze, Suspend, Resize, Rebuild, Snapshot, ImageCache, Metrics, Volumes, Exec):
    @classmethod
    def probe(cls, host: HostFacts) -> list[str]:
        """runc needs root (namespaces, cgroups, mounts) and the `runc` binary."""
        missing = [] if host.is_root() else ["not running as root"]
        return missing + missing_programs(host, ("runc",), "runc")

    # -- Host -----------------------------------------------------------------------------------

    async def init_host(self) -> None:
        # 0700: the host's other users never reach a tenant's files, nor runc's state.
        for d in (self.dir, self.runc.root, self.images):
            await asyncio.to_thread(files.private_dir, d)
        # Suspend is CRIU only where `criu check` passes; details say which and why.
        details = await suspend_details(self.conf.runc.suspend)
        details.update(await self.disks.probe())
        details.update(await criu.live_migration_details())  # cold only; why (criu.py)
        self.info = dataclasses.replace(self.info, details={**self.info.details, **details})
        self._cgroup_parents = await asyncio.to_thread(cgroup.missing_parents)

    async def get_host_resources(self) -> HostResources:
        return hostres.local_host_resources(self.dir)

    async def list_instances(self) -> list[InstanceStatus]:
        listing = await self.runc.list_full()
        containers = {cid: str(c.get("status")) for cid, c in listing.items()}
        out = []
        uuids = await self.instance_uuids()
        for uuid in uuids:
            out.append(InstanceStatus(uuid, self._power(uuid, containers.get(container_id(uuid)))))
        # The power sync calls this every few seconds: tell exits once, keep running logs bounded.
        await self._housekeep(uuids, listing)
        # Adopt the consoles of live containers no drain reads (after an agent restart).
        for uuid in uuids:
            entry = listing.get(container_id(uuid))
            if entry is not None and entry.get("status") in ("running", "paused") and not self.consoles.running(uuid):
                await self.consoles.start(self.dir / uuid)
        return out

    async def cleanup_orphans(self, known_uuids: set[str]) -> list[str]:
        removed: list[str] = []
        for cid in await self.runc.list():
            uuid = uuid_of(cid)
            if uuid is not None and uuid not in known_uuids:
                await self.runc.delete(cid)
                await netns.delete(uuid)  # a container in our runc root: its netns is ours too
                removed.append(uuid)

        async def remove(uuid: str) -> bool:
            await self._remove_dir(self.dir / uuid)
            return True

        removed += [u for u in await self.sweep_dirs(known_uuids, remove) if u not in removed]
        for uuid in removed:  # cgroups a crash left behind (rmdir only: the kernel keeps busy ones)
            await asyncio.to_thread(cgroup.remove, container_id(uuid))
        return removed

    # -- Lifecycle ------------------------------------------------------------------------------

    async def spawn(self, spec: InstanceSpec) -> None:
        if spec.root_disk is not None:
            # A container's root is its image's layers (overlayfs); a volume is a filesystem under
            # /mnt/volumes. The compute API refuses boot from volume for containers with a 409 first.
            raise DriverError(f"a container cannot boot from a volume (volume {spec.root_disk.volume_id}): its root "
                              "filesystem is a container image's layers; attach the volume as a data volume instead")
        if spec.image is None:
            raise DriverError("The runc driver needs a container image (docker or oci)")
        cid = container_id(spec.uuid)
        idir = await self.make_instance_dir(spec.uuid)
        try:
            # Contract: a failed (or cancelled) spawn leaves nothing behind: each step registers its
            # undo, and what is under way is waited for (a thread cannot be cancelled).
            async with Reverter() as revert:
                revert.add(self._remove_dir, idir)  # the dir, the mounts under it and the netns
                if self.spawn_delay > 0:
                    await asyncio.sleep(self.spawn_delay)
                # The root disk (rootdisk.py) and the netns are made while the image root and the config
                # are read: none needs another, and each waits mostly on the kernel or a process.
                disk = asyncio.ensure_future(self.disks.create(idir, spec.flavor.root_gb))
                revert.add(_settle, disk)
                made = asyncio.ensure_future(netns.create(spec.uuid))
                revert.add(_settle, made)
                # The NICs' veths (nics.py) go into the netns as soon as it is there.
                plugged = asyncio.ensure_future(_plug_nics(made, idir, spec)) if spec.nics else None
                if plugged is not None:
                    revert.add(_settle, plugged)
                lower, image_cfg = await provision.image_root(self.images, spec.image)
                # In a thread: a named image user is read from the image's /etc/passwd.
                config = await asyncio.to_thread(provision.runtime_config, spec, image_cfg, lower, idir,
                                                 self.pids_limit)
                upper, work = await asyncio.shield(disk)  # a cancel waits for it in the undo
                await asyncio.to_thread(_prepare_root, idir, spec, config, lower, upper, work)
                await asyncio.shield(made)
                if plugged is not None:
                    await asyncio.shield(plugged)  # undone by _remove_dir (nics.json)
                    await nics.write_dns(idir)  # into the mounted root
                for vol in spec.disks:
                    volhost.check_disk(vol)
                if spec.disks:  # recorded first: _remove_dir releases whatever was brought up
                    await asyncio.to_thread(volhost.write, idir, [d.to_dict() for d in spec.disks])
                    for vol in spec.disks:  # strictly here; _start binds them in config.json
                        await volhost.bring_up(idir.parent.parent, spec.uuid, vol.to_dict())
                revert.add(self._drop_container, cid)  # a container runc made, even half
                await self._start(cid, idir, config["process"]["args"])
                await self.write_record(idir, provision.record(spec, image_cfg, time.time(), lower))
                revert.commit()
        except DriverError:
            raise
        except (CumuloError, OSError) as exc:
            raise DriverError(f"spawn of {spec.uuid} failed: {exc}") from exc

    async def _drop_container(self, cid: str) -> None:
        await self.runc.delete(cid)
        # runc delete removes the container's cgroups; make sure, and drop /cumulo parents we caused.
        await asyncio.to_thread(cgroup.remove, cid)
        await asyncio.to_thread(cgroup.remove_empty_parents, self._cgroup_parents)

    async def _remove_dir(self, idir: Path) -> None:
        await self.consoles.wait(idir.name, timeout=2.0)  # its container is gone: the drain ends
        await nics.unplug_all(idir)  # the bridge ends, in the networks' namespaces
        await netns.delete(idir.name)  # made only while its instance dir exists
        await volhost.release_all(idir.parent.parent, idir)  # the volumes' mounts and loop devices
        await overlay.unmount_all(idir)
        if idir.exists():
            await asyncio.to_thread(shutil.rmtree, idir)

    async def destroy(self, uuid: str) -> None:
        idir = self.instance_dir(uuid)
        await self._drop_container(container_id(uuid))
        await self._remove_dir(idir)
        self._nic_locks.pop(uuid, None)

    async def get_power_state(self, uuid: str) -> PowerState:
        if not self.instance_dir(uuid).is_dir():
            return PowerState.NOSTATE
        return self._power(uuid, await self.runc.status(container_id(uuid)))

    # -- Nics (nics.py): hot attach and detach, running or stopped --------------------------------

    async def attach_nic(self, uuid: str, nic: NicSpec) -> None:
        idir = self.existing_dir(uuid)
        async with self._nic_lock(uuid):
            await nics.attach(idir, uuid, nic)

    async def detach_nic(self, uuid: str, port_id: str) -> None:
        idir = self.existing_dir(uuid)
        async with self._nic_lock(uuid):
            await nics.detach(idir, port_id)

    # -- Power ----------------------------------------------------------------------------------

    async def power_off(self, uuid: str, timeout: float = 10.0) -> None:
        await self._stop(uuid, min(timeout, self.stop_grace), "power off")

    async def power_on(self, spec: InstanceSpec) -> None:
        idir = self.existing_dir(spec.uuid)
        cid = container_id(spec.uuid)
        status = await self.runc.status(cid)
        if status == "running":
            return
        if status == "paused" or self._power(spec.uuid, status) == PowerState.SUSPENDED:
            raise DriverError(f"Instance {spec.uuid} is {self._power(spec.uuid, status).name.lower()}, not shut down")
        if status is not None:  # stopped by itself, or a leftover "created"
            await self.runc.delete(cid)
        if not await overlay.is_mounted(idir / "rootfs"):
            # After a host reboot: the private upper dir is still on disk; put the overlay back.
            if spec.image is None:
                raise DriverError(f"The root of instance {spec.uuid} is not mounted and it has no image")
            try:
                lower, _cfg = await provision.image_root(self.images, spec.image)
                upper, work = await self.disks.ensure_mounted(idir)
                await overlay.mount(lower, upper, work, idir / "rootfs")
            except (CumuloError, OSError) as exc:
                raise DriverError(f"The root of instance {spec.uuid} could not be mounted again: {exc}") from exc
        await asyncio.to_thread(self.trim_console, idir)
        config = json.loads(await asyncio.to_thread((idir / CONFIG).read_text))
        await self._start(cid, idir, config["process"]["args"])

    async def reboot(self, spec: InstanceSpec, hard: bool) -> None:
        self.existing_dir(spec.uuid)
        cid = container_id(spec.uuid)
        if not hard and await self.runc.status(cid) != "running":
            raise DriverError(f"Instance {spec.uuid} is not running; a soft reboot needs a running container")
        await self._stop(spec.uuid, 0 if hard else self.stop_grace, "hard reboot" if hard else "reboot")
        await self.power_on(spec)


__all__ = ["RuncDriver"]
