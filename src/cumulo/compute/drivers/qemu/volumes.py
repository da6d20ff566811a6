"""Volume attach, detach and extend on a QEMU server (the Volumes capability; what a volume is on
the command line and over QMP: blockdev.py).

attach: the volume is recorded first (instance.json "disks", so a crash leaves nothing cleanup
cannot find and the next start has it), then, when QEMU runs, `blockdev-add` of the protocol node
and of the raw node over it, and `device_add virtio-blk-pci` in a free PCIe root port: the guest
sees a new /dev/vdX. A failed step takes back the ones before it (the device, the nodes, the
record). detach: `device_del`, the guest's release (the DEVICE_DELETED event: the guest's PCIe
hot unplug handshake, waited for at most UNPLUG_TIMEOUT; a guest that ignores it is a DriverError
naming it, and the volume stays attached), then `blockdev-del` of both nodes. extend: QMP
`block_resize` of the raw node, so the guest sees the new size at once (virtio-blk's config
change); a stopped server sees it at its next start.

A stopped server only has its record changed; a suspended one refuses (its saved device state
must match at resume); a running microvm one has no PCI bus, so no hot plug (a Conflict naming
hw_machine_type=q35, as for NICs). `force` cannot pull a device from a guest that holds it (QEMU
has no surprise removal): it only goes on when the device was already gone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from cumulo.compute.drivers.base import DiskSpec, PowerState
from cumulo.compute.drivers.qemu import blockdev, netdev, process, qmp
from cumulo.compute.drivers.qemu.core import QemuCore
from cumulo.compute.drivers.qemu.files import note
from cumulo.compute.drivers.qemu.process import Layout, VmConfig
from cumulo.errors import Conflict, CumuloError, DriverError, NotFound
from cumulo.host.revert import Reverter

UNPLUG_TIMEOUT = 30.0  # how long the guest may take to release a disk (PCIe hot unplug)
UNPLUG_RETRY = 3.0  # device_del is sent again after this long without the guest's release


async def _unplugged(conn: qmp.Qmp, dev: str, mark: int) -> bool:
    """Whether the guest released `dev` (its DEVICE_DELETED) within UNPLUG_TIMEOUT, asking again
    every UNPLUG_RETRY seconds: QEMU's ACPI hot-unplug event is lost when it reaches a guest whose
    ACPI is not up yet (a detach right after a start: Tempest's attach-stop-start-detach), and a
    repeated request is not (libvirt and Nova retry a detach the same way). A repeat QEMU refuses
    while an unplug runs ("already in the process of unplug") changes nothing."""
    for _ in range(max(1, int(UNPLUG_TIMEOUT / UNPLUG_RETRY))):
        if await conn.wait_device_deleted(dev, mark, UNPLUG_RETRY):
            return True
        try:
            await conn.execute("device_del", {"id": dev})
        except qmp.QmpError as exc:
            if exc.klass == "DeviceNotFound":
                return True  # gone meanwhile
    return False


class Volumes(QemuCore):
    async def attach_volume(self, uuid: str, disk: DiskSpec) -> None:
        layout = self._existing(uuid)
        blockdev.check(disk)
        async with self._op_lock(uuid):
            rec = await asyncio.to_thread(self.read_record, layout.dir)
            disks = blockdev.recorded(rec)
            known = blockdev.find(rec, disk.volume_id)
            if known is not None:  # attached already; plugged unless a crash came in between
                await self._replug(layout, *known)
                return
            power = await self._state(layout)
            if power == PowerState.SUSPENDED:
                raise Conflict(f"Instance {uuid} is suspended: resume it before attaching a volume")
            cfg = self._vm_config(layout)
            live = power in (PowerState.RUNNING, PowerState.PAUSED) and process.live_pid(layout) is not None
            if not live:  # stopped: its next start is a cold one, which may add ports (netdev.py)
                cfg = netdev.with_spare_ports(cfg)
            bus = blockdev.free_port(cfg, rec, live=live)
            async with Reverter() as revert:
                rec["vm"] = cfg.to_json()
                rec["disks"] = blockdev.record_docs([*disks, (disk, bus)])
                await self.write_record(layout.dir, rec)
                revert.add(self._forget_disk, layout, disk.volume_id)
                if live:
                    await self._plug_disk(layout, cfg, disk, bus)
                revert.commit()
        await asyncio.to_thread(note, layout, f"volume {disk.volume_id} attached as {blockdev.device_id(disk.volume_id)}"
                                              + ("" if live else "; plugged at the next start"))

    async def _replug(self, layout: Layout, disk: DiskSpec, bus: str) -> None:
        """A recorded volume whose device a running q35 server lacks (an attach cut short) plugged."""
        cfg = self._vm_config(layout)
        if cfg.machine == blockdev.MICROVM or process.live_pid(layout) is None:
            return
        if await self._state(layout) not in (PowerState.RUNNING, PowerState.PAUSED):
            return
        found = await self._qmp(layout, "qom-list", {"path": "/machine/peripheral"})
        if any(p.get("name") == blockdev.device_id(disk.volume_id) for p in found or []):
            return
        await self._plug_disk(layout, cfg, disk, bus)

    async def _plug_disk(self, layout: Layout, cfg: VmConfig, disk: DiskSpec, bus: str) -> None:
        proto, fmt = blockdev.node_props(disk)
        node, fnode = blockdev.node_name(disk.volume_id), blockdev.file_node(disk.volume_id)
        async with self._session(layout) as conn:
            for stale in (node, fnode):  # what a crashed attempt may have left in this QEMU
                with contextlib.suppress(qmp.QmpError):
                    await conn.execute("blockdev-del", {"node-name": stale})
            creds = blockdev.tls_object(disk)
            if creds is not None:
                await _quietly(conn, "object-del", {"id": creds["id"]})
            async with Reverter() as revert:
                if creds is not None:  # another host's volume: the TLS key its NBD client uses
                    await conn.execute("object-add", creds)
                    revert.add(_quietly, conn, "object-del", {"id": creds["id"]})
                await conn.execute("blockdev-add", proto)
                revert.add(_quietly, conn, "blockdev-del", {"node-name": fnode})
                await conn.execute("blockdev-add", fmt)
                revert.add(_quietly, conn, "blockdev-del", {"node-name": node})
                await conn.execute("device_add", blockdev.device_props(cfg, disk, bus))
                revert.commit()

    async def detach_volume(self, uuid: str, volume_id: str, force: bool = False) -> None:
        layout = self._existing(uuid)
        async with self._op_lock(uuid):
            rec = await asyncio.to_thread(self.read_record, layout.dir)
            if blockdev.find(rec, volume_id) is None:
                return
            if self._vm_config(layout).root_volume == volume_id:
                raise Conflict(f"volume {volume_id} is the root disk of {uuid} (booted from it): it cannot be detached")
            power = await self._state(layout)
            if power in (PowerState.SUSPENDED, PowerState.PAUSED):
                raise Conflict(f"Instance {uuid} is {power.name.lower()}: a volume is detached from a running "
                               "or stopped server")
            if process.live_pid(layout) is not None:
                if self._vm_config(layout).machine == blockdev.MICROVM:
                    raise Conflict(f"Instance {uuid} is a microvm server, which has no PCI bus, so no volume hot "
                                   "unplug: stop it first, or boot its image with hw_machine_type=q35")
                found = blockdev.find(rec, volume_id)
                await self._unplug_disk(layout, volume_id, force, remote=found is not None and found[0].kind == "nbd")
            await self._forget_disk(layout, volume_id)
        await asyncio.to_thread(note, layout, f"volume {volume_id} detached")

    async def _unplug_disk(self, layout: Layout, volume_id: str, force: bool, *, remote: bool = False) -> None:
        dev = blockdev.device_id(volume_id)
        async with self._session(layout) as conn:
            mark = len(conn.events)
            asked = True
            try:
                await conn.execute("device_del", {"id": dev})
            except qmp.QmpError as exc:
                # "already in the process of unplug": a detach a crash cut short asked already and
                # the guest has not answered yet; wait for that answer as for our own request
                asked = "in the process of unplug" in exc.desc
                if exc.klass != "DeviceNotFound" and not asked:
                    if "hotplug" in exc.desc.lower():
                        raise Conflict(f"volume {volume_id} of {layout.uuid} sits on a bus without hot unplug "
                                       "(attached while the server was stopped): stop the server to detach it") from exc
                    raise
            if asked:
                if not await _unplugged(conn, dev, mark):
                    raise DriverError(f"the guest of {layout.uuid} did not release volume {volume_id} within "
                                      f"{UNPLUG_TIMEOUT:.0f}s (it needs PCIe hot unplug; it stays attached"
                                      + (", even forced: QEMU cannot pull a disk the guest holds)" if force else ")"))
            for name in (blockdev.node_name(volume_id), blockdev.file_node(volume_id)):
                await _quietly(conn, "blockdev-del", {"node-name": name})
            if remote:  # another host's volume: the TLS key object of its NBD client
                await _quietly(conn, "object-del", {"id": blockdev.tls_id(volume_id)})

    async def extend_volume(self, uuid: str, volume_id: str, new_size_bytes: int) -> None:
        layout = self._existing(uuid)
        async with self._op_lock(uuid):
            rec = await asyncio.to_thread(self.read_record, layout.dir)
            if blockdev.find(rec, volume_id) is None:
                raise NotFound(f"volume {volume_id} is not attached to instance {uuid}")
            if process.live_pid(layout) is None:
                return  # the next start opens the grown file
            try:
                await self._qmp(layout, "block_resize",
                                {"node-name": blockdev.node_name(volume_id), "size": int(new_size_bytes)})
            except qmp.QmpError as exc:
                raise DriverError(f"cannot tell {uuid} that volume {volume_id} grew: {exc}") from exc
        await asyncio.to_thread(note, layout, f"volume {volume_id} grew to {int(new_size_bytes)} bytes")

    async def attached_volumes(self, uuid: str) -> list[str]:
        rec = await asyncio.to_thread(self.read_record, self._existing(uuid).dir)
        return [d.volume_id for d, _bus in blockdev.recorded(rec)]

    async def _forget_disk(self, layout: Layout, volume_id: str) -> None:
        rec = await asyncio.to_thread(self.read_record, layout.dir)
        rec["disks"] = blockdev.record_docs([(d, b) for d, b in blockdev.recorded(rec) if d.volume_id != volume_id])
        if not rec["disks"]:
            del rec["disks"]
        await self.write_record(layout.dir, rec)

    @contextlib.asynccontextmanager
    async def _session(self, layout: Layout) -> AsyncIterator[qmp.Qmp]:
        """A QMP session holding this server's QMP lock."""
        async with self._qmp_locks.setdefault(layout.uuid, asyncio.Lock()), qmp.session(layout.qmp) as conn:
            yield conn


async def _quietly(conn: qmp.Qmp, command: str, args: dict[str, object]) -> None:
    """An undo or cleanup command whose failure (nothing there) does not matter."""
    with contextlib.suppress(CumuloError):
        await conn.execute(command, args)
