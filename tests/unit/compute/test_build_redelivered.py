"""A build message handled again after the agent that took it died (RabbitMQ redelivers what a
killed consumer held, to the restarted agent; issue 14, FAULTS): it must leave the row to the
agent's reconcile, never spawn over the half-made guest and fail the build."""

from __future__ import annotations

from pathlib import Path

from test_workers_reconcile import assert_consistent, guest, placed
from workers_harness import running

from cumulo.compute import states as st
from cumulo.compute.drivers.base import PowerState


async def test_a_redelivered_build_leaves_a_taken_build_to_the_reconcile(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        uuid = await placed(rig, task_state=st.SPAWNING)  # the dead agent had taken it ...
        await guest(rig, uuid)  # ... and its guest was made
        await rig.managers[rig.conf.host_name].build_and_run_instance(uuid)  # the message, again
        row = await rig.get(uuid)
        assert (row["vm_state"], row["task_state"], row["host"]) == (st.BUILDING, st.SPAWNING, rig.conf.host_name)
        assert await rig.driver().get_power_state(uuid) == PowerState.RUNNING
        await rig.restart()  # the restarted agent's reconcile adopts the guest
        row = await rig.wait_settled(uuid)
        assert (row["vm_state"], row["task_state"]) == (st.ACTIVE, None)
        await assert_consistent(rig)
