"""The API side of cold migration (os-migrate-server `migrate`) and evacuation (os-evacuate).

migrate: Nova's compute_api.resize(host_name=...) checks (active or stopped, not locked, on a
host; 2.56's `host` must be another known compute host), then a compare-and-swap to
resize_prep, the "migrate" action and a migration record (type "migration", pre-migrating), in
one transaction, and a cast to the conductor (compute/conductor/migrate.py). The server ends in
VERIFY_RESIZE on the destination; confirmResize / revertResize finish it as for a resize.

evacuate: only when the server's compute service is down (forced down, or no heartbeat within
service_down_time: servicegroup.is_up), else 409 as Nova's "Compute service of <host> is still in
use". vm_state active, stopped or error; task_state rebuilding, the "evacuate" action and a
record (type "evacuation", accepted). `host` (optional) must be another known compute host; from
2.29 `force` (dropped again in 2.68) sends it there without the scheduler's filters (Cumulo still
claims there: a host that cannot hold it is a fault). `onSharedStorage` (before 2.14): Cumulo keeps
no instance files on shared storage, so true is refused (400). The admin password: before 2.14 the
answer carries it ({"adminPass": ...}); a user-given one is used, else one is generated.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.compute import actions as act
from cumulo.compute import instances as inst_db
from cumulo.compute import migration_records
from cumulo.compute import states as st
from cumulo.compute.rpc import ConductorAPI
from cumulo.compute.service import bus_undo
from cumulo.compute.service import transitions as tr
from cumulo.context import RequestContext
from cumulo.hosts import servicegroup
from cumulo.hosts.models import compute_nodes, services

if TYPE_CHECKING:
    from cumulo.compute.service.servers import ComputeService

MIGRATE = "migrate"
EVACUATE = "evacuate"

MIGRATE_TRANSITION = tr.Transition(
    "migrate", MIGRATE, frozenset({st.ACTIVE, st.STOPPED}), st.RESIZE_PREP, None, needs_host=True
)
# Nova's evacuate: @check_instance_state(vm_state=[ACTIVE, STOPPED, ERROR]), no lock check.
EVACUATE_TRANSITION = tr.Transition(
    "evacuate", EVACUATE, frozenset({st.ACTIVE, st.STOPPED, st.ERROR}), st.REBUILDING, None, needs_host=True,
    check_lock=False,
)


async def _check_target(svc: ComputeService, inst: dict[str, Any], host: str | None, verb: str) -> None:
    if not host:
        return
    async with svc.db.read() as conn:
        known = (await conn.execute(sa.select(compute_nodes.c.host).where(compute_nodes.c.host == host).limit(1))).first()
    if known is None:
        if verb == "evacuate":
            raise errors.NotFound(f"Compute host {host} could not be found.")
        raise errors.Invalid(f"Compute host {host} could not be found.")
    if host == inst["host"]:
        if verb == "evacuate":
            raise errors.Invalid("The target host can't be the same one.")
        raise errors.Invalid("Cannot migrate to the same host.")


async def _begin(svc: ComputeService, ctx: RequestContext, inst: dict[str, Any], t: tr.Transition,
                 migration_type: str, status: str) -> tuple[dict[str, Any], str]:
    """CAS to the transition's task state, the action and the record, in one transaction: the row
    as it now is and the record's uuid."""
    async with svc.db.write() as conn:
        ok = await inst_db.cas_update(
            conn, inst["uuid"], {"task_state": t.new_task_state},
            expected_task_state=None, expected_vm_state=inst["vm_state"],
        )
        if not ok:
            current = await inst_db.get(conn, inst["uuid"])
            if current is None:
                raise errors.NotFound(f"Instance {inst['uuid']} could not be found.")
            tr.check(ctx, current, t)
            raise errors.Conflict(f"Conflict updating instance {inst['uuid']}.")
        await act.record_action(conn, ctx, inst["uuid"], t.action)
        migration_uuid = await migration_records.start_resize(
            conn, ctx, inst, inst["flavor"] or {}, migration_type=migration_type, status=status
        )
        row = await inst_db.get(conn, inst["uuid"])
    assert row is not None
    return row, migration_uuid


def _undo(svc: ComputeService, ctx: RequestContext, before: dict[str, Any], after: dict[str, Any],
          migration_uuid: str) -> Callable[[], Awaitable[None]]:
    """What a request wrote, put back when the broker is away (bus_undo: the 503 and a clean retry)."""
    async def undo() -> None:
        await bus_undo.forget_migration(svc.db, migration_uuid)
        await bus_undo.revert_begin(svc.db, ctx, before, after)
    return undo


async def migrate(svc: ComputeService, ctx: RequestContext, inst: dict[str, Any], host: str | None) -> None:
    tr.check(ctx, inst, MIGRATE_TRANSITION)
    await _check_target(svc, inst, host, "migrate")
    row, migration_uuid = await _begin(svc, ctx, inst, MIGRATE_TRANSITION, migration_records.MIGRATION,
                                       migration_records.PRE_MIGRATING)
    try:
        await bus_undo.cast_or_undo(
            ConductorAPI(svc.bus).migrate_server(inst["uuid"], new_flavor=None, host=host or None,
                                                 request_id=ctx.request_id),
            _undo(svc, ctx, inst, row, migration_uuid))
    except Exception as exc:
        # Across a broker the exception arrives as RemoteError carrying the class name.
        if not (isinstance(exc, errors.NoValidHost) or getattr(exc, "exc_type", None) == "NoValidHost"):
            raise
        reason = str(getattr(exc, "message", None) or exc)
        raise errors.Invalid(reason if reason.startswith("No valid host") else f"No valid host was found. {reason}") from None


async def source_is_up(svc: ComputeService, host: str) -> bool:
    """Whether any nova-compute service of the host counts as up (servicegroup.is_up)."""
    async with svc.db.read() as conn:
        rows = (await conn.execute(
            sa.select(services).where(services.c.host == host, services.c.binary == "nova-compute")
        )).mappings().all()
    return any(servicegroup.is_up(dict(r), svc.conf) for r in rows)


async def evacuate(
    svc: ComputeService, ctx: RequestContext, inst: dict[str, Any], *, host: str | None, force: bool,
    on_shared_storage: bool | None,
) -> None:
    tr.check(ctx, inst, EVACUATE_TRANSITION)
    if on_shared_storage:
        raise errors.Invalid(
            "Invalid state of instance files on shared storage: Cumulo keeps no instance files on shared storage."
        )
    await _check_target(svc, inst, host, "evacuate")
    if await source_is_up(svc, inst["host"]):
        raise errors.Conflict(f"Compute service of {inst['host']} is still in use.")
    row, migration_uuid = await _begin(svc, ctx, inst, EVACUATE_TRANSITION, migration_records.EVACUATION,
                                       migration_records.ACCEPTED)
    await bus_undo.cast_or_undo(
        ConductorAPI(svc.bus).evacuate_server(inst["uuid"], host=host or None, force=force,
                                              migration_uuid=migration_uuid, request_id=ctx.request_id),
        _undo(svc, ctx, inst, row, migration_uuid))
