"""A container's NICs: each NicSpec a veth pair whose container end is `eth<slot>` in the server's
namespace `cumulo-<uuid>` (netns.py), configured there directly (cumulo.netplane.nic.plug_veth).

The server's namespace outlives its container, so the NICs stay across stop and start, and a hot
attach or detach works whether the container runs or not. `nics.json` in the instance dir lists
them (nicrecord.py): written before a NIC is plugged, so removing the dir (destroy, a failed
spawn, the orphan sweep) unplugs every NIC that may exist; a start plugs again any the host lost
(after a host reboot the namespace is new and empty).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
from pathlib import Path

from cumulo.compute.drivers import files, nicrecord, rootfs
from cumulo.compute.drivers.base import NicSpec
from cumulo.compute.drivers.local import CONSOLE
from cumulo.compute.drivers.nicrecord import PluggedNic
from cumulo.compute.drivers.runc import netns
from cumulo.errors import CumuloError, DriverError
from cumulo.host.revert import Reverter
from cumulo.netplane import bridge
from cumulo.netplane import nic as plane

NICS = "nics.json"


def ifname(entry: PluggedNic) -> str:
    return f"eth{entry.slot}"


def read(idir: Path) -> list[PluggedNic]:
    """Blocking."""
    doc = files.read_json(idir / NICS) or {}
    return nicrecord.load(doc.get("nics"))


def write(idir: Path, entries: list[PluggedNic]) -> None:
    """Blocking."""
    files.write_json(idir / NICS, {"nics": [nicrecord.to_json(e) for e in entries]})


async def _plug(uuid: str, entry: PluggedNic) -> None:
    try:
        await plane.plug_veth(entry.nic, netns.name_for(uuid), ifname(entry))
    except CumuloError as exc:
        raise DriverError(f"cannot plug NIC {entry.nic.mac} (port {entry.nic.port_id}) of {uuid}: {exc}") from exc


def write_resolv_conf(root: Path, nameservers: list[str]) -> None:
    """/etc/resolv.conf in the container's (mounted) root naming the NICs' DNS servers, at most
    three (the resolver reads no more). Blocking. Never follows a link of the image: rootfs.py's
    writers replace whatever /etc or resolv.conf is."""
    try:
        servers = list(dict.fromkeys(str(ipaddress.ip_address(n)) for n in nameservers))[:3]
    except ValueError as exc:
        raise DriverError(f"bad DNS server address: {exc}") from None
    root_fd = rootfs.open_dir(root)
    try:
        etc_fd, _created = rootfs.ensure_dir_at(root_fd, "etc", 0o755)
        try:
            data = "".join(f"nameserver {s}\n" for s in servers).encode()
            rootfs.replace_file_at(etc_fd, "resolv.conf", data, mode=0o644, uid=0, gid=0)
        finally:
            os.close(etc_fd)
    finally:
        os.close(root_fd)


async def plug_all(idir: Path, uuid: str, nics: tuple[NicSpec, ...]) -> None:
    """At spawn, in the new namespace before the container runs: eth0, eth1, ... in spec order
    (write_dns follows once the root is mounted). On failure the caller removes the dir, which
    unplugs them (unplug_all)."""
    if not nics:
        return
    entries = [PluggedNic(i, n) for i, n in enumerate(nics)]
    await asyncio.to_thread(write, idir, entries)
    for entry in entries:
        await _plug(uuid, entry)


async def write_dns(idir: Path) -> None:
    """/etc/resolv.conf from the recorded NICs' DNS servers, when they name any (at spawn, hot
    attach and rebuild, whose fresh root has the image's own)."""
    dns = [d for e in await asyncio.to_thread(read, idir) for d in e.nic.dns]
    if dns:
        await asyncio.to_thread(write_resolv_conf, idir / "rootfs", dns)


async def replug(idir: Path, uuid: str) -> None:
    """At each start: plug again any recorded NIC whose bridge end is gone. One whose network is
    gone is told in the console log and left out (the server still starts)."""
    entries = await asyncio.to_thread(read, idir)
    for entry in entries:
        if await bridge.link(entry.nic.netns, entry.nic.device) is not None:
            continue
        try:
            await _plug(uuid, entry)
        except DriverError as exc:
            await asyncio.to_thread(files.note, idir / CONSOLE, f"NIC {ifname(entry)} not plugged: {exc}")


async def unplug_all(idir: Path) -> None:
    """Every recorded NIC unplugged (before the namespace goes); errors are ignored."""
    for entry in await asyncio.to_thread(read, idir):
        with contextlib.suppress(CumuloError, OSError):
            await plane.unplug(entry.nic.netns, entry.nic.device)


async def attach(idir: Path, uuid: str, nic: NicSpec) -> None:
    """Hot attach (running or stopped): the next free eth<i>; plugging a port already plugged again
    is a no-op."""
    entries = await asyncio.to_thread(read, idir)
    known = nicrecord.find(entries, nic.port_id)
    if known is not None:
        if await bridge.link(known.nic.netns, known.nic.device) is None:
            await _plug(uuid, known)
        return
    entry = PluggedNic(nicrecord.free_slot(entries), nic)
    async with Reverter() as revert:
        await asyncio.to_thread(write, idir, [*entries, entry])
        revert.add(asyncio.to_thread, write, idir, entries)
        revert.add(plane.unplug, nic.netns, nic.device)
        await _plug(uuid, entry)
        revert.commit()
    if nic.dns:
        await write_dns(idir)
    await asyncio.to_thread(files.note, idir / CONSOLE, f"NIC {ifname(entry)} ({nic.mac}) attached")


async def detach(idir: Path, port_id: str) -> None:
    entries = await asyncio.to_thread(read, idir)
    entry = nicrecord.find(entries, port_id)
    if entry is None:
        return
    try:
        await plane.unplug(entry.nic.netns, entry.nic.device)
    except CumuloError as exc:
        raise DriverError(f"cannot unplug NIC {ifname(entry)} (port {port_id}): {exc}") from exc
    await asyncio.to_thread(write, idir, [e for e in entries if e is not entry])
    await asyncio.to_thread(files.note, idir / CONSOLE, f"NIC {ifname(entry)} ({entry.nic.mac}) detached")
