"""Nova's side of a server's networks on the API: which networks a create means, the ports made for
it through the network service, and Neutron's refusals turned into Nova's faults.

- `networks: "none"`: no port. `networks: "auto"` (2.37+) or no `networks` (before 2.37): the one
  network available: the project's own networks first, then the shared ones, then the shared
  external ones; two candidates in the first tier that has any is 409 (NetworkAmbiguous). With
  `auto`, when the project has neither a network of its own nor a shared internal one, Nova's
  get-me-a-network asks Neutron's auto-allocated-topology for one (a network, subnet and router made
  once per project); when that cannot be (no default external network or subnet pool) the shared
  external network is taken as before, and with none at all `auto` is 400 and a create before 2.37
  gets a server without NICs (Nova's behaviour when no network is available).
- a list: each entry a network uuid (optionally with a fixed_ip) or a port; the network service
  validates them (visibility, ports in use, addresses taken or outside the subnet).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo import errors
from cumulo.compute import netports
from cumulo.compute import states as st
from cumulo.compute.models import instances
from cumulo.context import RequestContext
from cumulo.db import Database, utcnow
from cumulo.network.models import networks

# Neutron's fault types (a network service fault's `neutron_type`) that Nova answers with a 409.
_CONFLICTS = {"PortInUse", "NetworkAmbiguous", "MacAddressInUse"}
_AUTO_MISSING = "Unable to automatically allocate a network for project {project}"


def nova_error(exc: errors.CumuloError) -> errors.CumuloError:
    """A network service refusal as Nova's create answers it: 400 for what the request names badly,
    409 for a port or address in use, 403 for a quota."""
    kind = getattr(exc, "neutron_type", "")
    message = str(exc)
    if kind == "NetworkNotFound" or kind == "PortNotFound":
        return errors.Invalid(message.replace("Port ", "Port id ", 1) if kind == "PortNotFound" else message)
    if kind == "IpAddressAlreadyAllocated":
        return errors.Invalid(message)
    if kind in _CONFLICTS:
        return errors.Conflict(message)
    if kind == "OverQuota":  # Neutron's 409; Nova's PortLimitExceeded is a 403
        return errors.Forbidden(f"Maximum number of ports exceeded: {message}")
    if isinstance(exc, (errors.NotFound, errors.Forbidden, errors.Invalid, errors.Conflict)):
        return errors.Invalid(message)
    return exc


async def choose_network(net: netports.NetworkPorts, ctx: RequestContext) -> dict[str, Any] | None:
    """The network a server gets when it names none: None when nothing is available."""
    project = ctx.project_id
    usable = [n for n in await net.list_networks(ctx) if n.get("admin_state_up", True)]
    tiers = [
        [n for n in usable if n.get("project_id") == project and not n.get("shared") and not n.get("router:external")],
        [n for n in usable if n.get("shared") and not n.get("router:external")],
        [n for n in usable if n.get("shared") and n.get("router:external")],
    ]
    for tier in tiers:
        if len(tier) > 1:
            raise errors.Conflict("Multiple possible networks found, use a Network ID to be more specific.")
        if tier:
            return tier[0]
    return None


async def _auto_allocated(net: netports.NetworkPorts, ctx: RequestContext) -> str | None:
    """The project's auto-allocated network (made on first use), or None when the cloud cannot
    make one (Neutron's AutoAllocationFailure: no default external network or subnet pool)."""
    if not ctx.project_id:
        return None
    try:
        topology = await net.get_auto_allocated_topology(ctx, ctx.project_id)
    except errors.CumuloError as exc:
        if getattr(exc, "neutron_type", "") == "AutoAllocationFailure":
            return None
        raise nova_error(exc) from exc
    return str(topology["id"])


async def requested_ports(net: netports.NetworkPorts, ctx: RequestContext, requested: Any) -> list[dict[str, Any]]:
    """The entries to allocate for each server of a create (see the module's rules)."""
    if requested == "none":
        return []
    if requested is None or requested == "auto":
        chosen = await choose_network(net, ctx)
        if requested == "auto" and (chosen is None or chosen.get("router:external")):
            allocated = await _auto_allocated(net, ctx)
            if allocated is not None:
                return [{"uuid": allocated}]
        if chosen is None:
            if requested == "auto":
                raise errors.Invalid(_AUTO_MISSING.format(project=ctx.project_id))
            return []
        return [{"uuid": chosen["id"]}]
    out: list[dict[str, Any]] = []
    for entry in requested:
        if entry.get("port"):
            out.append({"port": entry["port"]})
            continue
        try:
            await net.get_network(ctx, entry["uuid"])
        except errors.NotFound as exc:
            raise errors.Invalid(f"Network {entry['uuid']} could not be found.") from exc
        out.append({k: entry[k] for k in ("uuid", "fixed_ip") if entry.get(k) is not None})
    return out


async def allocate(
    net: netports.NetworkPorts, ctx: RequestContext, uuid: str, wanted: Sequence[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Make or take the server's ports: (the ports, the ids of those the user brought)."""
    if not wanted:
        return [], []
    try:
        ports = await net.allocate_ports_for_server(ctx, uuid, list(wanted))
    except errors.CumuloError as exc:
        raise nova_error(exc) from exc
    return ports, [str(w["port"]) for w in wanted if w.get("port")]


async def addresses(net: netports.NetworkPorts, ctx: RequestContext, ports: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Nova's `addresses` of the ports (in this order), named by their networks (a network the
    caller cannot see keeps its id as the name), with their floating IPs."""
    devices = sorted({str(p["device_id"]) for p in ports if p.get("device_id")})
    if not devices:
        return netports.addresses_for(ports, {})
    found = await net.addresses_of_devices(ctx, devices)
    ids = {p["id"] for p in ports}
    names = {nid: str(name or nid) for nid, name in found["networks"].items()}
    return netports.addresses_for(ports, names, [f for f in found["floatingips"] if f["port_id"] in ids])


async def current_addresses(
    net: netports.NetworkPorts, ctx: RequestContext, rows: Sequence[Mapping[str, Any]],
) -> dict[str, dict[str, Any]]:
    """Nova's `addresses` of each live server among `rows` that has ports, read now from the ports and
    their floating IPs (one batch for the whole page: three queries, not three per server)."""
    live = {str(r["uuid"]): netports.port_ids_of(r) for r in rows if not r.get("deleted") and netports.port_ids_of(r)}
    if not live:
        return {}
    found = await net.addresses_of_devices(ctx, list(live))
    by_device: dict[str, list[Mapping[str, Any]]] = {}
    for port in found["ports"]:
        by_device.setdefault(str(port["device_id"]), []).append(port)
    names = {nid: str(name or nid) for nid, name in found["networks"].items()}
    return {uuid: netports.addresses_for(netports.in_order(by_device.get(uuid, []), ids), names, found["floatingips"])
            for uuid, ids in live.items()}


async def refresh_addresses(
    db: Database, net: netports.NetworkPorts, ctx: RequestContext, rows: Sequence[dict[str, Any]],
) -> None:
    """Nova's info cache brought up to date from the ports (a floating IP associated through the
    network API, a fixed IP changed), for one server or a page of them: each row takes its current
    addresses, and the rows whose cache was stale are written back (the `ip` filter reads them)."""
    fresh = await current_addresses(net, ctx, rows)
    stale = []
    for row in rows:
        addresses_now = fresh.get(str(row["uuid"]))
        if addresses_now is not None and addresses_now != row.get("addresses"):
            row["addresses"] = addresses_now
            stale.append(row)
    if not stale:
        return
    async with db.write() as conn:
        for row in stale:
            await conn.execute(sa.update(instances).where(instances.c.uuid == row["uuid"],
                                                          instances.c.deleted.is_(False)).values(addresses=row["addresses"]))


def recorded(sysmeta: dict[str, Any] | None, ports: Sequence[dict[str, Any]], user_ports: Sequence[str]) -> dict[str, Any]:
    """The instance's system_metadata with its ports recorded."""
    out = dict(sysmeta or {})
    out[netports.PORTS_KEY] = [str(p["id"]) for p in ports]
    out[netports.USER_PORTS_KEY] = list(user_ports)
    return out


async def physnets_of(conn: AsyncConnection, network_ids: set[str]) -> list[str]:
    """The physical networks of the flat networks among `network_ids` (sorted)."""
    if not network_ids:
        return []
    found = await conn.execute(
        sa.select(networks.c.provider_physical_network).distinct()
        .where(networks.c.id.in_(sorted(network_ids)), networks.c.provider_physical_network.is_not(None),
               sa.or_(networks.c.provider_network_type.is_(None), networks.c.provider_network_type == "flat")))
    return sorted(str(r[0]) for r in found if r[0])


async def allocate_for_rows(
    db: Database, net: netports.NetworkPorts, ctx: RequestContext, rows: list[dict[str, Any]],
    wanted: list[dict[str, Any]],
) -> None:
    """Each new server's ports (Nova allocates them before the build), recorded on its row (and in
    `rows`); a refusal undoes the create: the rows are deleted and the ports made so far released.
    The physical networks of the ports' flat networks go into the request spec (Nova's
    network_metadata.physnets): only hosts that map them take the server (PhysicalNetworkFilter)."""
    done: list[str] = []
    physnets: list[str] | None = None
    try:
        for row in rows:
            ports, user_ports = await allocate(net, ctx, row["uuid"], wanted)
            done.append(row["uuid"])
            row["system_metadata"] = recorded(row["system_metadata"], ports, user_ports)
            row["addresses"] = await addresses(net, ctx, ports)
            async with db.write() as conn:
                values: dict[str, Any] = {"system_metadata": row["system_metadata"], "addresses": row["addresses"]}
                if physnets is None:  # the servers of one create share their networks
                    physnets = await physnets_of(conn, {str(p["network_id"]) for p in ports})
                if physnets:
                    row["request_spec"] = values["request_spec"] = {
                        **(row.get("request_spec") or {}), "network_metadata": {"physnets": physnets}}
                await conn.execute(sa.update(instances).where(instances.c.uuid == row["uuid"]).values(**values))
    except BaseException:
        now = utcnow()
        for row in rows:
            if row["uuid"] in done:
                await net.release_ports_of_device(row["uuid"], keep=netports.user_ports_of(row))
        async with db.write() as conn:
            await conn.execute(sa.update(instances).where(instances.c.uuid.in_([r["uuid"] for r in rows])).values(
                deleted=True, deleted_at=now, terminated_at=now, vm_state=st.DELETED, task_state=None,
                updated_at=now))
        raise
