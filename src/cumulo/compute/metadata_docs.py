"""An instance's documents for the metadata service (network/metadata.py), from its DB row.

The same renderers as the config drive (drivers/configdata.py over specs.instance_spec, the NICs
through netports.network_info as the build does), so
http://169.254.169.254/openstack/latest/meta_data.json and the drive's file say the same. The
runtime hands `documents(db)` to the network side's MetadataService (the service packages do not
import each other).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from cumulo.compute import instances as inst_db
from cumulo.compute import netports, specs
from cumulo.compute.drivers import configdata
from cumulo.db import Database


def _names(value: Any) -> list[str]:
    out: list[str] = []
    for item in value or []:
        name = item.get("name") if isinstance(item, dict) else item
        if name:
            out.append(str(name))
    return out


def _in_server_order(inst: dict[str, Any], nics: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The NICs in the server's NIC order (its recorded port ids), any other after them."""
    order = {p: i for i, p in enumerate(netports.port_ids_of(inst))}
    return sorted(nics, key=lambda n: order.get(str(n.get("port_id")), len(order)))


async def render(inst: dict[str, Any], nics: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The documents of one live instance row and its NICs (NicSpec dicts), see network/metadata.py."""
    spec = await specs.instance_spec(inst, None)
    if nics:
        spec = dataclasses.replace(spec, network_info=netports.network_info(_in_server_order(inst, nics)))
    flavor = inst.get("flavor") or {}
    return {
        "uuid": spec.uuid,
        "meta_data": configdata.meta_data(spec),
        "network_data": configdata.network_data(spec),
        "vendor_data": {},
        "user_data": spec.user_data,
        "ec2_id": f"i-{int(inst.get('id') or 0):08x}",
        "hostname": spec.hostname,
        "availability_zone": inst.get("availability_zone") or "nova",
        "instance_type": str(flavor.get("name") or "") if isinstance(flavor, dict) else "",
        "image_id": str(inst.get("image_ref") or ""),
        "reservation_id": str(inst.get("reservation_id") or ""),
        "launch_index": int(inst.get("launch_index") or 0),
        "security_groups": _names(inst.get("security_groups")),
    }


def documents(db: Database) -> Callable[[str, list[dict[str, Any]]], Awaitable[dict[str, Any] | None]]:
    """(instance uuid, its NICs) -> its documents, or None when there is no such live instance."""
    async def get(uuid: str, nics: list[dict[str, Any]]) -> dict[str, Any] | None:
        async with db.read() as conn:
            inst = await inst_db.get(conn, uuid)
        return None if inst is None else await render(inst, nics)

    return get
