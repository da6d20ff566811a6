"""Admin server actions: os-resetState, injectNetworkInfo and migrate (cold migration).

resetState writes vm_state (active or error) and clears task_state with a compare-and-swap on the
states it read, as Nova's admin_state_reset save does, and records a "resetState" action.

injectNetworkInfo has nothing to push: Cumulo's drivers (like Nova's libvirt driver) configure a
server's network at spawn and through the config drive, so the action is recorded and answered 202.

migrate: Nova moves a server to another host through the resize machinery. No Cumulo driver can move
a server's disks between hosts yet, so migrate checks what Nova checks (state, lock, target host) and
asks the scheduler for another host without claiming: none fits → 400 NoValidHost naming the
scheduler's reason; one fits → 400 saying the move itself is not supported. Nothing changes state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.compute import actions as act
from cumulo.compute import instances as inst_db
from cumulo.compute import states as st
from cumulo.compute.rpc import SchedulerAPI
from cumulo.compute.service import transitions as tr
from cumulo.context import RequestContext
from cumulo.hosts.models import compute_nodes
from cumulo.placement.service import resources_from_flavor

if TYPE_CHECKING:
    from cumulo.compute.service.servers import ComputeService

RESET_STATE = "resetState"
INJECT_NETWORK_INFO = "injectNetworkInfo"
MIGRATE = "migrate"
RESET_STATES = {"active": st.ACTIVE, "error": st.ERROR}

# Nova's compute_api.resize(host_name=…) checks for a cold migration.
MIGRATE_TRANSITION = tr.Transition(
    "migrate", MIGRATE, frozenset({st.ACTIVE, st.STOPPED}), st.RESIZE_PREP, None, needs_host=True
)
# Nova's check_instance_host for injectNetworkInfo: any state, but the server must be on a host.
INJECT_TRANSITION = tr.Transition(
    "injectNetworkInfo", INJECT_NETWORK_INFO, None, None, None, task_states=None, must_have_launched=False,
    needs_host=True, check_lock=False,
)


async def reset_state(svc: ComputeService, ctx: RequestContext, inst: dict[str, Any], state: str) -> None:
    """vm_state := active|error, task_state := None; a concurrent change to the row is a 409."""
    vm_state = RESET_STATES[state]
    async with svc.db.write() as conn:
        ok = await inst_db.cas_update(
            conn, inst["uuid"], {"vm_state": vm_state, "task_state": None},
            expected_task_state=inst["task_state"], expected_vm_state=inst["vm_state"],
        )
        if not ok:
            if await inst_db.get(conn, inst["uuid"]) is None:
                raise errors.NotFound(f"Instance {inst['uuid']} could not be found.")
            raise errors.Conflict(f"Conflict updating instance {inst['uuid']}.")
        await act.record_action(conn, ctx, inst["uuid"], RESET_STATE)


async def inject_network_info(svc: ComputeService, ctx: RequestContext, inst: dict[str, Any]) -> None:
    tr.check(ctx, inst, INJECT_TRANSITION)
    async with svc.db.write() as conn:
        await act.record_action(conn, ctx, inst["uuid"], INJECT_NETWORK_INFO)
    # The one step there is (none on the host): recorded as a finished event, so the action is complete.
    async with act.event(svc.db, inst["uuid"], ctx.request_id, "api_inject_network_info", None):
        pass


def _is_no_valid_host(exc: BaseException) -> bool:
    # Across a broker the exception arrives as RemoteError carrying the class name.
    return isinstance(exc, errors.NoValidHost) or getattr(exc, "exc_type", None) == "NoValidHost"


def migration_spec(inst: dict[str, Any], host: str | None) -> dict[str, Any]:
    """The scheduler request for a cold migration: the server as it is, anywhere but its own host."""
    rs = dict(inst.get("request_spec") or {})
    flavor = inst.get("flavor") or rs.get("flavor") or {}
    return {
        "instance_uuid": inst["uuid"],
        # The row's columns are the flavor it holds now (what compute.specs.instance_resources reads;
        # specs is not imported here: it reaches the drivers, which no API module may).
        "resources": resources_from_flavor({
            "vcpus": inst.get("vcpus"), "memory_mb": inst.get("memory_mb"), "root_gb": inst.get("root_gb"),
            "ephemeral_gb": inst.get("ephemeral_gb"), "swap": flavor.get("swap", 0),
        }),
        "flavor": {"extra_specs": dict(flavor.get("extra_specs") or {})},
        "availability_zone": rs.get("availability_zone") or inst.get("availability_zone"),
        "image": rs.get("image") or {},
        "image_properties": rs.get("image_properties") or {},
        "force_host": host,
        "ignore_hosts": [inst["host"]],
    }


async def migrate(svc: ComputeService, ctx: RequestContext, inst: dict[str, Any], host: str | None) -> None:
    tr.check(ctx, inst, MIGRATE_TRANSITION)
    if host:
        async with svc.db.read() as conn:
            known = (await conn.execute(sa.select(compute_nodes.c.host).where(compute_nodes.c.host == host).limit(1))).first()
        if known is None:
            raise errors.Invalid(f"Compute host {host} could not be found.")
        if host == inst["host"]:
            raise errors.Invalid("Cannot migrate to the same host.")
    try:
        dests = await SchedulerAPI(svc.bus).select_destinations(migration_spec(inst, host), 1)
    except Exception as exc:
        if not _is_no_valid_host(exc):
            raise
        reason = str(getattr(exc, "message", None) or exc)
        if not reason.startswith("No valid host"):
            reason = f"No valid host was found. {reason}"
        raise errors.Invalid(reason) from None
    raise errors.Invalid(
        f"Cannot migrate instance {inst['uuid']} to host {dests[0]['host']}: cold migration between hosts is not "
        "supported yet (no compute driver can move a server's disks to another host)."
    )
