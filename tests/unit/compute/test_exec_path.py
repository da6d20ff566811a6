"""Exec from the service to the driver, in process: ComputeService.exec_in_server (rule
compute:servers:exec, the caller's servers only) -> ComputeAPI.exec_in_instance (a bus call waiting
the exec timeout + 30 s) -> the agent's exec_in_instance -> the fake driver's exec_in."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from workers_harness import running

from cumulo.bus.base import compute_topic
from cumulo.compute import actions
from cumulo.compute import states as st
from cumulo.compute.drivers.execspec import ExecRequest
from cumulo.compute.rpc import AGENT_METHODS, ComputeAPI
from cumulo.context import RequestContext
from cumulo.errors import Forbidden, Invalid, InvalidState, NotFound


async def test_the_owner_runs_a_command_and_gets_its_result(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        row = await rig.active_server()
        svc = rig.compute_service()
        res = await svc.exec_in_server(rig.ctx, row, ["/bin/sh", "-s"], env={"PATH": "/bin"},
                                       stdin=b"echo hi\n\xff", timeout=12, output_limit=1000)
        assert res["exit_code"] == 0 and res["timed_out"] is False
        assert rig.driver().exec_requests == [(row["uuid"], ExecRequest(
            argv=("/bin/sh", "-s"), env={"PATH": "/bin"}, stdin=b"echo hi\n\xff", timeout=12.0, output_limit=1000))]
        failed = await svc.exec_in_server(rig.ctx, row, ["/bin/false"], env={"CUMULO_FAKE_EXIT": "3"})
        assert failed["exit_code"] == 3  # an answer, not an error

        admin = RequestContext(user_id="a", project_id="other", roles=frozenset({"admin", "member", "reader"}))
        assert (await svc.exec_in_server(admin, row, ["/bin/true"]))["exit_code"] == 0
        stranger = RequestContext(user_id="s", project_id="other", roles=frozenset({"member", "reader"}))
        with pytest.raises(NotFound):
            await svc.exec_in_server(stranger, row, ["/bin/true"])
        reader = RequestContext(user_id="r", project_id="p1", roles=frozenset({"reader"}))
        with pytest.raises(Forbidden, match="compute:servers:exec"):
            await svc.exec_in_server(reader, row, ["/bin/true"])
        with pytest.raises(Invalid, match="stdin"):
            await svc.exec_in_server(rig.ctx, row, ["/bin/true"], stdin=b"x" * ((8 << 20) + 1))
        assert len(rig.driver().exec_requests) == 3


async def test_the_agent_refuses_bad_requests_and_servers_that_do_not_run(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        row = await rig.active_server()
        topic = compute_topic(row["host"])
        base = {"instance_uuid": row["uuid"], "argv": ["/bin/true"], "env": {}, "stdin_b64": "",
                "exec_timeout": 5.0, "output_limit": 100}
        for bad, match in (({"argv": []}, "argv"), ({"stdin_b64": "!!"}, "base64"),
                           ({"exec_timeout": 0}, "timeout"), ({"env": {"A": 1}}, "env")):
            with pytest.raises(Invalid, match=match):
                await rig.bus.call(topic, "exec_in_instance", **{**base, **bad})
        with pytest.raises(NotFound):
            await rig.bus.call(topic, "exec_in_instance", **{**base, "instance_uuid": "nope"})
        await rig.act(row["uuid"], "stop_instance", actions.STOP, st.POWERING_OFF)
        await rig.wait(row["uuid"], lambda r: r["task_state"] is None)
        with pytest.raises(InvalidState, match="not running"):
            await rig.compute_service().exec_in_server(rig.ctx, row, ["/bin/true"])
        assert rig.driver().exec_requests == []


class RecordingBus:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    async def call(self, topic: str, method: str, **kw: Any) -> Any:
        self.calls.append((topic, method, kw))
        return {"exit_code": 0}


async def test_the_bus_waits_the_exec_timeout_and_30_seconds() -> None:
    bus = RecordingBus()
    out = await ComputeAPI(bus).exec_in_instance(  # type: ignore[arg-type]
        "h1", "u1", argv=["/bin/true"], env={}, stdin_b64=base64.b64encode(b"x").decode(), exec_timeout=100,
        output_limit=10, request_id="req-1")
    assert out == {"exit_code": 0}
    [(topic, method, kw)] = bus.calls
    assert (topic, method, kw["timeout"], kw["exec_timeout"]) == (compute_topic("h1"), "exec_in_instance", 130.0, 100.0)
    assert "exec_in_instance" in AGENT_METHODS
