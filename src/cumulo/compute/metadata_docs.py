"""An instance's documents for the metadata service (network/metadata.py), from its DB row.

The same renderers as the config drive (drivers/configdata.py over specs.instance_spec), so
http://169.254.169.254/openstack/latest/meta_data.json and the drive's file say the same. The
runtime hands `documents(db)` to the network side's MetadataService (the service packages do not
import each other).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from cumulo.compute import instances as inst_db
from cumulo.compute import specs
from cumulo.compute.drivers import configdata
from cumulo.db import Database


def _names(value: Any) -> list[str]:
    out: list[str] = []
    for item in value or []:
        name = item.get("name") if isinstance(item, dict) else item
        if name:
            out.append(str(name))
    return out


async def render(inst: dict[str, Any]) -> dict[str, Any]:
    """The documents of one live instance row (see network/metadata.py for the keys)."""
    spec = await specs.instance_spec(inst, None)
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


def documents(db: Database) -> Callable[[str], Awaitable[dict[str, Any] | None]]:
    """instance uuid -> its documents, or None when there is no such live instance."""
    async def get(uuid: str) -> dict[str, Any] | None:
        async with db.read() as conn:
            inst = await inst_db.get(conn, uuid)
        return None if inst is None else await render(inst)

    return get
