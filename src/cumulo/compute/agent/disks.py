"""A server's volumes as the driver is told them (InstanceSpec.disks).

One DiskSpec per volume mapping, located by volume id in the host's block store (compute/volumes.py HostVolumes). Used by Node.spec (every start) and the
attach workflow; kept apart from compute/volumes.py because the compute API must not import drivers."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from cumulo import errors
from cumulo.compute.drivers.base import DiskSpec
from cumulo.compute.volumes import HostVolumes, volume_rows


def read_only(row: Mapping[str, Any]) -> bool:
    info = row.get("connection_info") or {}
    return bool((info.get("data") or {}).get("access_mode") == "ro")


async def disk_specs(rows: Sequence[Mapping[str, Any]], store: HostVolumes) -> tuple[DiskSpec, ...]:
    """The InstanceSpec.disks of a server: one DiskSpec per volume mapping (the root's with boot_index
    0), located by volume id in the host's block store."""
    out: list[DiskSpec] = []
    for row in volume_rows(rows):
        boot = row.get("boot_index")
        info = row.get("connection_info") or {}
        if info.get("driver_volume_type") == "nbd":  # another host's volume (volume/worker/exports.py)
            out.append(await _remote_spec(row, info.get("data") or {}, store,
                                          int(boot) if boot is not None and int(boot) >= 0 else None))
            continue
        loc = await store.location(str(row["volume_id"]))
        out.append(DiskSpec(volume_id=str(row["volume_id"]), path=str(loc.path),
                            device_name=str(row.get("device_name") or "/dev/vdb"), read_only=read_only(row),
                            kind="host_device" if loc.kind == "host_device" else "file",
                            boot_index=int(boot) if boot is not None and int(boot) >= 0 else None))
    return tuple(out)


async def _remote_spec(row: Mapping[str, Any], data: Mapping[str, Any], store: HostVolumes,
                       boot: int | None) -> DiskSpec:
    """The DiskSpec of a volume on another host: its NBD export, and this host's key file for it."""
    try:
        target = {"target_host": str(ipaddress.ip_address(str(data["target_host"]))),
                  "target_port": str(int(data["target_port"])), "export": str(data["export"]),
                  "psk_identity": str(data["psk_identity"])}
    except (KeyError, ValueError) as exc:
        raise errors.CumuloError(f"volume {row['volume_id']}: a bad NBD connection_info ({exc})") from None
    if not (target["export"].isalnum() and target["psk_identity"].replace("-", "").isalnum()):
        raise errors.CumuloError(f"volume {row['volume_id']}: a bad NBD export name")
    tls_dir = await store.nbd_credentials(str(row["attachment_id"]), target["psk_identity"])
    return DiskSpec(volume_id=str(row["volume_id"]),
                    path=f"nbd://{target['target_host']}:{target['target_port']}/{target['export']}",
                    device_name=str(row.get("device_name") or "/dev/vdb"), read_only=read_only(row), kind="nbd",
                    boot_index=boot, nbd=tuple(sorted(target.items())), tls_dir=tls_dir)
