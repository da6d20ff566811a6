"""NIC hot plug of a QEMU server (the Nics capability; what a NIC is on the command line: netdev.py).

attach: the NIC is recorded first (so a crash leaves nothing cleanup cannot find), then, when
QEMU runs, a tap is made in the network's namespace and handed over QMP (`getfd`, SCM_RIGHTS),
`netdev_add` (type tap, fd by name) and `device_add` (virtio-net-pci in a free PCIe root port).
detach: `device_del`, then the guest's release (the DEVICE_DELETED event, the guest's ACPI
handshake), then `netdev_del`: QEMU closes the tap, which goes away. A stopped server only has its
record changed: the next start plugs what the record says. A suspended one refuses both (its saved
state holds the device set), and a microvm one has no hot plug (no PCI bus).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

from cumulo.compute.drivers import nicrecord
from cumulo.compute.drivers.base import NicSpec, PowerState
from cumulo.compute.drivers.nicrecord import PluggedNic
from cumulo.compute.drivers.qemu import blockdev, netdev, process, qmp
from cumulo.compute.drivers.qemu.core import QemuCore
from cumulo.compute.drivers.qemu.files import note
from cumulo.compute.drivers.qemu.process import Layout, VmConfig
from cumulo.errors import CumuloError, DriverError
from cumulo.host.revert import Reverter
from cumulo.netplane import nic as plane

UNPLUG_TIMEOUT = 30.0  # how long the guest may take to release a device (ACPI eject)


class Nics(QemuCore):
    async def attach_nic(self, uuid: str, nic: NicSpec) -> None:
        layout = self._existing(uuid)
        try:
            plane.check(nic)
        except CumuloError as exc:
            raise DriverError(f"cannot attach NIC to {uuid}: {exc}") from exc
        async with self._op_lock(uuid):
            rec = await asyncio.to_thread(self.read_record, layout.dir)
            nics = netdev.recorded(rec)
            if any(e.nic.port_id == nic.port_id for e, _bus in nics):
                return  # plugged already
            power = await self._state(layout)
            if power == PowerState.SUSPENDED:
                raise DriverError(f"Instance {uuid} is suspended: resume it before attaching a NIC")
            cfg = self._vm_config(layout)
            live = power in (PowerState.RUNNING, PowerState.PAUSED) and process.live_pid(layout) is not None
            if not live:  # stopped: its next start is a cold one, which may add ports (netdev.py)
                cfg = netdev.with_spare_ports(cfg)
            bus = netdev.free_port(cfg, nics, live=live, taken={b for _d, b in blockdev.recorded(rec)})
            entry = PluggedNic(nicrecord.free_slot([e for e, _bus in nics]), nic)
            async with Reverter() as revert:
                rec["vm"] = cfg.to_json()
                rec["nics"] = netdev.record_docs([*nics, (entry, bus)])
                await self.write_record(layout.dir, rec)
                revert.add(self._forget_nic, layout, nic.port_id)
                if live:
                    await self._hotplug(layout, cfg, entry, bus, revert)
                revert.commit()
        await asyncio.to_thread(note, layout, f"NIC {netdev.device_id(entry.slot)} ({nic.mac}) attached"
                                              + ("" if live else "; plugged at the next start"))

    async def _hotplug(self, layout: Layout, cfg: VmConfig, entry: PluggedNic, bus: str, revert: Reverter) -> None:
        try:
            fd = await plane.open_tap(entry.nic)
        except CumuloError as exc:
            raise DriverError(f"cannot make the tap of NIC {entry.nic.mac}: {exc}") from exc
        revert.add(plane.unplug, entry.nic.netns, entry.nic.device)
        name = netdev.netdev_id(entry.slot)
        try:
            async with self._fd_session(layout) as conn:
                with contextlib.suppress(DriverError):
                    await conn.execute("closefd", {"fdname": name})  # one a failed attempt left behind
                await conn.execute_with_fd("getfd", {"fdname": name}, fd)
                await conn.execute("netdev_add", {"type": "tap", "id": name, "fd": name})
                try:
                    await conn.execute("device_add", netdev.device_props(cfg, entry, bus))
                except BaseException:
                    with contextlib.suppress(DriverError):
                        await asyncio.shield(conn.execute("netdev_del", {"id": name}))
                    raise
        finally:
            os.close(fd)  # QEMU holds its own copy

    async def detach_nic(self, uuid: str, port_id: str) -> None:
        layout = self._existing(uuid)
        async with self._op_lock(uuid):
            rec = await asyncio.to_thread(self.read_record, layout.dir)
            found = next(((e, b) for e, b in netdev.recorded(rec) if e.nic.port_id == port_id), None)
            if found is None:
                return
            entry, _bus = found
            power = await self._state(layout)
            if power in (PowerState.SUSPENDED, PowerState.PAUSED):
                raise DriverError(f"Instance {uuid} is {power.name.lower()}: a NIC is unplugged from a running "
                                  "or stopped server")
            if process.live_pid(layout) is not None:
                if self._vm_config(layout).machine == netdev.MICROVM:
                    raise DriverError(f"Instance {uuid} is a microvm server, which has no PCI bus, so no NIC hot "
                                      "unplug: stop it first, or boot its image with hw_machine_type=q35")
                await self._unplug_device(layout, entry)
            await self._forget_nic(layout, port_id)
        with contextlib.suppress(CumuloError):
            await plane.unplug(entry.nic.netns, entry.nic.device)  # gone with QEMU's fd, in general
        await asyncio.to_thread(note, layout, f"NIC {netdev.device_id(entry.slot)} ({entry.nic.mac}) detached")

    async def _unplug_device(self, layout: Layout, entry: PluggedNic) -> None:
        dev, name = netdev.device_id(entry.slot), netdev.netdev_id(entry.slot)
        async with self._fd_session(layout) as conn:
            mark = len(conn.events)
            try:
                await conn.execute("device_del", {"id": dev})
            except qmp.QmpError as exc:
                if exc.klass != "DeviceNotFound":
                    raise
            else:
                if not await conn.wait_device_deleted(dev, mark, UNPLUG_TIMEOUT):
                    raise DriverError(f"the guest of {layout.uuid} did not release NIC {dev} within "
                                      f"{UNPLUG_TIMEOUT:.0f}s (it needs ACPI hot plug)")
            with contextlib.suppress(qmp.QmpError):
                await conn.execute("netdev_del", {"id": name})

    async def _forget_nic(self, layout: Layout, port_id: str) -> None:
        rec = await asyncio.to_thread(self.read_record, layout.dir)
        rec["nics"] = netdev.record_docs([(e, b) for e, b in netdev.recorded(rec) if e.nic.port_id != port_id])
        await self.write_record(layout.dir, rec)

    @contextlib.asynccontextmanager
    async def _fd_session(self, layout: Layout) -> AsyncIterator[qmp.FdQmp]:
        """A QMP session that can pass descriptors, holding this server's QMP lock."""
        async with self._qmp_locks.setdefault(layout.uuid, asyncio.Lock()):
            conn = await qmp.FdQmp.open(layout.qmp)
            try:
                yield conn
            finally:
                await asyncio.shield(conn.close())
