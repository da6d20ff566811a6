"""A VM's volumes on QEMU's command line and over QMP: each DiskSpec is two block nodes (a `file`
or `host_device` protocol node on the block store's path, and a `raw` format node over it: the
format is always given, never probed) and a virtio-blk device whose serial is the volume id's
first 20 characters (what Nova's libvirt driver sets, so `/dev/disk/by-id/virtio-<serial>` names
the volume in the guest).

Names derive from the volume id only: node `vol-<20 hex>`, its protocol node `vol-<20 hex>-file`
(QEMU's node names are at most 31 bytes), the device `vol-<20 hex>-dev`.

The record (instance.json, "disks") lists each attached volume (DiskSpec.to_dict) with the PCIe
root port it sits in on q35 (`hp<k>`, shared with the NICs: netdev.py). Every q35 server gets one
root port per boot NIC and volume plus netdev.SPARE_PORTS empty ones, so a volume is hot plugged
into a running q35 server however it was made (with neither NICs nor volumes too). A server
recorded without ports (made before every q35 server had them) gets the spare ones at its next
cold start (netdev.with_spare_ports); a volume attached to it while stopped takes one of them.
A volume recorded on the root complex (bus "": attached while stopped to such a server before)
stays there, and is unplugged only stopped. microvm has no PCI bus: virtio-blk-device (MMIO) at
boot only.
"""

from __future__ import annotations

import json
import uuid as uuidlib
from collections.abc import Iterable
from typing import Any

from cumulo.compute.drivers.base import DiskSpec
from cumulo.compute.drivers.qemu import netdev
from cumulo.compute.drivers.qemu.process import VmConfig, root_bootindex, root_port
from cumulo.errors import Conflict, DriverError

MICROVM = "microvm"


def node_name(volume_id: str) -> str:
    hexid = "".join(c for c in volume_id.lower() if c in "0123456789abcdef")[:20]
    if len(hexid) < 8:
        raise DriverError(f"bad volume id {volume_id!r}")
    return f"vol-{hexid}"


def file_node(volume_id: str) -> str:
    return node_name(volume_id) + "-file"


def device_id(volume_id: str) -> str:
    return node_name(volume_id) + "-dev"


def tls_id(volume_id: str) -> str:
    return node_name(volume_id) + "-tls"


def check(disk: DiskSpec) -> None:
    """What QEMU is given is well formed: an absolute path without a comma, a known kind (an NBD
    target: an address, a port, an alphanumeric export and a key dir)."""
    if disk.kind == "nbd":
        t = disk.target
        if (not disk.tls_dir.startswith("/") or "," in disk.tls_dir or not t.get("export", "").isalnum()
                or not t.get("target_port", "").isdigit() or not t.get("target_host") or not t.get("psk_identity")):
            raise DriverError(f"volume {disk.volume_id}: a bad NBD target")
    elif not disk.path.startswith("/") or "," in disk.path or "\x00" in disk.path:
        raise DriverError(f"volume {disk.volume_id}: bad path {disk.path!r}")
    if disk.kind not in ("file", "host_device", "nbd"):
        raise DriverError(f"volume {disk.volume_id}: bad kind {disk.kind!r}")
    try:
        canonical = str(uuidlib.UUID(disk.volume_id))
    except (ValueError, TypeError):
        canonical = ""
    if canonical != disk.volume_id:
        raise DriverError(f"volume id {disk.volume_id!r} is not in canonical UUID form")


def node_props(disk: DiskSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    """The blockdev-add arguments of the protocol node and of the raw node over it."""
    ro = {"read-only": True} if disk.read_only else {"discard": "unmap"}
    proto: dict[str, Any]
    if disk.kind == "nbd":  # another host's volume: QEMU's own NBD client, TLS with the attachment's key
        t = disk.target
        proto = {"driver": "nbd", "node-name": file_node(disk.volume_id), "export": t["export"],
                 "server": {"type": "inet", "host": t["target_host"], "port": t["target_port"]},
                 "tls-creds": tls_id(disk.volume_id), "reconnect-delay": 10, **ro}
    else:
        proto = {"driver": disk.kind, "filename": disk.path, "node-name": file_node(disk.volume_id), **ro}
    fmt = {"driver": "raw", "file": file_node(disk.volume_id), "node-name": node_name(disk.volume_id), **ro}
    return proto, fmt


def tls_object(disk: DiskSpec) -> dict[str, Any] | None:
    """The tls-creds-psk object an NBD volume's node names (object-add; -object at boot)."""
    if disk.kind != "nbd":
        return None
    return {"qom-type": "tls-creds-psk", "id": tls_id(disk.volume_id), "endpoint": "client", "dir": disk.tls_dir,
            "username": disk.target["psk_identity"]}


def _object_argv(disk: DiskSpec) -> list[str]:
    obj = tls_object(disk)
    return ["-object", json.dumps(obj)] if obj else []


def device_props(cfg: VmConfig, disk: DiskSpec, bus: str) -> dict[str, Any]:
    props: dict[str, Any] = {
        "driver": "virtio-blk-device" if cfg.machine == MICROVM else "virtio-blk-pci",
        "drive": node_name(disk.volume_id), "id": device_id(disk.volume_id), "serial": disk.guest_serial,
    }
    if bus and cfg.machine == "q35" and cfg.hotplug_ports:
        props["bus"] = bus
    return props


# -- the record -----------------------------------------------------------------------------------


def recorded(rec: dict[str, Any]) -> list[tuple[DiskSpec, str]]:
    """(disk, bus) of each volume in the record, in attach order (anything unreadable left out)."""
    out = []
    for doc in rec.get("disks") or []:
        try:
            out.append((DiskSpec.from_dict(doc), str(doc.get("bus") or "")))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def record_docs(disks: Iterable[tuple[DiskSpec, str]]) -> list[dict[str, Any]]:
    return [{**d.to_dict(), "bus": bus} for d, bus in disks]


def find(rec: dict[str, Any], volume_id: str) -> tuple[DiskSpec, str] | None:
    return next(((d, b) for d, b in recorded(rec) if d.volume_id == volume_id), None)


def taken_ports(rec: dict[str, Any]) -> set[str]:
    """The root ports the recorded NICs and volumes sit in."""
    return {b for _e, b in netdev.recorded(rec)} | {b for _d, b in recorded(rec)}


def boot_disks(cfg: VmConfig, disks: tuple[DiskSpec, ...], first_port: int) -> list[tuple[DiskSpec, str]]:
    """The volumes of a new server: root ports after the NICs' on q35; the root volume (boot from
    volume) sits on the root complex (it is never unplugged: Nova refuses to detach a root)."""
    out: list[tuple[DiskSpec, str]] = []
    k = first_port
    for d in disks:
        if d.is_root:
            out.append((d, ""))
            continue
        out.append((d, root_port(k) if cfg.hotplug_ports else ""))
        k += 1
    return out


def split_root(cfg: VmConfig, disks: list[tuple[DiskSpec, str]]) -> tuple[DiskSpec | None, list[tuple[DiskSpec, str]]]:
    """(the root volume of a server booted from one, the other recorded volumes)."""
    if not cfg.root_volume:
        return None, disks
    root = next((d for d, _b in disks if d.volume_id == cfg.root_volume), None)
    if root is None:
        raise DriverError(f"the root volume {cfg.root_volume} of this server is not in its record")
    return root, [(d, b) for d, b in disks if d.volume_id != cfg.root_volume]


def root_argv(cfg: VmConfig, disk: DiskSpec) -> list[str]:
    """The root volume's -blockdev nodes and its virtio-blk device on the root complex (or MMIO),
    with the firmware's bootindex when no kernel is given: what the image's overlay is otherwise."""
    check(disk)
    proto, fmt = node_props(disk)
    props = device_props(cfg, disk, "")
    index = root_bootindex(cfg)
    if index is not None:
        props["bootindex"] = index
    return [*_object_argv(disk), "-blockdev", json.dumps(proto), "-blockdev", json.dumps(fmt),
            "-device", ",".join([str(props["driver"])] + [f"{k}={v}" for k, v in props.items() if k != "driver"])]


def free_port(cfg: VmConfig, rec: dict[str, Any], *, live: bool) -> str:
    """The root port an attached volume goes into ("" where none is needed: pc, a stopped
    microvm; and a stopped q35 server whose ports are all taken: the root complex takes it at the
    next start, and it is unplugged only stopped). cfg of a stopped q35 server is
    netdev.with_spare_ports'."""
    if cfg.machine == MICROVM and live:
        raise Conflict("a running microvm server has no PCI bus, so no volume hot plug: stop it first, or "
                       "boot its image with hw_machine_type=q35")
    if cfg.machine != "q35":
        return ""
    used = taken_ports(rec)
    for k in range(cfg.hotplug_ports):
        if root_port(k) not in used:
            return root_port(k)
    if not live:
        return ""
    raise Conflict(f"no free PCIe slot for another volume: {netdev.ports_taken(cfg)}")


def disk_argv(cfg: VmConfig, disks: list[tuple[DiskSpec, str]]) -> list[str]:
    """-blockdev (JSON: no path is ever split on a comma) and -device per recorded volume."""
    out: list[str] = []
    for disk, bus in disks:
        check(disk)
        proto, fmt = node_props(disk)
        props = device_props(cfg, disk, bus)
        out += [*_object_argv(disk), "-blockdev", json.dumps(proto), "-blockdev", json.dumps(fmt),
                "-device", ",".join([str(props["driver"])] + [f"{k}={v}" for k, v in props.items() if k != "driver"])]
    return out

