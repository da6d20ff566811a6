"""The Exec contract (drivers/base.py) on QEMU: the tiny VM (hw_qemu_guest_agent=yes) runs Debian's
qemu-ga on its virtio-serial port, and the driver's exec_in goes through it (guest-exec): argv
inside the guest with the env given, stdin, exit codes, both outputs, the head+tail bound, a
timeout that kills the command and its children, and InvalidState for a server that does not run.

One guest for the module (TCG: seconds of a whole core per boot). It is started in a module
fixture with an event loop of its own (QEMU is daemonized, so it outlives that loop); each test
drives it with a fresh driver on the same state dir, as a restarted agent would. Every QEMU is
killed at the end by its own pidfile under the module's state dir.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid as uuidlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import _qemu_guest
import pytest

from cumulo.compute.drivers.base import Capability, Exec, FlavorSpec, InstanceSpec, driver_for
from cumulo.compute.drivers.execspec import EXEC_HEAD, ExecRequest
from cumulo.compute.drivers.qemu import QemuDriver, process
from cumulo.errors import DriverError, InvalidState

pytestmark = pytest.mark.skipif(bool(_qemu_guest.QEMU_MISSING), reason=_qemu_guest.QEMU_MISSING or "QEMU here")

FLAVOR = FlavorSpec(vcpus=1, memory_mb=256, root_gb=1)


class Guest:
    def __init__(self, state: Path, spec: InstanceSpec) -> None:
        self.state, self.spec, self.uuid = state, spec, spec.uuid


@pytest.fixture(scope="module")
def guest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    """One tiny VM with the guest agent's channel, up and answering exec."""
    state = tmp_path_factory.mktemp("qemu-exec") / "state"
    image = _qemu_guest.tiny_image(hw_qemu_guest_agent="yes")
    uid = str(uuidlib.uuid4())
    spec = InstanceSpec(uuid=uid, name="exec-vm", hostname="exec-vm", project_id="p", flavor=FLAVOR, image=image)

    async def boot() -> None:
        drv = await _qemu_guest.tcg_driver(state, "exec-host")
        await drv.spawn(spec)

    try:
        asyncio.run(boot())
        yield Guest(state, spec)
    finally:
        async def destroy() -> None:
            await (await _qemu_guest.tcg_driver(state, "exec-host")).destroy(uid)

        try:
            asyncio.run(destroy())
        finally:
            _qemu_guest.kill_under(state)
        assert not process.scan_pids(uid)


@pytest.fixture
async def drv(guest: Guest) -> AsyncIterator[QemuDriver]:
    yield await _qemu_guest.tcg_driver(guest.state, "exec-host")


async def wait_agent(ex: Exec, uuid: str, timeout: float = 240.0) -> None:
    """Until the guest's qemu-ga answers (it starts a moment after the boot; each try waits up to the
    driver's sync timeout, and a loaded CI host may boot the guest slower than that)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            res = await ex.exec_in(uuid, ExecRequest(argv=("/bin/true",), timeout=60))
        except DriverError as exc:
            assert time.monotonic() < deadline, f"the guest agent did not answer within {timeout}s: {exc}"
            continue
        assert res.exit_code == 0, res
        return


def sh(script: str, **kw: object) -> ExecRequest:
    return ExecRequest(argv=("/bin/sh", "-s"), stdin=script.encode(), env={"PATH": "/bin"}, **kw)  # type: ignore[arg-type]


async def test_exec_runs_in_the_guest_with_stdin_env_and_exit_code(drv: QemuDriver, guest: Guest) -> None:
    assert Capability.EXEC in drv.info.capabilities
    ex = driver_for(drv, Capability.EXEC)
    rec = drv.read_record(drv.dir / guest.uuid)
    assert rec["vm"]["guest_agent"] is True and rec["image_properties"]["hw_qemu_guest_agent"] == "yes"
    argv = rec["argv"]
    assert "virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0" in argv
    assert "virtio-serial-device,id=vser0" in argv  # the tiny VM boots on microvm here

    await wait_agent(ex, guest.uuid)  # the guest booted, and its qemu-ga comes up a moment later
    res = await ex.exec_in(guest.uuid, ExecRequest(
        argv=("/bin/sh", "-c", 'hostname; pwd; echo "$GREETING"; cat; echo to-err >&2; exit 7'),
        env={"GREETING": "hi there; $(not expanded)", "PATH": "/bin"}, stdin=b"from stdin\n", timeout=60))
    assert (res.exit_code, res.signal, res.timed_out) == (7, None, False)
    assert res.stdout == b"exec-vm\n/\nhi there; $(not expanded)\nfrom stdin\n"
    assert res.stderr == b"to-err\n"

    # qemu-ga starts at nice 19 (it takes what the boot leaves idle) and is back at 0 once /init is done:
    # a command it starts then inherits nice 0 (field 19 of /proc/self/stat).
    deadline = time.monotonic() + 60
    while (nice := (await ex.exec_in(guest.uuid, ExecRequest(
            argv=("/bin/cut", "-d", " ", "-f19", "/proc/self/stat"), timeout=60))).stdout) != b"0\n":
        assert time.monotonic() < deadline, nice
        await asyncio.sleep(0.2)

    ok = await ex.exec_in(guest.uuid, sh("touch /tmp/made-by-exec && ls /tmp/made-by-exec\n", timeout=60))
    assert (ok.exit_code, ok.stdout) == (0, b"/tmp/made-by-exec\n")
    assert not Path("/tmp/made-by-exec").exists()  # inside the guest, not on the host

    # A payload on stdin (PaaS artifacts go in this way): 2 MiB, byte for byte.
    payload = os.urandom(2 << 20)
    got = await ex.exec_in(guest.uuid, ExecRequest(argv=("/bin/busybox", "sha256sum"), stdin=payload, timeout=120))
    assert (got.exit_code, got.stdout) == (0, hashlib.sha256(payload).hexdigest().encode() + b"  -\n")

    # 200 KiB on each stream, limit 16 KiB: the first 4 KiB and the last 12 KiB.
    big = await ex.exec_in(guest.uuid, sh("seq 1 40000; seq 1 40000 >&2\n", output_limit=16384, timeout=120))
    full = b"".join(b"%d\n" % i for i in range(1, 40001))
    assert big.exit_code == 0 and big.stdout_truncated and big.stderr_truncated
    assert big.stdout == big.stderr == full[:EXEC_HEAD] + full[-(16384 - EXEC_HEAD):]

    with pytest.raises(DriverError, match="guest-exec"):
        await ex.exec_in(guest.uuid, ExecRequest(argv=("/no/such/binary",), timeout=30))


async def test_timeout_kills_the_command_and_its_children(drv: QemuDriver, guest: Guest) -> None:
    ex = driver_for(drv, Capability.EXEC)
    res = await ex.exec_in(guest.uuid, sh("echo begun; sleep 1234 & sleep 1235; echo never\n", timeout=3))
    assert res.timed_out and res.exit_code is None and res.signal == 9
    assert res.stdout == b"begun\n"
    deadline = time.monotonic() + 60
    while b"sleep 123" in (ps := (await ex.exec_in(guest.uuid, sh("ps -o args\n", timeout=60))).stdout):
        assert time.monotonic() < deadline, ps
        await asyncio.sleep(0.2)
    assert (await ex.exec_in(guest.uuid, sh("exit 0\n", timeout=60))).exit_code == 0  # the agent still serves


async def test_a_server_that_does_not_run_is_invalid_state_and_a_restart_keeps_the_channel(
        drv: QemuDriver, guest: Guest, tmp_path: Path) -> None:
    """Last in the module: it stops and starts the guest again."""
    ex = driver_for(drv, Capability.EXEC)
    await drv.pause(guest.uuid)
    with pytest.raises(InvalidState, match="not running"):
        await ex.exec_in(guest.uuid, sh("true\n"))
    await drv.unpause(guest.uuid)
    assert (await ex.exec_in(guest.uuid, sh("touch /run/before-restart\n", timeout=60))).exit_code == 0
    snap = await drv.snapshot(guest.uuid, str(tmp_path))  # a template image boots with the channel too
    assert snap.properties["hw_qemu_guest_agent"] == "yes"
    await drv.power_off(guest.uuid, timeout=5)
    with pytest.raises(InvalidState, match="not running"):
        await ex.exec_in(guest.uuid, sh("true\n"))
    with pytest.raises(InvalidState, match="does not exist"):
        await ex.exec_in("00000000-0000-0000-0000-000000000000", sh("true\n"))
    await drv.power_on(guest.spec)  # from the record: the channel is there again, and a new qemu-ga answers
    await wait_agent(ex, guest.uuid)
    res = await ex.exec_in(guest.uuid, sh("ls /run/before-restart\n", timeout=60))
    assert res.exit_code != 0 and b"No such file" in res.stderr  # a new boot (RAM root) answered
