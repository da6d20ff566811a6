"""Server create on the API side (POST /servers): the request checked against the domain (flavor, key
pair, zone, forced host, quotas), its root and block devices resolved and existing volumes reserved
(boot_volumes), the instance rows, mappings, group members and actions written in one write
transaction, ports allocated (networking) and the build cast to the conductor.

Nothing slow runs here: the create returns as soon as the DB says yes and the cast is queued.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo import errors, policy
from cumulo.compute import actions as act
from cumulo.compute import server_groups
from cumulo.compute import states as st
from cumulo.compute.models import instance_actions, instances
from cumulo.compute.service import boot_volumes, bus_undo, networking
from cumulo.compute.service.boot import CreateRequest, flavor_snapshot, reservation_id, sanitize_hostname
from cumulo.compute.service.quotas import INSTANCE_RESOURCES, headroom
from cumulo.context import RequestContext
from cumulo.db import new_uuid, utcnow
from cumulo.hosts.models import compute_nodes, services

if TYPE_CHECKING:
    from cumulo.compute.service.servers import ComputeService


async def create_servers(svc: ComputeService, ctx: RequestContext, req: CreateRequest,
                         precheck: Coroutine[Any, Any, None] | None = None) -> tuple[list[dict[str, Any]], str]:
    """POST /servers: min_count..max_count instances (as many as the quota allows), their rows written
    in one transaction, the build cast to the conductor; returns (rows, reservation_id).

    `precheck`: a check of the caller's that fails before anything here does (the API's security
    groups): awaited first on SQLite; on PostgreSQL it runs beside the reads below (a round trip
    less deep), and its error still wins over theirs."""
    if precheck is not None and svc.db.is_sqlite:
        await precheck
    # The image read first: its two statements (the row, then its properties and tags) are the
    # longest of the overlapped reads on PostgreSQL.
    image_read = _start_image_read(svc, ctx, req)
    pre = asyncio.ensure_future(precheck) if precheck is not None and not svc.db.is_sqlite else None
    try:
        return await _create(svc, ctx, req, pre, image_read)
    finally:
        if image_read is not None:
            _settle(image_read)


def _start_image_read(svc: ComputeService, ctx: RequestContext, req: CreateRequest) -> asyncio.Future[dict[str, Any]] | None:
    """On PostgreSQL the root image is read on a connection of its own while the flavor and quotas
    are read (two round trips less deep); its errors surface where the sequential read raised them
    (boot_volumes.resolve). SQLite calls run inline: nothing to overlap."""
    ref = boot_volumes.root_image_ref(req)
    if svc.db.is_sqlite or not ref:
        return None
    return asyncio.ensure_future(svc.images.get(ctx, ref))


def _settle(fut: asyncio.Future[Any]) -> None:
    """A read not awaited (the create failed before it was needed) finishes on its own (cancelling
    a statement mid-way would cost its connection), and its error, if any, is taken."""
    fut.add_done_callback(lambda f: f.cancelled() or f.exception())


async def _create(svc: ComputeService, ctx: RequestContext, req: CreateRequest, pre: asyncio.Future[None] | None,
                  image_read: asyncio.Future[dict[str, Any]] | None) -> tuple[list[dict[str, Any]], str]:
    project = ctx.project_id or ""
    try:
        az, force_host, force_node = parse_availability_zone(ctx, req.availability_zone)
        limits, own, flavor, keypair, group = await _read_request(svc, ctx, req, az)
    finally:
        if pre is not None:
            await pre  # its error replaces one of the reads (the order the checks ran in before)
    user_limits = {**limits, **own} if any(r in own for r in INSTANCE_RESOURCES) else None
    members_limit = own.get("server_group_members", limits["server_group_members"])
    # The root (an image, or a volume: boot_volumes) and the block device mappings, checked.
    root = await boot_volumes.resolve(svc.db, svc.volumes, svc.images, ctx, req, flavor, image_read)

    nets = await networking.requested_ports(svc.network, ctx, req.requested_networks) if svc.network else []
    snap = flavor_snapshot(flavor)
    resv = reservation_id()
    now = utcnow()
    if 0 <= limits["metadata_items"] < len(req.metadata):
        raise errors.OverQuota(f"Maximum number of metadata items exceeds {limits['metadata_items']}")
    first = new_uuid()
    # Nothing to count when the instances, cores and ram limits are all unlimited (-1) for the
    # project and the user: headroom() allows max_count whatever the usage. A group's member
    # count (add_members) still needs the project's lock.
    bound = user_limits is not None or any(limits[r] >= 0 for r in INSTANCE_RESOURCES)
    await boot_volumes.reserve(svc.volumes, ctx, root.prepared, first)  # existing volumes, as Nova
    try:
        def make_rows(count: int) -> list[dict[str, Any]]:
            return _instance_rows(ctx, req, root, snap, keypair, (az, force_host, force_node), resv, now,
                                  [first, *(new_uuid() for _ in range(count - 1))])

        if req.max_count == 1 and not (bound or group is not None or svc.db.is_sqlite or root.prepared.plan.stored_indexed()):
            # PostgreSQL, nothing to lock or count, no other row to write: the instance row and its
            # create action are one statement (_insert_rows), its own transaction: one round trip
            # where BEGIN, the lock, the count, two INSERTs and COMMIT were six.
            rows = make_rows(req.max_count)
            async with svc.db.read() as conn:
                await _insert_rows(conn, rows, ctx, now)
        else:
            # Few awaits while holding the write lock: under load each one waits a turn of the event loop.
            async with svc.db.write() as conn:
                count = req.max_count
                if bound or group is not None:
                    await svc.quotas.lock(conn, project)
                if bound:
                    fits = headroom(limits, await svc.quotas.instance_usage(conn, project), snap["vcpus"], snap["memory_mb"])
                    if user_limits is not None:
                        user_used = await svc.quotas.instance_usage(conn, project, ctx.user_id)
                        fits = min(fits, headroom(user_limits, user_used, snap["vcpus"], snap["memory_mb"]))
                    count = min(req.max_count, fits)
                    if count < req.min_count:
                        await svc.quotas.check_instances(
                            conn, project, req.max_count, snap["vcpus"], snap["memory_mb"], user_id=ctx.user_id
                        )
                        raise errors.OverQuota("Quota exceeded for instances: Cannot run any more instances of this type.")
                rows = make_rows(count)
                await _insert_rows(conn, rows, ctx, now)
                for row in rows:
                    await boot_volumes.write_rows(conn, root.prepared, row["uuid"])
                if group is not None:
                    await server_groups.add_members(conn, group, [r["uuid"] for r in rows], ctx.user_id or "", members_limit)
    except BaseException:
        await boot_volumes.unreserve(svc.volumes, ctx, root.prepared)
        raise
    uuids = [r["uuid"] for r in rows]
    if nets and svc.network is not None:
        await networking.allocate_for_rows(svc.db, svc.network, ctx, rows, nets)
    async def undo() -> None:  # the broker away: no server was made (503, a retry starts clean)
        await bus_undo.remove_created(svc.db, svc.network, rows)
        await boot_volumes.unreserve(svc.volumes, ctx, root.prepared)

    await bus_undo.cast_or_undo(svc.conductor.build_instances(uuids), undo)
    return rows, resv


def _instance_rows(ctx: RequestContext, req: CreateRequest, root: boot_volumes.Resolved, snap: dict[str, Any],
                   keypair: Any, zone: tuple[str | None, str | None, str | None], resv: str, now: Any,
                   uuids: list[str]) -> list[dict[str, Any]]:
    """The instances rows of a create (zone: the availability zone, forced host and node)."""
    az, force_host, force_node = zone
    count = len(uuids)
    spec = {
        "flavor": snap,
        "image": root.spec_image,
        "availability_zone": az,
        "force_hosts": [force_host] if force_host else [],
        "force_nodes": [force_node] if force_node else [],
        "requested_host": req.requested_host,
        "requested_node": req.requested_node,
        "scheduler_hints": req.scheduler_hints,
        "num_instances": count,
        "instance_uuids": uuids,
        "project_id": ctx.project_id or "",
        "user_id": ctx.user_id,
    }
    rows = []
    for index, uuid in enumerate(uuids):
        # Nova's multi_instance_display_name_template: "%(name)s-%(count)d".
        display = f"{req.name}-{index + 1}" if count > 1 else req.name
        rows.append(
            {
                "uuid": uuid, "project_id": ctx.project_id or "", "user_id": ctx.user_id or "", "display_name": display,
                "display_description": req.description, "hostname": req.hostname or sanitize_hostname(display, f"Server-{uuid}"),
                "image_ref": root.image["id"] if root.image else "", "flavor": snap, "vcpus": snap["vcpus"],
                # a volume-backed server holds no local root disk (placement claims none)
                "memory_mb": snap["memory_mb"], "root_gb": 0 if root.volume_backed else snap["root_gb"],
                "ephemeral_gb": snap["ephemeral_gb"], "key_name": req.key_name,
                "key_data": keypair["public_key"] if keypair else req.key_data, "user_data": req.user_data,
                "metadata": dict(req.metadata),
                "system_metadata": {"auto_disk_config": req.auto_disk_config, "trusted_certs": req.trusted_certs},
                "tags": list(req.tags), "vm_state": st.BUILDING, "task_state": st.SCHEDULING,
                "power_state": 0, "locked": False, "availability_zone": az, "reservation_id": resv,
                "launch_index": index, "access_ip_v4": req.access_ip_v4, "access_ip_v6": req.access_ip_v6,
                "config_drive": "True" if req.config_drive else "", "progress": 0, "request_spec": spec,
                "security_groups": list(req.security_groups), "requested_networks": req.requested_networks,
                "addresses": {}, "created_at": now, "updated_at": now, "deleted": False,
            }
        )
    return rows


async def _insert_rows(conn: AsyncConnection, rows: list[dict[str, Any]], ctx: RequestContext, now: Any) -> None:
    """The instances rows and a create action for each. On PostgreSQL one server's are one statement
    (a data-modifying CTE, built once: `_row_with_action`); else two INSERTs (on SQLite they are
    library calls, and SQLite has no INSERT inside WITH)."""
    action = {"action": act.CREATE, "request_id": ctx.request_id, "user_id": ctx.user_id,
              "project_id": ctx.project_id, "start_time": now, "updated_at": now}
    if len(rows) == 1 and conn.dialect.name == "postgresql":
        row = rows[0]
        params = {f"i_{k}": value for k, value in row.items()}
        params.update({f"a_{k}": value for k, value in action.items()})
        await conn.execute(_row_with_action(tuple(row)), params)
        return
    await conn.execute(sa.insert(instances), rows)
    await conn.execute(sa.insert(instance_actions), [{**action, "instance_uuid": r["uuid"]} for r in rows])


_ACTION_COLUMNS = ("action", "request_id", "user_id", "project_id", "start_time", "updated_at")


@functools.cache
def _row_with_action(columns: tuple[str, ...]) -> sa.Insert:
    """`WITH made AS (INSERT INTO instances ... RETURNING uuid) INSERT INTO instance_actions ...
    SELECT ..., made.uuid FROM made`: the instance's values bound as i_<column>, its action's as
    a_<column>. Built once per column set (building it costs more than its round trip)."""
    made = (
        sa.insert(instances)
        .values({c: sa.bindparam(f"i_{c}", type_=instances.c[c].type) for c in columns})
        .returning(instances.c.uuid)
        .cte("made")
    )
    a = instance_actions.c
    return sa.insert(instance_actions).from_select(
        [*_ACTION_COLUMNS, "instance_uuid"],
        sa.select(*(sa.bindparam(f"a_{c}", type_=a[c].type) for c in _ACTION_COLUMNS), made.c.uuid),
    )


async def _read_request(svc: ComputeService, ctx: RequestContext, req: CreateRequest,
                        az: str | None) -> tuple[dict[str, int], dict[str, int], dict[str, Any], Any, Any]:
    """What the request names, checked: (limits, the user's own limits, flavor, key pair, group)."""
    async with svc.db.read() as conn:
        flavor = await svc.flavor_for(conn, ctx, req.flavor_ref)
        keypair = await svc.keypair_for(conn, ctx, req.key_name) if req.key_name and req.key_data is None else None
        if az is not None and az not in await _availability_zones(conn, svc.conf.default_availability_zone):
            raise errors.Invalid("The requested availability zone is not available")
        for wanted, column in ((req.requested_host, compute_nodes.c.host), (req.requested_node, compute_nodes.c.hypervisor_hostname)):
            if wanted and (await conn.execute(sa.select(column).where(column == wanted).limit(1))).first() is None:
                raise errors.Invalid(f"Compute host {wanted} could not be found.")
        # Limits are read before the write lock (they change rarely); usage is counted under it.
        # A user with their own instances/cores/ram limits is bound by them too.
        limits, own = await svc.quotas.limits_and_overrides(conn, ctx.project_id or "", ctx.user_id)
        group = await server_groups.group_for_create(conn, ctx, req.scheduler_hints)
    return limits, own, flavor, keypair, group


def parse_availability_zone(ctx: RequestContext, raw: str | None) -> tuple[str | None, str | None, str | None]:
    """Nova's "zone", "zone:host", "zone:host:node", "zone::node" forms; host/node need admin."""
    if not raw:
        return None, None, None
    az, host, node = raw, None, None
    if ":" in raw:
        count = raw.count(":")
        if count == 1:
            az, host = raw.split(":", 1)
        elif count == 2:
            if "::" in raw:
                az, node = raw.split("::", 1)
            else:
                az, host, node = raw.split(":", 2)
        else:
            raise errors.Invalid("Unable to parse availability_zone")
    if host or node:
        policy.authorize(ctx, "compute:servers:create:forced_host")
    return az or None, host or None, node or None


async def _availability_zones(conn: AsyncConnection, default_zone: str) -> set[str]:
    rows = await conn.execute(
        # Only zones that hold compute hosts: "internal" (conductor, scheduler) can run nothing.
        sa.select(services.c.availability_zone)
        .distinct()
        .where(services.c.availability_zone.is_not(None), services.c.binary.like("%-compute"))
    )
    return {default_zone, *(r[0] for r in rows)}
