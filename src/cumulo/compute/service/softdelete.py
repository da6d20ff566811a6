"""Deferred delete on the API side (Nova's reclaim_instance_interval): soft delete, restore, forceDelete.

With conf.reclaim_instance_interval > 0, DELETE /servers/{id} of a server that has launched moves it
to task_state soft-deleting with deleted_at set, and the agent powers the guest off and marks it
SOFT_DELETED (compute.agent.reclaim). Until the agent's reclaim pass deletes it for real, `restore` brings
it back (task_state restoring → ACTIVE, powered on) and `forceDelete` deletes it at once.

Every change is a compare-and-swap on task_state and vm_state: a restore and the reclaim pass both
start from (soft-delete, no task), so exactly one of them wins and the other sees a conflict.

Quotas follow Nova's counting: a SOFT_DELETED server no longer counts against instances, cores and
ram (compute.quotas.instance_usage), so a restore checks the quota again and is a 403 when it no
longer fits. Its placement allocation stays until it is reclaimed: the guest still exists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.compute import actions as act
from cumulo.compute import instances as inst_db
from cumulo.compute import states as st
from cumulo.compute.models import instances
from cumulo.compute.rpc import ComputeAPI
from cumulo.compute.service import bus_undo
from cumulo.compute.service import transitions as tr
from cumulo.context import RequestContext
from cumulo.db import utcnow

if TYPE_CHECKING:
    from cumulo.compute.service.servers import ComputeService

_RESTORE = tr.Transition(
    "restore", act.RESTORE, frozenset({st.SOFT_DELETED}), st.RESTORING, ComputeAPI.restore_instance
)
# forceDelete: any vm_state, no task in flight, launched or not.
_FORCE_DELETE = tr.Transition("forceDelete", act.DELETE, None, st.DELETING, ComputeAPI.terminate_instance,
                              must_have_launched=False)


def enabled(svc: ComputeService) -> bool:
    return svc.conf.reclaim_instance_interval > 0


async def delete(svc: ComputeService, ctx: RequestContext, inst: dict[str, Any]) -> None:
    """DELETE /servers/{id}: a soft delete when deferred delete is on and the server launched."""
    if not enabled(svc) or not inst.get("launched_at") or not inst.get("host"):
        await svc.delete(ctx, inst)
        return
    tr.check_lock(ctx, inst)
    if inst["vm_state"] == st.SOFT_DELETED or inst["task_state"] in (st.SOFT_DELETING, st.DELETING):
        return  # already on its way out: delete is idempotent
    now = utcnow()
    async with svc.db.write() as conn:
        res = await conn.execute(
            sa.update(instances)
            .where(
                instances.c.uuid == inst["uuid"], instances.c.deleted.is_(False),
                instances.c.vm_state != st.SOFT_DELETED,
                sa.or_(instances.c.task_state.is_(None), instances.c.task_state.not_in([st.SOFT_DELETING, st.DELETING])),
            )
            .values(task_state=st.SOFT_DELETING, deleted_at=now, updated_at=now)
        )
        if not res.rowcount:
            return  # a delete won the race
        await act.record_action(conn, ctx, inst["uuid"], act.DELETE)
    after = {**inst, "task_state": st.SOFT_DELETING, "deleted_at": now}
    await bus_undo.cast_or_undo(svc.agents.soft_delete_instance(inst["host"], inst["uuid"], request_id=ctx.request_id),
                                lambda: bus_undo.revert_begin(svc.db, ctx, inst, after))


async def restore(svc: ComputeService, ctx: RequestContext, inst: dict[str, Any]) -> None:
    """The restore action: quota re-checked, then (soft-delete, None) → restoring, in one transaction."""
    tr.check(ctx, inst, _RESTORE)
    project = inst["project_id"]
    async with svc.db.write() as conn:
        await svc.quotas.lock(conn, project)
        wanted = {"instances": 1, "cores": int(inst["vcpus"] or 0), "ram": int(inst["memory_mb"] or 0)}
        await svc.quotas.check_instance_delta(conn, project, inst.get("user_id"), wanted)
        host = inst.get("host")
        values: dict[str, Any] = {"deleted_at": None}
        values.update({"task_state": st.RESTORING} if host else {"vm_state": st.ACTIVE, "task_state": None})
        ok = await inst_db.cas_update(conn, inst["uuid"], values, expected_task_state=None,
                                      expected_vm_state=st.SOFT_DELETED)
        if not ok:
            current = await inst_db.get(conn, inst["uuid"])
            if current is None:
                raise errors.NotFound(f"Instance {inst['uuid']} could not be found.")
            tr.check(ctx, current, _RESTORE)  # Nova's wording for what won (a reclaim: task_state deleting)
            raise errors.Conflict(f"Conflict updating instance {inst['uuid']}.")
        await act.record_action(conn, ctx, inst["uuid"], act.RESTORE)
    if host:
        after = {**inst, **values}
        await bus_undo.cast_or_undo(svc.agents.restore_instance(host, inst["uuid"], request_id=ctx.request_id),
                                    lambda: bus_undo.revert_begin(svc.db, ctx, inst, after))


async def force_delete(svc: ComputeService, ctx: RequestContext, inst: dict[str, Any]) -> None:
    """The forceDelete action: a real delete now, from any vm_state with no task in flight."""
    tr.check(ctx, inst, _FORCE_DELETE)
    now = utcnow()
    uuid = inst["uuid"]
    async with svc.db.write() as conn:
        if not inst.get("host"):
            values: dict[str, Any] = {
                "deleted": True, "deleted_at": now, "terminated_at": now, "vm_state": st.DELETED, "task_state": None,
                "progress": 0,
            }
            ok = await inst_db.cas_update(conn, uuid, values, expected_task_state=None)
        else:
            ok = await inst_db.cas_update(conn, uuid, {"task_state": st.DELETING, "progress": 0},
                                          expected_task_state=None)
        if not ok:
            current = await inst_db.get(conn, uuid)
            if current is None:
                raise errors.NotFound(f"Instance {uuid} could not be found.")
            tr.check(ctx, current, _FORCE_DELETE)
            raise errors.Conflict(f"Conflict updating instance {uuid}.")
        await act.record_action(conn, ctx, uuid, act.DELETE)
    if inst.get("host"):
        after = {**inst, "task_state": st.DELETING, "progress": 0}
        await bus_undo.cast_or_undo(svc.agents.terminate_instance(inst["host"], uuid, request_id=ctx.request_id),
                                    lambda: bus_undo.revert_begin(svc.db, ctx, inst, after))
