"""GET /servers/{id} in one statement: the instance row with what its view adds (issue 14, PERF-API).

A client polling a boot asks for this every few milliseconds. It used to be four statements, each a
round trip (and, on a busy machine, a wake-up of the API process) on PostgreSQL: the row, the
host's services (host_status, 2.16), the server's groups (2.71) and its block device mappings
(volumes_attached). Here they are one SELECT: the row LEFT JOINed with its mappings and with its
host's compute services, the group uuids an aggregate. The join multiplies rows only by
mappings x compute services of the host (usually 0-1 each); they are taken apart here.
The result equals what the four reads gave: the mappings in `volume_records`' order, host_status
from `servicegroup.is_up` exactly as `ComputeService._host_statuses`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.compute import volume_records
from cumulo.compute.models import block_device_mapping, instance_group_member, instance_groups, instances
from cumulo.compute.service import hostinfo
from cumulo.conf import Settings
from cumulo.context import RequestContext
from cumulo.db import Database, utcnow
from cumulo.hosts import servicegroup
from cumulo.hosts.models import services

_BDM = "bdm__"
_SVC = "svc__"


@dataclass
class ShowParts:
    row: dict[str, Any]
    volumes: list[dict[str, Any]] = field(default_factory=list)
    groups: list[str] | None = None  # None: not asked for
    host_status: str | None = None  # None: not asked for; "" no host; else Nova's status


@functools.cache
def _query(*, with_host_status: bool, with_groups: bool) -> sa.Select[Any]:
    """The statement (built once per shape: the poll would otherwise rebuild ~80 labelled columns
    and their cache key per request); the uuid is the bound parameter "uuid"."""
    i, b, s = instances, block_device_mapping, services
    cols: list[Any] = [*i.c, *(c.label(_BDM + c.name) for c in b.c)]
    joined = i.outerjoin(b, b.c.instance_uuid == i.c.uuid)
    if with_host_status:
        cols += [s.c.id.label(_SVC + "id"), s.c.host.label(_SVC + "host"), s.c.binary.label(_SVC + "binary"),
                 s.c.disabled.label(_SVC + "disabled"), s.c.forced_down.label(_SVC + "forced_down"),
                 s.c.last_seen_up.label(_SVC + "last_seen_up"), s.c.updated_at.label(_SVC + "updated_at"),
                 s.c.created_at.label(_SVC + "created_at")]
        joined = joined.outerjoin(s, sa.and_(s.c.host == i.c.host, sa.or_(
            s.c.binary == hostinfo.COMPUTE_BINARY, s.c.binary.like("%-compute"))))
    if with_groups:
        m, g = instance_group_member, instance_groups
        cols.append(
            sa.select(sa.func.aggregate_strings(g.c.uuid, ","))
            .select_from(m.join(g, g.c.id == m.c.group_id))
            .where(m.c.instance_uuid == i.c.uuid)
            .scalar_subquery().label("groups__")
        )
    return sa.select(*cols).select_from(joined).where(i.c.uuid == sa.bindparam("uuid"), i.c.deleted.is_(False))


async def load(db: Database, conf: Settings, ctx: RequestContext, uuid: str, *, with_host_status: bool,
               with_groups: bool) -> ShowParts:
    """The server `uuid` as the caller may see it (NotFound otherwise, as ComputeService.get) with
    its mappings, and its host_status and groups when asked for."""
    async with db.read() as conn:
        rows = (await conn.execute(_query(with_host_status=with_host_status, with_groups=with_groups),
                                   {"uuid": uuid})).mappings().all()
        if not rows or (not ctx.is_admin and rows[0]["project_id"] != ctx.project_id):
            raise errors.NotFound(f"Instance {uuid} could not be found.")
        parts = ShowParts(row={c.name: rows[0][c.name] for c in instances.c})
        mappings: dict[Any, dict[str, Any]] = {}
        svcs: dict[Any, dict[str, Any]] = {}
        for r in rows:
            if r[_BDM + "id"] is not None and r[_BDM + "id"] not in mappings:
                mappings[r[_BDM + "id"]] = {c.name: r[_BDM + c.name] for c in block_device_mapping.c}
            if with_host_status and r[_SVC + "id"] is not None:
                svcs[r[_SVC + "id"]] = {k[len(_SVC):]: v for k, v in r.items() if k.startswith(_SVC)}
        if with_groups:
            raw = rows[0]["groups__"]
            parts.groups = raw.split(",") if raw else []
            if len(parts.groups) > 1:  # an aggregate has no order: read them in membership order
                from cumulo.compute import server_groups

                parts.groups = await server_groups.groups_of_server(conn, uuid)
    parts.volumes = [volume_records.from_columns(m) for m in sorted(mappings.values(), key=_bdm_order)]
    if with_host_status:
        host = parts.row.get("host")
        parts.host_status = _host_status(list(svcs.values()), conf) if host else ""
    return parts


def _bdm_order(m: dict[str, Any]) -> tuple[int, int, int]:
    """volume_records' order: boot disks first (boot_index 0, 1, ...), then the others by id."""
    not_boot = m["boot_index"] is None or m["boot_index"] < 0
    return (1 if not_boot else 0, 0 if m["boot_index"] is None else int(m["boot_index"]), int(m["id"]))


def _host_status(rows: list[dict[str, Any]], conf: Settings) -> str:
    """ComputeService._host_statuses for one host's compute services (the last one wins, as there)."""
    status = "UNKNOWN"
    now = utcnow()
    for svc in rows:
        if not servicegroup.is_up(svc, conf, now):
            status = "DOWN"
        else:
            status = "MAINTENANCE" if svc["disabled"] else "UP"
    return status
