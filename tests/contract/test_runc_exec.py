"""The Exec contract (drivers/base.py) on runc, with a real busybox container: argv runs inside the
container with the env given, stdin, exit codes, both outputs, the head+tail bound, a timeout that
kills every process of the exec, and InvalidState for a server that does not run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import test_driver_contract as dc
from test_runc_driver import (  # noqa: F401  # runc_driver: a fixture
    RUNC_MISSING,
    runc_driver,
    runc_exec,
    spec_for,
)

from cumulo.compute.drivers.base import Capability, Driver, Exec, driver_for
from cumulo.compute.drivers.execspec import EXEC_HEAD, ExecRequest
from cumulo.compute.drivers.runc import RuncDriver
from cumulo.errors import DriverError, InvalidState

driver, settings = dc.driver, dc.settings  # the driver contract's fixtures
# The drivers that declare EXEC (QEMU joins when its guest-agent exec lands): no QEMU init for nothing.
EXEC_DRIVERS = ("fake", "runc")


@pytest.fixture(params=[dc._param(c) for c in dc.CASES if c.name in EXEC_DRIVERS])
def case(request: pytest.FixtureRequest) -> dc.DriverCase:
    return request.param  # type: ignore[no-any-return]


RUNC_ONLY = pytest.mark.skipif(bool(RUNC_MISSING), reason=RUNC_MISSING or "runc present")


async def test_every_exec_driver_runs_and_refuses_a_stopped_server(case: dc.DriverCase, driver: Driver,
                                                                   tmp_path: Path) -> None:
    """The part of the contract every driver that declares EXEC shares (fake, runc; QEMU later)."""
    dc.needs(driver, Capability.EXEC)
    assert isinstance(driver, Exec)
    spec = dc.make_spec(case, tmp_path)
    await driver.spawn(spec)
    res = await driver.exec_in(spec.uuid, ExecRequest(argv=("/bin/true",), timeout=30))
    assert (res.exit_code, res.timed_out, res.stdout_truncated) == (0, False, False)
    await driver.power_off(spec.uuid)  # type: ignore[attr-defined]
    with pytest.raises(InvalidState):
        await driver.exec_in(spec.uuid, ExecRequest(argv=("/bin/true",), timeout=30))


def sh(script: str, **kw: object) -> ExecRequest:
    return ExecRequest(argv=("/bin/sh", "-s"), stdin=script.encode(), env={"PATH": "/bin"}, **kw)  # type: ignore[arg-type]


@RUNC_ONLY
async def test_exec_runs_in_the_container_with_stdin_env_and_exit_code(runc_driver: RuncDriver, tmp_path: Path) -> None:  # noqa: F811
    spec = spec_for(tmp_path, "ex1")
    await runc_driver.spawn(spec)
    ex = driver_for(runc_driver, Capability.EXEC)
    assert Capability.EXEC in runc_driver.info.capabilities

    res = await ex.exec_in(spec.uuid, ExecRequest(
        argv=("/bin/sh", "-c", 'hostname; pwd; echo "$GREETING"; cat; echo to-err >&2; exit 7'),
        env={"GREETING": "hi there; $(not expanded)"}, stdin=b"from stdin\n", timeout=30))
    assert (res.exit_code, res.signal, res.timed_out) == (7, None, False)
    assert res.stdout == b"ex1\n/\nhi there; $(not expanded)\nfrom stdin\n"
    assert res.stderr == b"to-err\n"

    ok = await ex.exec_in(spec.uuid, sh("touch /tmp/made-by-exec\n"))
    assert ok.exit_code == 0
    assert runc_exec(runc_driver, spec.uuid, "ls", "/tmp/made-by-exec") == "/tmp/made-by-exec"  # inside, not on the host
    assert not Path("/tmp/made-by-exec").exists()

    # 200 KiB on each stream, limit 16 KiB: the first 4 KiB and the last 12 KiB.
    big = await ex.exec_in(spec.uuid, sh("seq 1 40000; seq 1 40000 >&2\n", output_limit=16384))
    full = b"".join(b"%d\n" % i for i in range(1, 40001))
    assert big.exit_code == 0 and big.stdout_truncated and big.stderr_truncated
    assert big.stdout == big.stderr == full[:EXEC_HEAD] + full[-(16384 - EXEC_HEAD):]

    with pytest.raises(DriverError, match="runc exec"):
        await ex.exec_in(spec.uuid, ExecRequest(argv=("/no/such/binary",), timeout=30))


@RUNC_ONLY
async def test_timeout_kills_every_process_of_the_exec(runc_driver: RuncDriver, tmp_path: Path) -> None:  # noqa: F811
    spec = spec_for(tmp_path, "ex2")
    await runc_driver.spawn(spec)
    ex = driver_for(runc_driver, Capability.EXEC)
    # A shell with a child that would outlive it; the marker shows the output so far is kept.
    res = await ex.exec_in(spec.uuid, sh("echo begun; sleep 1234 & sleep 1235; echo never\n", timeout=2))
    assert res.timed_out and res.exit_code is None and res.signal == 9
    assert res.stdout == b"begun\n"
    deadline = asyncio.get_running_loop().time() + 30
    while "sleep 123" in (ps := runc_exec(runc_driver, spec.uuid, "ps", "-o", "args")):
        assert asyncio.get_running_loop().time() < deadline, ps
        await asyncio.sleep(0.1)
    assert list(runc_driver.instance_dir(spec.uuid).glob("exec-*.pid")) == []  # the pid file went too
    assert (await ex.exec_in(spec.uuid, sh("exit 0\n", timeout=30))).exit_code == 0  # the server still serves


@RUNC_ONLY
async def test_a_server_that_does_not_run_is_invalid_state(runc_driver: RuncDriver, tmp_path: Path) -> None:  # noqa: F811
    spec = spec_for(tmp_path, "ex3")
    await runc_driver.spawn(spec)
    ex = driver_for(runc_driver, Capability.EXEC)
    await runc_driver.pause(spec.uuid)
    with pytest.raises(InvalidState, match="not running"):
        await ex.exec_in(spec.uuid, sh("true\n"))
    await runc_driver.unpause(spec.uuid)
    await runc_driver.power_off(spec.uuid)
    with pytest.raises(InvalidState, match="not running"):
        await ex.exec_in(spec.uuid, sh("true\n"))
    with pytest.raises(InvalidState, match="does not exist"):
        await ex.exec_in("00000000-0000-0000-0000-000000000000", sh("true\n"))
