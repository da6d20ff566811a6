"""The exec capability's pieces that need no container: the output bound of drivers/base.py and the
fake driver's exec_in (records requests, exit 0 or the CUMULO_FAKE_EXIT code, InvalidState when
the server does not run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cumulo.compute.drivers.base import Capability, FlavorSpec, InstanceSpec, driver_for
from cumulo.compute.drivers.execspec import EXEC_HEAD, ExecRequest, ExecResult, bound_output
from cumulo.compute.drivers.fake import FakeDriver
from cumulo.conf import load
from cumulo.errors import Invalid, InvalidState


def test_bound_output_keeps_the_head_and_the_tail() -> None:
    data = bytes(range(256)) * 400  # 102400 bytes
    kept, cut = bound_output(data, 65536)
    assert cut and len(kept) == 65536
    assert kept[:EXEC_HEAD] == data[:EXEC_HEAD]
    assert kept[EXEC_HEAD:] == data[-(65536 - EXEC_HEAD):]
    assert bound_output(b"short", 65536) == (b"short", False)
    small, cut = bound_output(b"a" * 10 + b"b" * 10, 10)
    assert cut and small == b"aaaaabbbbb"


@pytest.mark.parametrize(("req", "says"), [
    (ExecRequest(argv=()), "needs a command"),
    (ExecRequest(argv=("",)), "needs a command"),
    (ExecRequest(argv=("/bin/sh", "a\0b")), "NUL"),
    (ExecRequest(argv=("/bin/sh",), env={"A=B": "x"}), "'A=B'"),
    (ExecRequest(argv=("/bin/sh",), env={"A": "x\0"}), "'A'"),
    (ExecRequest(argv=("/bin/sh",), timeout=0), "positive timeout"),
    (ExecRequest(argv=("/bin/sh",), output_limit=-1), "output limit"),
])
def test_an_exec_request_no_guest_can_carry_is_invalid(req: ExecRequest, says: str) -> None:
    with pytest.raises(Invalid, match=says):
        req.check()


def test_exec_result_round_trips_as_json_primitives() -> None:
    res = ExecResult(exit_code=None, signal=9, stdout=b"out", stderr=b"err", stdout_truncated=True,
                     timed_out=True, seconds=1.5)
    assert ExecResult.from_dict(res.to_dict()) == res


async def test_fake_exec_records_and_answers_the_asked_exit(tmp_path: Path) -> None:
    drv = FakeDriver(load(env={}, state_dir=tmp_path), "h1")
    spec = InstanceSpec(uuid="u1", name="s", hostname="s", project_id="p",
                        flavor=FlavorSpec(vcpus=1, memory_mb=64, root_gb=1), image=None)
    await drv.spawn(spec)
    ex = driver_for(drv, Capability.EXEC)
    req = ExecRequest(argv=("/bin/sh", "-s"), stdin=b"echo hi\n", env={"PATH": "/bin"}, timeout=5)
    res = await ex.exec_in("u1", req)
    assert (res.exit_code, res.timed_out) == (0, False)
    failing = ExecRequest(argv=("/bin/true",), env={"CUMULO_FAKE_EXIT": "3"})
    assert (await ex.exec_in("u1", failing)).exit_code == 3
    assert drv.exec_requests == [("u1", req), ("u1", failing)]
    await drv.power_off("u1")
    with pytest.raises(InvalidState, match="not running"):
        await ex.exec_in("u1", req)
    with pytest.raises(InvalidState, match="does not exist"):
        await ex.exec_in("nope", req)
    assert len(drv.exec_requests) == 2
