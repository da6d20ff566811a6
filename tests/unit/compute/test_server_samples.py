"""Usage readings from the service to the driver, in process: ComputeService.server_samples (rule
compute:servers:samples, the caller's servers only, one call per host) -> ComputeAPI.sample_instances
-> the host's sample_instances (each node for its own servers) -> the fake driver, whose usage a test
steers with set_usage or an exec's CUMULO_FAKE_CPU_PERCENT."""

from __future__ import annotations

from pathlib import Path

import pytest
from workers_harness import FLAVOR_SMALL, running

from cumulo.context import RequestContext
from cumulo.errors import Forbidden, NotFound


async def test_readings_of_the_callers_servers_follow_the_steered_usage(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        row = await rig.active_server()
        svc = rig.compute_service()
        [first] = await svc.server_samples(rig.ctx, [row])
        assert first["uuid"] == row["uuid"] and first["vcpus"] == FLAVOR_SMALL["vcpus"]
        assert first["memory_used"] * 2 == first["memory_limit"] == FLAVOR_SMALL["memory_mb"] << 20
        assert isinstance(first["cpu_ns"], int) and first["time"] > 0

        await rig.driver().set_usage(row["uuid"], cpu_percent=0, memory_percent=80)
        [idle_a] = await svc.server_samples(rig.ctx, [row])
        [idle_b] = await svc.server_samples(rig.ctx, [row])
        assert idle_b["cpu_ns"] == idle_a["cpu_ns"]  # no CPU time at 0 %
        assert idle_b["memory_used"] == int(idle_b["memory_limit"] * 0.8)

        # Steered through an exec, as a test of a whole cloud does it.
        await svc.exec_in_server(rig.ctx, row, ["/bin/true"], env={"CUMULO_FAKE_CPU_PERCENT": "50"})
        [busy_a] = await svc.server_samples(rig.ctx, [row])
        [busy_b] = await svc.server_samples(rig.ctx, [row])
        used = busy_b["cpu_ns"] - busy_a["cpu_ns"]
        elapsed = busy_b["time"] - busy_a["time"]
        assert used > 0
        pct = used / (elapsed * busy_b["vcpus"] * 1e9) * 100
        assert 40 < pct < 60, pct

        # A server with no host yet is left out; so is a uuid no node owns.
        assert await svc.server_samples(rig.ctx, [{**row, "host": None}]) == []
        assert await svc.server_samples(rig.ctx, [{**row, "uuid": "nope"}]) == []


async def test_only_members_of_the_servers_project_or_admins_read_them(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        row = await rig.active_server()
        svc = rig.compute_service()
        stranger = RequestContext(user_id="s", project_id="other", roles=frozenset({"member", "reader"}))
        with pytest.raises(NotFound):
            await svc.server_samples(stranger, [row])
        reader = RequestContext(user_id="r", project_id="p1", roles=frozenset({"reader"}))
        with pytest.raises(Forbidden, match="compute:servers:samples"):
            await svc.server_samples(reader, [row])
        admin = RequestContext(user_id="a", project_id="other", roles=frozenset({"admin", "member", "reader"}))
        assert [r["uuid"] for r in await svc.server_samples(admin, [row])] == [row["uuid"]]
