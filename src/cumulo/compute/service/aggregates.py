"""Host aggregates (Nova's AggregateAPI): named groups of compute hosts with metadata.

Hosts are nova-compute service host names (one service per local node, see compute.agent.manager), as
in Nova. The "availability_zone" metadata key puts an aggregate's hosts in that zone. Everything
that reads zones (os-availability-zone, os-services, the scheduler's AvailabilityZoneFilter, the
zone a server is given at scheduling) reads services.availability_zone, so a change here is written
through to that column in the same transaction; a service registering again keeps it
(servicegroup.register_service asks `zone_of_host`).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.compute.service import hostinfo
from cumulo.conf import Settings
from cumulo.db import Database, new_uuid, utcnow
from cumulo.errors import Conflict, Invalid, NotFound
from cumulo.hosts.models import aggregate_hosts, aggregate_metadata, aggregates, services
from cumulo.hosts.zones import AZ_KEY


async def _row(conn: AsyncConnection, agg_id: int) -> dict[str, Any]:
    row = (await conn.execute(sa.select(aggregates).where(aggregates.c.id == agg_id))).mappings().first()
    if row is None:
        raise NotFound(f"Aggregate {agg_id} could not be found.")
    return dict(row)


async def _complete(conn: AsyncConnection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with their hosts (in the order added) and metadata."""
    ids = [r["id"] for r in rows]
    hosts: dict[int, list[str]] = {i: [] for i in ids}
    meta: dict[int, dict[str, str]] = {i: {} for i in ids}
    if ids:
        q = sa.select(aggregate_hosts.c.aggregate_id, aggregate_hosts.c.host).where(
            aggregate_hosts.c.aggregate_id.in_(ids)).order_by(aggregate_hosts.c.id)
        for agg_id, host in await conn.execute(q):
            hosts[agg_id].append(host)
        q2 = sa.select(aggregate_metadata.c.aggregate_id, aggregate_metadata.c.key, aggregate_metadata.c.value).where(
            aggregate_metadata.c.aggregate_id.in_(ids))
        for agg_id, key, value in await conn.execute(q2):
            meta[agg_id][key] = value
    for r in rows:
        r["hosts"] = hosts[r["id"]]
        r["metadata"] = meta[r["id"]]
        r["availability_zone"] = r["metadata"].get(AZ_KEY)
    return rows


async def get(conn: AsyncConnection, agg_id: int) -> dict[str, Any]:
    return (await _complete(conn, [await _row(conn, agg_id)]))[0]


async def list_all(conn: AsyncConnection) -> list[dict[str, Any]]:
    rows = [dict(r) for r in (await conn.execute(sa.select(aggregates).order_by(aggregates.c.id))).mappings()]
    return await _complete(conn, rows)


async def _name_taken(conn: AsyncConnection, name: str, but: int | None = None) -> bool:
    q = sa.select(aggregates.c.id).where(aggregates.c.name == name)
    if but is not None:
        q = q.where(aggregates.c.id != but)
    return (await conn.execute(q)).first() is not None


async def create(conn: AsyncConnection, name: str, zone: str | None) -> dict[str, Any]:
    if await _name_taken(conn, name):
        raise Conflict(f"Aggregate {name} already exists.")
    res = await conn.execute(sa.insert(aggregates).values(uuid=new_uuid(), name=name, created_at=utcnow(), updated_at=None))
    agg_id = int(res.inserted_primary_key[0])  # type: ignore[index]
    if zone:
        await conn.execute(sa.insert(aggregate_metadata).values(aggregate_id=agg_id, key=AZ_KEY, value=zone))
    return await get(conn, agg_id)


async def _zones_of(conn: AsyncConnection, hosts: list[str], *, without: int | None = None) -> dict[str, str]:
    """{host: zone} from the AZ aggregates of these hosts, ignoring aggregate `without`."""
    q = (
        sa.select(aggregate_hosts.c.host, aggregate_metadata.c.value)
        .select_from(aggregate_metadata.join(aggregate_hosts, aggregate_hosts.c.aggregate_id == aggregate_metadata.c.aggregate_id))
        .where(aggregate_hosts.c.host.in_(hosts), aggregate_metadata.c.key == AZ_KEY)
    )
    if without is not None:
        q = q.where(aggregate_hosts.c.aggregate_id != without)
    return {h: z for h, z in await conn.execute(q)}


async def sync_zones(conn: AsyncConnection, conf: Settings, hosts: list[str]) -> None:
    """Write each host's zone (its AZ aggregate's, else the default) to its compute service rows."""
    if not hosts:
        return
    zones = await _zones_of(conn, hosts)
    for host in hosts:
        await conn.execute(
            sa.update(services)
            .where(services.c.host == host, services.c.binary.like("%-compute"))
            .values(availability_zone=zones.get(host) or conf.default_availability_zone)
        )


async def _instances_on(conn: AsyncConnection, hosts: list[str]) -> int:
    """Live instances on these compute service hosts (on the nodes each service runs)."""
    total = 0
    for host in hosts:
        svc = (await conn.execute(sa.select(services).where(
            services.c.host == host, services.c.binary.like("%-compute")))).mappings().first()
        if svc is None:
            continue
        nodes = [name for _, name in await hostinfo.service_nodes(conn, dict(svc))]
        total += await hostinfo.count_instances_on_nodes(conn, host, nodes)
    return total


async def _check_zone_change(
    conn: AsyncConnection, agg: dict[str, Any], meta: dict[str, Any], *, hosts: list[str] | None, reason: str,
    check_instances: bool,
) -> None:
    """Nova's is_safe_to_update_az: no empty zone, no host in two zones, no server changing zone."""
    if AZ_KEY not in meta:
        return
    zone = meta[AZ_KEY]
    if not zone:
        raise Invalid(f"{reason} {agg['id']}. Reason: Aggregate {agg['name']} does not support empty named availability zone.")
    targets = hosts if hosts is not None else agg["hosts"]
    conflicting = sorted({z for z in (await _zones_of(conn, targets, without=agg["id"])).values() if z != zone})
    if conflicting:
        raise Invalid(f"{reason} {agg['id']}. Reason: One or more hosts already in availability zone(s) {conflicting}.")
    if check_instances and agg["availability_zone"] != zone and await _instances_on(conn, targets):
        raise Invalid(f"{reason} {agg['id']}. Reason: One or more hosts contain instances in this zone.")


async def update(conn: AsyncConnection, conf: Settings, agg_id: int, values: dict[str, Any]) -> dict[str, Any]:
    agg = await get(conn, agg_id)
    if "name" in values:
        if await _name_taken(conn, values["name"], but=agg_id):
            raise Conflict(f"Aggregate {values['name']} already exists.")
        await conn.execute(sa.update(aggregates).where(aggregates.c.id == agg_id).values(name=values["name"]))
        agg["name"] = values["name"]
    meta = {k: v for k, v in values.items() if k != "name"}
    await _check_zone_change(conn, agg, meta, hosts=None, reason="Cannot update aggregate", check_instances=True)
    if meta:
        await _write_metadata(conn, conf, agg, meta)
    await conn.execute(sa.update(aggregates).where(aggregates.c.id == agg_id).values(updated_at=utcnow()))
    return await get(conn, agg_id)


async def set_metadata(conn: AsyncConnection, conf: Settings, agg_id: int, meta: dict[str, Any]) -> dict[str, Any]:
    agg = await get(conn, agg_id)
    await _check_zone_change(
        conn, agg, meta, hosts=None, reason="Cannot update metadata of aggregate", check_instances=True
    )
    await _write_metadata(conn, conf, agg, meta)
    await conn.execute(sa.update(aggregates).where(aggregates.c.id == agg_id).values(updated_at=utcnow()))
    return await get(conn, agg_id)


async def _write_metadata(conn: AsyncConnection, conf: Settings, agg: dict[str, Any], meta: dict[str, Any]) -> None:
    """Merge: a null value deletes its key (silently when absent), others are set."""
    for key, value in meta.items():
        await conn.execute(sa.delete(aggregate_metadata).where(
            aggregate_metadata.c.aggregate_id == agg["id"], aggregate_metadata.c.key == key))
        if value is not None:
            await conn.execute(sa.insert(aggregate_metadata).values(aggregate_id=agg["id"], key=key, value=str(value)))
    if AZ_KEY in meta:
        await sync_zones(conn, conf, agg["hosts"])


async def delete(conn: AsyncConnection, agg_id: int) -> None:
    agg = await get(conn, agg_id)
    if agg["hosts"]:
        raise Invalid(f"Cannot remove host from aggregate {agg_id}. Reason: Host aggregate is not empty.")
    await conn.execute(sa.delete(aggregate_metadata).where(aggregate_metadata.c.aggregate_id == agg_id))
    await conn.execute(sa.delete(aggregates).where(aggregates.c.id == agg_id))


async def add_host(conn: AsyncConnection, conf: Settings, agg_id: int, host: str) -> dict[str, Any]:
    await hostinfo.compute_service(conn, host)
    agg = await get(conn, agg_id)
    if host in agg["hosts"]:
        raise Conflict(f"Aggregate {agg_id} already has host {host}.")
    reason = "Cannot add host to aggregate"
    try:
        await _check_zone_change(conn, agg, agg["metadata"], hosts=[host], reason=reason, check_instances=False)
    except Invalid as exc:
        raise Conflict(str(exc)) from None
    new_zone = agg["availability_zone"]
    if new_zone:
        old_zone = (await _zones_of(conn, [host])).get(host)
        count = await _instances_on(conn, [host])
        if count and old_zone != new_zone:
            raise Conflict(
                f"{reason} {agg_id}. Reason: The host cannot be added to the aggregate as the availability zone of "
                f"the host would change from '{old_zone}' to '{new_zone}' but the host already has {count} "
                "instance(s). Changing the AZ of an existing instance is not supported by this action. Move the "
                "instances away from this host then try again. If you need to move the instances between AZs then "
                "you can use shelve_offload and unshelve to achieve this."
            )
    await conn.execute(sa.insert(aggregate_hosts).values(aggregate_id=agg_id, host=host))
    await sync_zones(conn, conf, [host])
    return await get(conn, agg_id)


async def remove_host(conn: AsyncConnection, conf: Settings, agg_id: int, host: str) -> dict[str, Any]:
    missing = f"Cannot remove host {host} in aggregate {agg_id}"
    try:
        await hostinfo.compute_service(conn, host)
        agg = await get(conn, agg_id)
    except NotFound:
        raise NotFound(missing) from None
    if host not in agg["hosts"]:
        raise NotFound(missing)
    current = agg["availability_zone"]
    if current:
        new_zone = (await _zones_of(conn, [host], without=agg_id)).get(host)
        count = await _instances_on(conn, [host])
        if count and new_zone != current:
            raise Conflict(
                f"Cannot remove host from aggregate {agg_id}. Reason: The host cannot be removed from the aggregate "
                f"as the availability zone of the host would change from '{current}' to '{new_zone}' but the host "
                f"already has {count} instance(s). Changing the AZ of an existing instance is not supported by this "
                "action. Move the instances away from this host then try again. If you need to move the instances "
                "between AZs then you can use shelve_offload and unshelve to achieve this."
            )
    await conn.execute(sa.delete(aggregate_hosts).where(aggregate_hosts.c.aggregate_id == agg_id, aggregate_hosts.c.host == host))
    await sync_zones(conn, conf, [host])
    return await get(conn, agg_id)


class AggregateService:
    """What os-aggregates asks for, one transaction per call. A unique-key race lost to a
    concurrent request (a name or a host taken between the check and the write) is a 409."""

    def __init__(self, db: Database, conf: Settings) -> None:
        self.db, self.conf = db, conf

    async def list_all(self) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            return await list_all(conn)

    async def get(self, agg_id: int) -> dict[str, Any]:
        async with self.db.read() as conn:
            return await get(conn, agg_id)

    async def create(self, name: str, zone: str | None) -> dict[str, Any]:
        try:
            async with self.db.write() as conn:
                return await create(conn, name, zone)
        except IntegrityError:
            raise Conflict(f"Aggregate {name} already exists.") from None

    async def update(self, agg_id: int, values: dict[str, Any]) -> dict[str, Any]:
        try:
            async with self.db.write() as conn:
                return await update(conn, self.conf, agg_id, values)
        except IntegrityError:
            raise Conflict(f"Aggregate {values.get('name')} already exists.") from None

    async def delete(self, agg_id: int) -> None:
        async with self.db.write() as conn:
            await delete(conn, agg_id)

    async def act(self, name: str, agg_id: int, arg: dict[str, Any]) -> dict[str, Any]:
        """One aggregate action: add_host, remove_host or set_metadata, with its body's argument."""
        try:
            async with self.db.write() as conn:
                if name == "add_host":
                    return await add_host(conn, self.conf, agg_id, arg["host"])
                if name == "remove_host":
                    return await remove_host(conn, self.conf, agg_id, arg["host"])
                return await set_metadata(conn, self.conf, agg_id, arg["metadata"])
        except IntegrityError:  # a concurrent add of the same host
            raise Conflict(f"Aggregate {agg_id} already has host {arg.get('host')}.") from None
