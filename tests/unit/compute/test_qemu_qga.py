"""The QEMU guest agent client (drivers/qemu/qga.py) against a fake qemu-ga on a unix socket: the
sync that skips what an earlier client left on the channel, guest-exec arguments, status polling,
the timeout's kill of the process tree, truncation; the QEMU driver's exec refusals and the
channel on the command line; the tiny VM's ELF reader (guestagent.py)."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from cumulo import conf as conf_mod
from cumulo.compute.drivers import load_driver
from cumulo.compute.drivers.execspec import EXEC_HEAD, ExecRequest
from cumulo.compute.drivers.qemu import QemuDriver, qga
from cumulo.compute.drivers.qemu.process import Layout, VmConfig, build_argv
from cumulo.errors import DriverError, Invalid, InvalidState
from cumulo.image.demo.tinyvm import guestagent


class FakeQga:
    """qemu-ga's side of the channel, scripted: `stale` bytes are written to each new client first
    (answers meant for an earlier one, a stale sentinel and sync answer); the first `ignore_syncs`
    syncs get no answer (the agent is not up yet); a process runs for `polls` status calls, or until
    the kill-tree exec names it."""

    def __init__(self) -> None:
        self.stale = b'{"return": {"pid": 4}}\n\xff{"return": 1}\ngarbage\xfe\n'
        self.ignore_syncs = 0
        self.polls = 2
        self.never_exits = False
        self.status: dict[str, Any] = {"exited": True, "exitcode": 0}
        self.commands: list[dict[str, Any]] = []
        self.killed: list[int] = []
        self.exec_error: str | None = None
        self._left: dict[int, int] = {}

    def answer(self, cmd: dict[str, Any]) -> bytes | None:
        name, args = cmd.get("execute"), cmd.get("arguments") or {}
        self.commands.append(cmd)
        if name == "guest-sync-delimited":
            if self.ignore_syncs > 0:
                self.ignore_syncs -= 1
                return None
            return b"\xff" + json.dumps({"return": args["id"]}).encode() + b"\n"
        if name == "guest-exec":
            if args.get("arg", [])[2:3] == ["kill-tree"]:
                self.killed.append(int(args["arg"][3]))
                return b'{"return": {"pid": 999}}\n'
            if self.exec_error:
                return json.dumps({"error": {"class": "GenericError", "desc": self.exec_error}}).encode() + b"\n"
            pid = 100 + len(self._left)
            self._left[pid] = self.polls
            return json.dumps({"return": {"pid": pid}}).encode() + b"\n"
        if name == "guest-exec-status":
            pid = args["pid"]
            if pid == 999:  # the kill-tree shell itself
                return b'{"return": {"exited": true, "exitcode": 0}}\n'
            if pid in self.killed:
                return json.dumps({"return": {"exited": True, "signal": 9, "out-data": base64.b64encode(b"so far\n").decode()}}).encode() + b"\n"
            if self.never_exits or self._left[pid] > 0:
                self._left[pid] -= 1
                return b'{"return": {"exited": false}}\n'
            return json.dumps({"return": self.status}).encode() + b"\n"
        return json.dumps({"error": {"class": "CommandNotFound", "desc": name}}).encode() + b"\n"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(self.stale)
        buf = b""
        try:
            while chunk := await reader.read(65536):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    line = line.split(b"\xff")[-1]  # qemu-ga's parser starts over at 0xFF
                    if not line.strip():
                        continue
                    out = self.answer(json.loads(line))
                    if out is not None:
                        writer.write(out)
                        await writer.drain()
        finally:
            writer.close()


@pytest.fixture
def sockdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="qga-", dir="/tmp"))  # short: a unix socket path holds 107 bytes
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
async def fake(sockdir: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[FakeQga, Path]]:
    monkeypatch.setattr(qga, "POLL_FIRST", 0.01)
    monkeypatch.setattr(qga, "POLL_MAX", 0.02)
    monkeypatch.setattr(qga, "SYNC_TRY", 0.2)
    agent = FakeQga()
    path = sockdir / "qga.sock"
    server = await asyncio.start_unix_server(agent.serve, path=str(path))
    try:
        yield agent, path
    finally:
        server.close()
        await server.wait_closed()


async def test_run_skips_stale_output_then_sends_the_command_and_polls(fake: tuple[FakeQga, Path]) -> None:
    agent, path = fake
    agent.status = {"exited": True, "exitcode": 7, "out-data": base64.b64encode(b"out\n").decode(),
                    "err-data": base64.b64encode(b"err\n").decode()}
    req = ExecRequest(argv=("/bin/sh", "-s"), env={"A": "1 2"}, stdin=b"echo hi\n", timeout=10)
    res = await qga.run(path, req, sync_timeout=5)
    assert (res.exit_code, res.signal, res.timed_out, res.stdout, res.stderr) == (7, None, False, b"out\n", b"err\n")
    assert not res.stdout_truncated and not res.stderr_truncated
    sync, exe, *statuses = agent.commands
    assert sync["execute"] == "guest-sync-delimited" and sync["arguments"]["id"] != 1  # a fresh id, not the stale one
    assert exe == {"execute": "guest-exec", "arguments": {
        "path": "/bin/sh", "arg": ["-s"], "env": ["A=1 2"], "capture-output": True,
        "input-data": base64.b64encode(b"echo hi\n").decode()}}
    assert [c["execute"] for c in statuses] == ["guest-exec-status"] * 3  # two "not yet", then exited


@pytest.mark.parametrize("status", [{"exited": True, "exitcode": "7"}, {"exited": True, "exitcode": 1 << 70},
                                    {"exited": True, "signal": [9]}, {"exited": True, "exitcode": True}])
async def test_a_malformed_status_from_the_guest_is_a_driver_error(fake: tuple[FakeQga, Path],
                                                                   status: dict[str, Any]) -> None:
    """The guest (and its agent) is the tenant's: what it answers is checked, never trusted."""
    agent, path = fake
    agent.status = status
    with pytest.raises(DriverError, match="not a whole number"):
        await qga.run(path, ExecRequest(argv=("/bin/true",), timeout=5), sync_timeout=5)


async def test_sync_is_sent_again_until_the_agent_answers(fake: tuple[FakeQga, Path]) -> None:
    agent, path = fake
    agent.ignore_syncs = 2  # qemu-ga is not up yet for the first two
    res = await qga.run(path, ExecRequest(argv=("/bin/true",), timeout=5), sync_timeout=5)
    assert res.exit_code == 0
    syncs = [c["arguments"]["id"] for c in agent.commands if c["execute"] == "guest-sync-delimited"]
    assert len(syncs) == 3 and len(set(syncs)) == 3
    assert "env" not in agent.commands[3]["arguments"] and "input-data" not in agent.commands[3]["arguments"]

    agent.ignore_syncs = 1000
    with pytest.raises(qga.QgaUnavailable, match="does not answer"):
        await qga.run(path, ExecRequest(argv=("/bin/true",), timeout=5), sync_timeout=0.5)


async def test_timeout_kills_the_process_tree_and_keeps_the_output_so_far(fake: tuple[FakeQga, Path]) -> None:
    agent, path = fake
    agent.never_exits = True
    res = await qga.run(path, ExecRequest(argv=("/bin/sleep", "100"), timeout=0.3), sync_timeout=5)
    assert (res.timed_out, res.exit_code, res.signal, res.stdout) == (True, None, 9, b"so far\n")
    assert agent.killed == [100]
    kill = next(c for c in agent.commands if c["execute"] == "guest-exec" and c["arguments"]["path"] == "/bin/sh")
    assert kill["arguments"]["arg"] == ["-c", qga.KILL_TREE, "kill-tree", "100"]
    assert {"execute": "guest-exec-status", "arguments": {"pid": 999}} in agent.commands  # qemu-ga forgets it


async def test_a_cancelled_exec_leaves_its_command_running(fake: tuple[FakeQga, Path]) -> None:
    """As a cancelled `runc exec` does: the PaaS recipes resume by their own lock in the guest."""
    agent, path = fake
    agent.never_exits = True
    task = asyncio.create_task(qga.run(path, ExecRequest(argv=("/bin/sleep", "100"), timeout=60), sync_timeout=5))
    while sum(c["execute"] == "guest-exec-status" for c in agent.commands) < 2:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert agent.killed == []
    assert [c["arguments"]["path"] for c in agent.commands if c["execute"] == "guest-exec"] == ["/bin/sleep"]


async def test_output_bound_signal_and_errors(fake: tuple[FakeQga, Path]) -> None:
    agent, path = fake
    data = b"".join(b"%d\n" % i for i in range(1, 40001))
    agent.status = {"exited": True, "exitcode": 0, "out-data": base64.b64encode(data).decode(),
                    "err-data": base64.b64encode(b"e").decode(), "err-truncated": True}
    res = await qga.run(path, ExecRequest(argv=("/bin/seq", "40000"), timeout=5, output_limit=16384), sync_timeout=5)
    assert res.stdout == data[:EXEC_HEAD] + data[-(16384 - EXEC_HEAD):] and res.stdout_truncated
    assert res.stderr == b"e" and res.stderr_truncated  # qemu-ga itself cut it (its 16 MiB cap)

    agent.status = {"exited": True, "signal": 15}
    res = await qga.run(path, ExecRequest(argv=("/bin/true",), timeout=5), sync_timeout=5)
    assert (res.exit_code, res.signal, res.timed_out) == (None, 15, False)

    agent.exec_error = "Failed to execute child process “/nope” (No such file or directory)"
    with pytest.raises(qga.QgaError, match="guest-exec failed: GenericError: Failed to execute"):
        await qga.run(path, ExecRequest(argv=("/nope",), timeout=5), sync_timeout=5)


# -- the driver's side -------------------------------------------------------------------------------


@pytest.fixture
def driver(tmp_path: Path) -> QemuDriver:
    drv = load_driver("qemu", conf_mod.load(env={}, state_dir=tmp_path / "state"), "h", local=True)
    assert isinstance(drv, QemuDriver)
    return drv


async def test_exec_refuses_a_missing_server_and_one_without_the_channel(driver: QemuDriver) -> None:
    req = ExecRequest(argv=("/bin/true",), timeout=5)
    with pytest.raises(InvalidState, match="does not exist"):
        await driver.exec_in("6f1c1f0e-0000-4000-8000-000000000001", req)
    uid = "6f1c1f0e-0000-4000-8000-000000000002"
    idir = driver.dir / uid
    idir.mkdir(parents=True)
    (idir / "instance.json").write_text(json.dumps({"uuid": uid, "vm": VmConfig(256, 1, "tcg").to_json()}))
    with pytest.raises(InvalidState, match="no guest agent channel"):
        await driver.exec_in(uid, req)
    (idir / "instance.json").write_text(json.dumps({"uuid": uid, "vm": {**VmConfig(256, 1, "tcg").to_json(),
                                                                        "guest_agent": True}}))
    with pytest.raises(InvalidState, match="not running"):  # no QEMU runs for it
        await driver.exec_in(uid, req)
    with pytest.raises(Invalid, match="needs a command"):
        await driver.exec_in(uid, ExecRequest(argv=("",), timeout=5))


@pytest.mark.parametrize(("machine", "bus"), [("q35", "virtio-serial-pci"), ("microvm", "virtio-serial-device")])
def test_the_channel_is_on_the_command_line_only_when_asked(tmp_path: Path, machine: str, bus: str) -> None:
    layout = Layout(tmp_path / "6f1c1f0e-0000-4000-8000-000000000003")
    plain = build_argv(layout, VmConfig(256, 1, "tcg", machine=machine))
    assert "qga0" not in " ".join(plain)
    argv = build_argv(layout, VmConfig(256, 1, "tcg", machine=machine, guest_agent=True))
    extra = [a for a in argv if a not in plain]
    assert extra == ["socket,id=qga0,path=qga.sock,server=on,wait=off", f"{bus},id=vser0",
                     "virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0"]
    assert VmConfig.from_json(VmConfig(256, 1, "tcg", guest_agent=True).to_json()).guest_agent


# -- the tiny VM's qemu-ga: DT_NEEDED read in Python ----------------------------------------------------


def test_elf_needed_and_closure_of_a_host_binary() -> None:
    data = Path("/bin/true").resolve().read_bytes()
    assert guestagent.elf_interpreter(data) == "/lib64/ld-linux-x86-64.so.2"
    assert "libc.so.6" in guestagent.elf_needed(data)
    closure = guestagent.library_closure(data)
    assert {"libc.so.6", "ld-linux-x86-64.so.2"} <= set(closure) and all(p.is_file() for p in closure.values())
    assert guestagent.elf_needed(closure["libc.so.6"].read_bytes()) == ["ld-linux-x86-64.so.2"]
    with pytest.raises(ValueError, match="ELF64"):
        guestagent.elf_needed(b"#!/bin/sh\n" + b"\0" * 64)
    with pytest.raises(guestagent.GuestAgentUnavailable, match="libnot-there"):
        guestagent.find_library("libnot-there.so.9")


def test_the_initramfs_holds_qemu_ga_its_libraries_and_the_blocked_rpcs(tmp_path: Path) -> None:
    from cumulo.image.demo.tinyvm import initramfs
    from cumulo.image.demo.tinyvm.kernel import Kernel

    busybox = Path("/bin/busybox")
    if not busybox.is_file():
        pytest.skip("busybox-static not installed")
    wanted = initramfs.STAGE1_MODULES + initramfs.VFAT_MODULES + initramfs.STAGE2_MODULES
    (tmp_path / "modules").mkdir()
    for m in wanted:
        (tmp_path / "modules" / f"{m}.ko").write_bytes(b"\x7fELF" + m.encode())
    kernel = Kernel("p", "1", "6.1.0-test", tmp_path, {m: [] for m in wanted})
    agent = guestagent.GuestAgent("qemu-guest-agent", "1", Path("/bin/true").resolve())  # any dynamic ELF
    entries = {e.path: e for e in initramfs.initramfs_entries(kernel, busybox, agent)}
    assert "virtio_console" in initramfs.STAGE1_MODULES and "lib/modules/6.1.0-test/virtio_console.ko" in entries
    assert entries["bin/qemu-ga"].data == agent.binary.read_bytes()
    assert "lib64/ld-linux-x86-64.so.2" in entries and "lib/x86_64-linux-gnu/libc.so.6" in entries
    init = entries["init"].data.decode()
    assert "@QGA_BLOCK@" not in init
    assert "-b " + ",".join(guestagent.BLOCKED_RPCS) in init and "guest-file-read" in guestagent.BLOCKED_RPCS
    assert "bin/qemu-ga" not in {e.path for e in initramfs.initramfs_entries(kernel, busybox)}
