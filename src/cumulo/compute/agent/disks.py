"""A server's volumes as the driver is told them (InstanceSpec.disks).

One DiskSpec per volume mapping, located by volume id in the host's block store (compute/volumes.py HostVolumes). Used by Node.spec (every start) and the
attach workflow; kept apart from compute/volumes.py because the compute API must not import drivers."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from cumulo import errors
from cumulo.compute import volume_records
from cumulo.compute import volumes as vol
from cumulo.compute.drivers.base import DiskSpec
from cumulo.compute.volumes import HostVolumes, volume_rows
from cumulo.db import Database

LOG = logging.getLogger(__name__)


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


async def connect_here(rows: list[dict[str, Any]], inst: Mapping[str, Any], *, host: str, underlay_ip: str,
                       store: HostVolumes, client: vol.VolumeClient | None, db: Database) -> list[dict[str, Any]]:
    """The mappings of a server, each with a connection this host can open: one whose connection is
    the volume host's file, on a host without that file (the server moved here: a migration, an
    evacuation), gets this host's connection (the volume host's NBD export), as Nova updates the
    attachments with the destination's connector. Only with an underlay (one machine: the file)."""
    if not underlay_ip or client is None:
        return rows
    out: list[dict[str, Any]] = []
    for row in rows:
        info = row.get("connection_info") or {}
        if (row.get("destination_type") != vol.DEST_VOLUME or not row.get("volume_id") or not row.get("attachment_id")
                or info.get("driver_volume_type") == "nbd"):
            out.append(row)
            continue
        try:
            await store.location(str(row["volume_id"]))
            out.append(row)
            continue
        except errors.NotFound:
            pass
        connector = vol.connector_for(host, row.get("device_name"), underlay_ip)
        att = await client.attachment_reconnect(vol.owner_context(inst), str(row["attachment_id"]), connector)
        info = att.get("connection_info") or {}
        async with db.write() as conn:
            await volume_records.update(conn, str(row["uuid"]), connection_info=info)
        LOG.info("volume %s of %s: connected from this host (%s)", row["volume_id"], inst.get("uuid"),
                 info.get("driver_volume_type"))
        out.append({**row, "connection_info": info})
    return out
