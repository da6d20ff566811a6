"""Resize on the agent (always in place, on the instance's own host).

The conductor has already claimed the new flavor with Placement.claim_resize (old + new held).
resize: driver.resize → vm_state resized (VERIFY_RESIZE), flavor = new, old_flavor kept.
confirm: the new flavor stays, the old allocation goes. revert: the old flavor, its columns and
its allocation come back. A failure sets ERROR with a fault and puts allocations back to the
flavor the row shows.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from cumulo.compute import actions, migration_records
from cumulo.compute import states as s
from cumulo.compute.agent import migrate
from cumulo.compute.agent.migrate import OLD_VM_STATE, settled_vm_state
from cumulo.compute.drivers.base import Capability, driver_for
from cumulo.compute.specs import flavor_columns, flavor_spec, volume_backed

if TYPE_CHECKING:
    from cumulo.compute.agent.node import Node

LOG = logging.getLogger(__name__)

RESIZE_TASK_STATES = frozenset({s.RESIZE_PREP, s.RESIZE_MIGRATING, s.RESIZE_MIGRATED, s.RESIZE_FINISH})
CONFIRM_TASK_STATES = frozenset({None, s.RESIZE_CONFIRMING})
REVERT_TASK_STATES = frozenset({None, s.RESIZE_REVERTING})


async def resize(node: Node, uuid: str, new_flavor: dict[str, Any], request_id: str | None) -> None:
    async with node.locks.hold(uuid):
        inst = await node.load(uuid)
        if inst is None or inst["task_state"] not in RESIZE_TASK_STATES:
            LOG.info("resize of %s skipped (task_state %s)", uuid, inst and inst["task_state"])
            return
        req = await node.request_id_for(uuid, request_id, actions.RESIZE)
        old_flavor = inst["flavor"]
        sysmeta = dict(inst["system_metadata"] or {})
        sysmeta[OLD_VM_STATE] = inst["vm_state"]
        if not await node.set_state(
            uuid,
            {"task_state": s.RESIZE_MIGRATING, "new_flavor": new_flavor, "system_metadata": sysmeta},
            expected_task_state=inst["task_state"],
        ):
            return
        await migration_records.set_status(node.db, uuid, migration_records.MIGRATING)
        try:
            async with actions.event(node.db, uuid, req, "compute_resize_instance", node.host):
                driver = driver_for(node.driver, Capability.RESIZE, node=node.name)
                await driver.resize(await node.spec(inst, flavor=new_flavor), flavor_spec(old_flavor))
        except Exception as exc:
            LOG.warning("resize of %s failed: %s", uuid, exc)
            await node.placement.revert_resize(uuid)
            await node.set_state(
                uuid,
                {"vm_state": s.ERROR, "task_state": None, "new_flavor": None,
                 "power_state": int(await node.power_of(uuid))},
                expected_task_state=s.RESIZE_MIGRATING,
                fault=exc,
            )
            await migration_records.set_status(node.db, uuid, migration_records.ERROR)
            return
        await node.set_state(
            uuid,
            {
                "vm_state": s.RESIZED,
                "task_state": None,
                "flavor": new_flavor,
                "old_flavor": old_flavor,
                "new_flavor": new_flavor,
                "power_state": int(await node.power_of(uuid)),
                **flavor_columns(new_flavor, volume_backed=volume_backed(inst)),
            },
            expected_task_state=s.RESIZE_MIGRATING,
        )
        await migration_records.set_status(node.db, uuid, migration_records.FINISHED)


async def confirm(node: Node, uuid: str, request_id: str | None) -> None:
    async with node.locks.hold(uuid):
        inst = await node.load(uuid)
        if inst is None or inst["vm_state"] != s.RESIZED or inst["task_state"] not in CONFIRM_TASK_STATES:
            LOG.info("confirm_resize of %s skipped", uuid)
            return
        if (moved := await migrate.cross_host(node, uuid)) is not None:
            return await migrate.confirm_locked(node, inst, moved, request_id)
        task = inst["task_state"]
        req = await node.request_id_for(uuid, request_id, actions.CONFIRM_RESIZE)
        try:
            async with actions.event(node.db, uuid, req, "compute_confirm_resize", node.host):
                await driver_for(node.driver, Capability.RESIZE, node=node.name).confirm_resize(uuid)
        except Exception as exc:
            await node.set_state(
                uuid, {"vm_state": s.ERROR, "task_state": None}, expected_task_state=task,
                expected_vm_state=s.RESIZED, fault=exc,
            )
            await migration_records.set_status(node.db, uuid, migration_records.ERROR)
            return
        await node.placement.confirm_resize(uuid)
        await migration_records.set_status(node.db, uuid, migration_records.CONFIRMED)
        power = await node.power_of(uuid)
        sysmeta = {k: v for k, v in (inst["system_metadata"] or {}).items() if k != OLD_VM_STATE}
        await node.set_state(
            uuid,
            {
                "vm_state": settled_vm_state(power),
                "task_state": None,
                "old_flavor": None,
                "new_flavor": None,
                "power_state": int(power),
                "system_metadata": sysmeta,
            },
            expected_task_state=task,
            expected_vm_state=s.RESIZED,
        )


async def revert(node: Node, uuid: str, request_id: str | None) -> None:
    async with node.locks.hold(uuid):
        inst = await node.load(uuid)
        if inst is None or inst["vm_state"] != s.RESIZED or inst["task_state"] not in REVERT_TASK_STATES:
            LOG.info("revert_resize of %s skipped", uuid)
            return
        await revert_locked(node, inst, request_id)


async def revert_locked(node: Node, inst: dict[str, Any], request_id: str | None) -> bool:
    """Put the old flavor back (driver, placement, row). The caller holds the instance lock."""
    uuid, task = inst["uuid"], inst["task_state"]
    if (moved := await migrate.cross_host(node, uuid)) is not None:
        return await migrate.revert_locked(node, inst, moved, request_id)
    old_flavor = inst["old_flavor"] or inst["flavor"]
    req = await node.request_id_for(uuid, request_id, actions.REVERT_RESIZE)
    try:
        async with actions.event(node.db, uuid, req, "compute_revert_resize", node.host):
            await driver_for(node.driver, Capability.RESIZE, node=node.name).revert_resize(await node.spec(inst, flavor=old_flavor))
    except Exception as exc:
        await node.set_state(uuid, {"vm_state": s.ERROR, "task_state": None}, expected_task_state=task, fault=exc)
        await migration_records.set_status(node.db, uuid, migration_records.ERROR)
        return False
    await node.placement.revert_resize(uuid)
    await migration_records.set_status(node.db, uuid, migration_records.REVERTED)
    power = await node.power_of(uuid)
    sysmeta = dict(inst["system_metadata"] or {})
    previous = sysmeta.pop(OLD_VM_STATE, s.ACTIVE)
    return await node.set_state(
        uuid,
        {
            "vm_state": settled_vm_state(power, previous),
            "task_state": None,
            "flavor": old_flavor,
            "old_flavor": None,
            "new_flavor": None,
            "power_state": int(power),
            "system_metadata": sysmeta,
            **flavor_columns(old_flavor, volume_backed=volume_backed(inst)),
        },
        expected_task_state=task,
    )
