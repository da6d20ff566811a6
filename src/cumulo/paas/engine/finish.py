"""The end of a task: one write for the task row and the instance, then the callback.

Per kind (OWNERS.md states):
- deploy: SUCCESS -> instance INSTALLED; ERROR -> instance ERROR with error {message, step, output};
  rolled back -> the node rows the plan inserted are deleted (the nodes no longer exist; the failed
  step's output stays in the task error). keep_on_failure keeps them.
- destroy: SUCCESS -> the instance row is deleted (its children cascade) with its ledger rows that
  are "deleted"; ERROR -> instance ERROR (a new destroy may be asked).
- scale / autoscale: instance INSTALLED either way; rolled back -> the node rows the plan inserted
  become UNDEPLOYED with no server (replica numbers are never reused, as plan_scale keeps removed
  nodes).
- application: instance INSTALLED; on SUCCESS its app_generation + 1 (the generation plan_app gave
  the application: a template image taken later holds it); on ERROR the application rows the plan
  inserted are ERROR.
- undeploy_application: instance INSTALLED; on SUCCESS the application row is deleted and the
  template images of the tiers holding its product are stale (template.mark_stale).
After a destroy or an undeploy, the artifact files no application row references are deleted
(artifacts.collect; never before the final write, so no step of a task still reads them).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from cumulo.db import utcnow
from cumulo.paas.deps import PaasServices
from cumulo.paas.engine import tasks
from cumulo.paas.engine.base import Status, TaskKind, TaskStatus
from cumulo.paas.engine.callbacks import deliver
from cumulo.paas.models import (
    paas_applications,
    paas_env_instances,
    paas_resources,
    paas_tasks,
    paas_tier_instances,
)

LOG = logging.getLogger(__name__)
I = paas_env_instances.c  # noqa: E741 - the instance table's columns
N = paas_tier_instances.c


def _instance_error(error: Mapping[str, Any]) -> dict[str, Any]:
    return {"message": error.get("message"), "step": error.get("step"), "output": error.get("output") or ""}


async def finish(services: PaasServices, task: Mapping[str, Any], owner: str, error: dict[str, Any] | None,
                 rollback_error: Mapping[str, Any] | None) -> dict[str, Any]:
    """Write the final task row (while this engine holds it: else LeaseLost) and the instance."""
    task_id, kind, inst_id = int(task["id"]), str(task["kind"]), task["env_instance_id"]
    if error is not None and rollback_error:
        error = {**error, "message": f"{error['message']}\nrollback incomplete: {rollback_error['message']}",
                 "rollback": dict(rollback_error)}
    reverted = error is not None and not error.get("kept")
    inserted: Mapping[str, list[Any]] = (task.get("params") or {}).get("rows") or {}
    now = utcnow()
    mine = sa.and_(I.id == inst_id, I.task_id == task_id)
    async with services.db.write() as conn:
        done = await conn.execute(
            sa.update(paas_tasks).where(tasks.T.id == task_id, tasks.T.owner == owner,
                                              tasks.T.status.in_(tasks.ACTIVE))
            .values(status=(TaskStatus.SUCCESS if error is None else TaskStatus.ERROR).value, error=error,
                    end_time=now, lease_until=None)
        )
        if not done.rowcount:
            raise tasks.LeaseLost(task_id)
        if inst_id is not None:
            if kind == TaskKind.DESTROY.value and error is None:
                await conn.execute(sa.delete(paas_env_instances).where(mine))
                await conn.execute(sa.delete(paas_resources).where(paas_resources.c.env_instance_id == inst_id,
                                                                   paas_resources.c.state == "deleted"))
            elif kind in (TaskKind.DEPLOY.value, TaskKind.DESTROY.value):
                values: dict[str, Any] = {"updated_at": now}
                if error is None:
                    values.update(status=Status.INSTALLED.value, error=None)
                else:
                    values.update(status=Status.ERROR.value, error=_instance_error(error))
                await conn.execute(sa.update(paas_env_instances).where(mine).values(**values))
                if reverted and kind == TaskKind.DEPLOY.value and inserted.get("paas_tier_instances"):
                    await conn.execute(sa.delete(paas_tier_instances).where(
                        N.env_instance_id == inst_id, N.id.in_(list(inserted["paas_tier_instances"]))))
            else:
                values = {"status": Status.INSTALLED.value, "updated_at": now}
                if kind == TaskKind.APPLICATION.value and error is None:  # what a template taken now holds
                    values["app_generation"] = I.app_generation + 1
                await conn.execute(sa.update(paas_env_instances).where(mine).values(**values))
                if reverted and kind in (TaskKind.SCALE.value, TaskKind.AUTOSCALE.value) \
                        and inserted.get("paas_tier_instances"):
                    await conn.execute(sa.update(paas_tier_instances).where(
                        N.env_instance_id == inst_id, N.id.in_(list(inserted["paas_tier_instances"])))
                        .values(status=Status.UNDEPLOYED.value, server_id=None, ip=None, floating_ip=None,
                                updated_at=now))
                apps = paas_applications.c
                if kind == TaskKind.APPLICATION.value and error is not None and inserted.get("paas_applications"):
                    await conn.execute(sa.update(paas_applications).where(
                        apps.env_instance_id == inst_id, apps.id.in_(list(inserted["paas_applications"])))
                        .values(status=Status.ERROR.value, updated_at=now))
                if kind == TaskKind.UNDEPLOY_APPLICATION.value and error is None:
                    name = (task.get("params") or {}).get("application")
                    await _undeployed(conn, inst_id, str(name))
        row = (await conn.execute(sa.select(paas_tasks).where(tasks.T.id == task_id))).mappings().one()
    if kind in GC_KINDS:  # after the write: no application row of this task references a file any more
        await collect_artifacts(services)
    return dict(row)


# The kinds whose end may leave an artifact file no application row references.
GC_KINDS = (TaskKind.DESTROY.value, TaskKind.UNDEPLOY_APPLICATION.value)


async def collect_artifacts(services: PaasServices) -> list[str]:
    """Best effort: delete the artifact files no application row references (paas/artifacts.py)."""
    from cumulo.paas.artifacts import collect

    try:
        return await collect(services.conf, services.db)
    except Exception:  # noqa: BLE001 - a leftover file is no reason to fail a finished task
        LOG.warning("paas: the artifact sweep failed", exc_info=True)
        return []


async def _undeployed(conn: Any, inst_id: str, name: str) -> None:
    """In the final write of a successful undeploy: the application row goes, and the template
    images of the tiers holding its product are stale (its files are in them): the next scale takes
    new ones, so a new node never boots with an undeployed application's files."""
    from cumulo.paas.engine.plan_app import tiers_with
    from cumulo.paas.template import mark_stale

    apps = paas_applications.c
    app = (await conn.execute(sa.select(apps.product).where(apps.env_instance_id == inst_id, apps.name == name))
           ).first()
    await conn.execute(sa.delete(paas_applications).where(apps.env_instance_id == inst_id, apps.name == name))
    if app is None:
        return
    inst = (await conn.execute(sa.select(I.environment, I.name).where(I.id == inst_id))).mappings().first()
    if inst is not None:
        await mark_stale(conn, inst_id, tiers_with(inst, str(app.product)))


def task_body(services: PaasServices, row: Mapping[str, Any]) -> dict[str, Any]:
    """The Task JSON (the API's renderer) with absolute hrefs under the public /paas root."""
    from cumulo.paas.shapes import render_task

    return render_task(row, services.conf.public_url.rstrip("/") + "/paas")


async def notify(services: PaasServices, row: Mapping[str, Any]) -> str | None:
    """The task's one callback POST (after the row is final)."""
    return await deliver(services.db, row, task_body(services, row), services.conf.paas.callback_hosts)
