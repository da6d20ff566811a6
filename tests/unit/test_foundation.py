"""Foundation pieces: settings, bus, host commands, state mapping."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cumulo import conf as conf_mod
from cumulo import host
from cumulo.bus.inproc import InprocBus
from cumulo.compute import states
from cumulo.errors import HostError, NotFound


def test_settings_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("port: 9000\nfake_hosts: 2\n")
    s = conf_mod.load(cfg, env={"CUMULO_PORT": "9100", "CUMULO_CPU_ALLOCATION_RATIO": "2.5"}, fake_hosts=3)
    assert s.port == 9100  # env beats file
    assert s.fake_hosts == 3  # flag beats file
    assert s.cpu_allocation_ratio == 2.5
    assert s.database_url.endswith("cumulo.sqlite")


def test_settings_reject_unknown(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("no_such_setting: 1\n")
    with pytest.raises(ValueError, match="no_such_setting"):
        conf_mod.load(cfg, env={})


class Echo:
    def __init__(self) -> None:
        self.seen: list[Any] = []

    async def hello(self, name: str) -> str:
        return f"hi {name}"

    async def record(self, value: Any) -> None:
        self.seen.append(value)

    async def fail(self) -> None:
        raise NotFound("nothing here")


async def test_bus_cast_call_and_errors() -> None:
    bus = InprocBus()
    echo = Echo()
    bus.serve("t", echo)
    await bus.start()
    try:
        assert await bus.call("t", "hello", name="x") == "hi x"
        payload = {"a": [1, 2]}
        await bus.cast("t", "record", value=payload)
        payload["a"].append(3)  # the message was copied: mutation after cast is invisible
        for _ in range(100):
            if echo.seen:
                break
            await asyncio.sleep(0.01)
        assert echo.seen == [{"a": [1, 2]}]
        with pytest.raises(NotFound, match="nothing here"):
            await bus.call("t", "fail")
        with pytest.raises(Exception, match="no method"):
            await bus.call("t", "_private")
        with pytest.raises(TypeError):
            await bus.cast("t", "record", value=object())  # not JSON: refused at the sender
    finally:
        await bus.stop()


async def test_bus_queues_until_served() -> None:
    bus = InprocBus()
    await bus.start()
    echo = Echo()
    await bus.cast("late", "record", value=1)
    bus.serve("late", echo)
    for _ in range(100):
        if echo.seen:
            break
        await asyncio.sleep(0.01)
    await bus.stop()
    assert echo.seen == [1]


async def test_host_run_argv_and_errors() -> None:
    res = await host.run(["printf", "%s", "a b; rm -rf /"])
    assert res.text == "a b; rm -rf /"  # argv, never a shell
    with pytest.raises(HostError, match="No such file"):
        await host.run(["ls", "/definitely/not/here"])
    res = await host.run(["false"], check=False)
    assert res.returncode == 1
    with pytest.raises(HostError, match="timed out"):
        await host.run(["sleep", "5"], timeout=0.2)


@pytest.mark.parametrize("runner", ["run", "run_to_file"])
async def test_host_command_dies_with_its_cancelled_caller(runner: str, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    argv = ["sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"]
    call = host.run(argv) if runner == "run" else host.run_to_file(argv, str(tmp_path / "out"))
    task = asyncio.ensure_future(call)
    for _ in range(500):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        await asyncio.sleep(0.01)
    pid = int(pidfile.read_text())
    assert Path(f"/proc/{pid}").exists()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not Path(f"/proc/{pid}").exists()  # killed and reaped before the cancellation went on


def test_status_mapping() -> None:
    assert states.status_of(states.ACTIVE, None) == "ACTIVE"
    assert states.status_of(states.ACTIVE, states.REBOOTING_HARD) == "HARD_REBOOT"
    assert states.status_of(states.STOPPED, states.POWERING_ON) == "SHUTOFF"
    assert states.status_of(states.RESIZED, None) == "VERIFY_RESIZE"
    assert states.status_of(states.BUILDING, states.SCHEDULING) == "BUILD"
    pairs = states.filters_for_status("reboot")
    assert (states.ACTIVE, states.REBOOTING, True) in pairs
    assert all(vm == states.ACTIVE for vm, _, _ in pairs)


def test_public_url_for_wildcard_and_ipv6_binds() -> None:
    assert conf_mod.load(env={}, host="0.0.0.0", port=8080).public_url == "http://127.0.0.1:8080"
    assert conf_mod.load(env={}, host="::", port=9).public_url == "http://[::1]:9"
    assert conf_mod.load(env={}, host="::1", port=9).public_url == "http://[::1]:9"
    assert conf_mod.load(env={}, host="127.0.0.2", port=9).public_url == "http://127.0.0.2:9"
