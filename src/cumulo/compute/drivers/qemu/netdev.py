"""A VM's NICs on QEMU's command line: a tap made in the network's namespace
(cumulo.netplane.nic.open_tap) whose fd QEMU inherits, `-netdev tap,fd=N` and a virtio-net NIC
with the port's MAC.

The record (instance.json, "nics") lists each NIC with its slot (ids `net<slot>` for the netdev,
`nic<slot>` for the device) and, on q35, the PCIe root port it sits in (`hp<k>`): every q35
server gets one root port per boot NIC and volume plus SPARE_PORTS empty ones at every start
(shared with the volumes: blockdev.py), because a device on the root complex itself (pcie.0) can
be neither plugged nor unplugged while the guest runs; so a server booted with neither NICs nor
volumes still takes hot-plugged ones. A start puts every recorded NIC back in its own port, so the
device layout (which a resume from a saved state needs) stays the same. A server recorded before
every q35 server had ports (hotplug_ports 0) gets the spare ones at its next cold start
(`with_spare_ports`: a start that does not resume a saved state), or when a NIC or volume is
attached while it is stopped. microvm has virtio-mmio only: NICs at boot
(virtio-net-device), no hot plug. The taps are not persistent: they go with QEMU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Any

from cumulo.compute.drivers import nicrecord
from cumulo.compute.drivers.base import NicSpec
from cumulo.compute.drivers.nicrecord import PluggedNic
from cumulo.compute.drivers.qemu.process import VmConfig, root_port
from cumulo.errors import CumuloError, DriverError
from cumulo.netplane import nic as plane

SPARE_PORTS = 4  # empty PCIe root ports of every q35 server, for hot plug
MICROVM = "microvm"


def netdev_id(slot: int) -> str:
    return f"net{slot}"


def device_id(slot: int) -> str:
    return f"nic{slot}"


def hotplug_ports(machine: str, devices: int) -> int:
    """Root ports a new server gets (process.build_argv makes them): one per boot NIC or volume
    and SPARE_PORTS more, on every q35 server (none elsewhere)."""
    return devices + SPARE_PORTS if machine == "q35" else 0


def with_spare_ports(cfg: VmConfig) -> VmConfig:
    """cfg of a q35 server recorded without root ports (made before every q35 server had them)
    with SPARE_PORTS of them; else cfg. Only where no saved device state has to match: a cold
    start, or an attach while the server is stopped (its next start is one). Its NICs and volumes
    stay where they were (on the root complex)."""
    if cfg.machine != "q35" or cfg.hotplug_ports:
        return cfg
    return dataclasses.replace(cfg, hotplug_ports=SPARE_PORTS)


def device_props(cfg: VmConfig, entry: PluggedNic, bus: str) -> dict[str, Any]:
    """The virtio-net device's properties (QMP device_add arguments; -device renders them)."""
    props: dict[str, Any] = {
        "driver": "virtio-net-device" if cfg.machine == MICROVM else "virtio-net-pci",
        "netdev": netdev_id(entry.slot), "id": device_id(entry.slot), "mac": entry.nic.mac.lower(),
    }
    if bus and cfg.machine == "q35" and cfg.hotplug_ports:  # a rebuild may change the machine
        props["bus"] = bus
    if entry.nic.mtu != 1500:
        props["host_mtu"] = int(entry.nic.mtu)
    return props


def device_option(props: dict[str, Any]) -> str:
    return ",".join([str(props["driver"])] + [f"{k}={v}" for k, v in props.items() if k != "driver"])


def recorded(rec: dict[str, Any]) -> list[tuple[PluggedNic, str]]:
    """(NIC, bus) of each NIC in the record, by slot."""
    out = []
    for doc in rec.get("nics") or []:
        entries = nicrecord.load([doc])
        if entries:
            out.append((entries[0], str(doc.get("bus") or "")))
    return sorted(out, key=lambda e: e[0].slot)


def record_docs(nics: list[tuple[PluggedNic, str]]) -> list[dict[str, Any]]:
    return [{**nicrecord.to_json(e), "bus": bus} for e, bus in nics]


def boot_nics(cfg: VmConfig, nics: tuple[NicSpec, ...]) -> list[tuple[PluggedNic, str]]:
    """The NICs of a new server: slot i, in root port i on q35."""
    return [(PluggedNic(i, n), root_port(i) if cfg.hotplug_ports else "") for i, n in enumerate(nics)]


def free_port(cfg: VmConfig, nics: list[tuple[PluggedNic, str]], *, live: bool, taken: set[str] | None = None) -> str:
    """The root port an attached NIC goes into: "" where the bus takes one itself (pc, and
    microvm's boot-time virtio-mmio slots: a stopped microvm server gets the NIC at its next start)."""
    if cfg.machine == MICROVM and live:
        raise DriverError("a running microvm server has no PCI bus, so no NIC hot plug: stop it first, or "
                          "boot its image with hw_machine_type=q35")
    if cfg.machine != "q35":
        return ""
    used = {bus for _e, bus in nics} | (taken or set())  # taken: the volumes' ports (blockdev.py)
    for k in range(cfg.hotplug_ports):
        if root_port(k) not in used:
            return root_port(k)
    raise DriverError(f"no free PCIe slot for another NIC: {ports_taken(cfg)}")


def ports_taken(cfg: VmConfig) -> str:
    """Why a running q35 server has no free root port (for the refusal of a hot plug)."""
    if not cfg.hotplug_ports:
        return ("the server was made without hot-plug root ports (before every q35 server had them; "
                "it gets them at its next stop and start): stop it first")
    return f"its {cfg.hotplug_ports} root ports are all taken by NICs and volumes: detach one first"


async def open_taps(nics: list[tuple[PluggedNic, str]], *, strict: bool,
                    skipped: list[str]) -> list[tuple[PluggedNic, str, int]]:
    """A tap per NIC, its fd open (the caller closes them once QEMU has them). strict: any failure
    fails (and closes what was opened); else a NIC whose tap cannot be made is left out and named
    in `skipped`."""
    out: list[tuple[PluggedNic, str, int]] = []
    try:
        for entry, bus in nics:
            try:
                fd = await plane.open_tap(entry.nic)
            except CumuloError as exc:
                msg = f"NIC {entry.nic.mac} (port {entry.nic.port_id}): {exc}"
                if strict:
                    raise DriverError(f"cannot plug {msg}") from exc
                skipped.append(msg)
                continue
            out.append((entry, bus, fd))
    except BaseException:
        close_fds(out)
        raise
    return out


def close_fds(taps: list[tuple[PluggedNic, str, int]]) -> None:
    for _e, _b, fd in taps:
        with contextlib.suppress(OSError):
            os.close(fd)


def nic_argv(cfg: VmConfig, taps: list[tuple[PluggedNic, str, int]]) -> list[str]:
    out: list[str] = []
    for entry, bus, fd in taps:
        out += ["-netdev", f"tap,id={netdev_id(entry.slot)},fd={fd}",
                "-device", device_option(device_props(cfg, entry, bus))]
    return out


async def unplug_all(rec: dict[str, Any]) -> None:
    """The taps of every recorded NIC gone (they go with QEMU anyway); errors ignored."""
    for entry, _bus in recorded(rec):
        with contextlib.suppress(CumuloError, OSError):
            await plane.unplug(entry.nic.netns, entry.nic.device)
