"""A server's volumes as the driver is told them (InstanceSpec.disks).

One DiskSpec per volume mapping, located by volume id in the host's block store (compute/volumes.py HostVolumes). Used by Node.spec (every start) and the
attach workflow; kept apart from compute/volumes.py because the compute API must not import drivers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

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
        loc = await store.location(str(row["volume_id"]))
        boot = row.get("boot_index")
        out.append(DiskSpec(volume_id=str(row["volume_id"]), path=str(loc.path),
                            device_name=str(row.get("device_name") or "/dev/vdb"), read_only=read_only(row),
                            kind="host_device" if loc.kind == "host_device" else "file",
                            boot_index=int(boot) if boot is not None and int(boot) >= 0 else None))
    return tuple(out)
