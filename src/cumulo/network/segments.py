"""Tenant network segments (issue 14): a tenant network is a VXLAN network with its own VNI.

As Neutron's ML2 with `tenant_network_types = vxlan`: a network made without provider attributes
(and not external) gets network type `vxlan` and the lowest VNI of the setting `vni_ranges`
(Neutron's [ml2_type_vxlan] vni_ranges, one range) above every one in use there
(`provider:segmentation_id`, unique among vxlan networks: the partial unique index of migration
0012_nethost; a concurrent creator that took the same VNI makes the loser pick again). An admin
may name the type and the VNI (Neutron's provider extension); a VNI another vxlan network holds is
a 409. A VXLAN network's MTU defaults to 1450 (1500 less the 50 bytes of the VXLAN, UDP, IP and
Ethernet headers, Neutron's figure) and may not exceed it. On one host (no `underlay_ip`) the VNI
is only a label: no VXLAN device is made (netplane/vxlan.py).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.network import faults
from cumulo.network.models import networks

VXLAN = "vxlan"
VNI_MIN, VNI_MAX = 1, (1 << 24) - 1
VXLAN_OVERHEAD = 50
PHYSICAL_MTU = 1500
VXLAN_MTU = PHYSICAL_MTU - VXLAN_OVERHEAD
ATTEMPTS = 5


def plan(values: dict[str, Any], item: dict[str, Any]) -> None:
    """Fill in the type and MTU of a network about to be made (values: the row; item: the request).
    A tenant network with no type named becomes vxlan; the VNI is picked at insert (`allocate`)."""
    if "provider:network_type" not in item and not values["external"]:
        values["provider_network_type"] = VXLAN
    if values["provider_network_type"] != VXLAN:
        return
    if values.get("provider_segmentation_id") is not None and not VNI_MIN <= values["provider_segmentation_id"] <= VNI_MAX:
        raise faults.HTTPBadRequest(
            msg=f"Invalid input for provider:segmentation_id. Reason: a VXLAN VNI is {VNI_MIN} to {VNI_MAX}.")
    if "mtu" not in item:
        values["mtu"] = VXLAN_MTU
    elif values["mtu"] > VXLAN_MTU:
        raise faults.HTTPBadRequest(msg=f"Requested MTU is too big, maximum is {VXLAN_MTU}.")


def vni_range(text: str) -> tuple[int, int]:
    """The setting vni_ranges ("first:last") as a pair; a ValueError names a bad one."""
    try:
        lo, hi = (int(x) for x in str(text).split(":"))
    except ValueError:
        raise ValueError(f"vni_ranges must be first:last, not {text!r}") from None
    if not VNI_MIN <= lo <= hi <= VNI_MAX:
        raise ValueError(f"vni_ranges must lie within {VNI_MIN}:{VNI_MAX}, not {text!r}")
    return lo, hi


async def allocate(conn: AsyncConnection, lo: int = VNI_MIN, hi: int = VNI_MAX) -> int:
    """The lowest VNI of lo..hi above every vxlan network's there (the first free one when the
    top is taken)."""
    in_range = sa.and_(networks.c.provider_network_type == VXLAN, networks.c.provider_segmentation_id.between(lo, hi))
    top = await conn.scalar(sa.select(sa.func.max(networks.c.provider_segmentation_id)).where(in_range))
    if top is None or int(top) < hi:
        return lo if top is None else int(top) + 1
    used = {int(v) for v in await conn.scalars(sa.select(networks.c.provider_segmentation_id).where(in_range))}
    free = next((v for v in range(lo, hi + 1) if v not in used), None)
    if free is None:
        raise faults.HTTPConflict(msg="Unable to create the network. No tenant network is available for allocation.")
    return free


async def check_flat_free(conn: AsyncConnection, physnet: str) -> None:
    """Neutron's FlatNetworkInUse (409): one flat network per physical network (a host's interface
    on it can be in one network's namespace only: netplane/physnet.py)."""
    taken = await conn.scalar(sa.select(networks.c.id).where(
        networks.c.provider_network_type == "flat", networks.c.provider_physical_network == physnet).limit(1))
    if taken is not None:
        raise faults.HTTPConflict(msg=f"Unable to create the flat network. Physical network {physnet} is in use.")


def in_use(vni: Any) -> faults.HTTPConflict:
    return faults.HTTPConflict(msg=f"Unable to create the network. The VXLAN VNI {vni} is in use.")


async def check_update(conn: AsyncConnection, row: Any, values: dict[str, Any]) -> None:
    """An update's provider attributes and MTU against the network's type: a VNI another vxlan
    network holds is a 409, an MTU above 1450 on a vxlan network a 400."""
    kind = values.get("provider_network_type", row.provider_network_type)
    if kind != VXLAN:
        return
    if values.get("mtu", 0) > VXLAN_MTU:
        raise faults.HTTPBadRequest(msg=f"Requested MTU is too big, maximum is {VXLAN_MTU}.")
    vni = values.get("provider_segmentation_id", row.provider_segmentation_id)
    if vni is None:
        return
    if not VNI_MIN <= int(vni) <= VNI_MAX:
        raise faults.HTTPBadRequest(
            msg=f"Invalid input for provider:segmentation_id. Reason: a VXLAN VNI is {VNI_MIN} to {VNI_MAX}.")
    other = await conn.scalar(sa.select(networks.c.id).where(
        networks.c.provider_network_type == VXLAN, networks.c.provider_segmentation_id == int(vni),
        networks.c.id != row.id))
    if other is not None:
        raise in_use(vni)
