"""Admin server actions: os-resetState, injectNetworkInfo and migrate (cold migration).

resetState writes vm_state (active or error) and clears task_state with a compare-and-swap on the
states it read, as Nova's admin_state_reset save does, and records a "resetState" action.

injectNetworkInfo has nothing to push: Cumulo's drivers (like Nova's libvirt driver) configure a
server's network at spawn and through the config drive, so the action is recorded and answered 202.

migrate: Nova's cold migration, through the resize machinery (compute/service/migrate.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cumulo import errors
from cumulo.compute import actions as act
from cumulo.compute import instances as inst_db
from cumulo.compute import states as st
from cumulo.compute.service import migrate as migrate_server
from cumulo.compute.service import transitions as tr
from cumulo.context import RequestContext

if TYPE_CHECKING:
    from cumulo.compute.service.servers import ComputeService

RESET_STATE = "resetState"
INJECT_NETWORK_INFO = "injectNetworkInfo"
MIGRATE = "migrate"
RESET_STATES = {"active": st.ACTIVE, "error": st.ERROR}

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


async def migrate(svc: ComputeService, ctx: RequestContext, inst: dict[str, Any], host: str | None) -> None:
    """Cold migration (compute/service/migrate.py)."""
    await migrate_server.migrate(svc, ctx, inst, host)
