"""host.run_bounded: argv only, stdin then EOF, both pipes read in chunks and kept to a bound (head
and tail), a non-zero exit and a timeout are results, a cancelled caller's command is reaped."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from cumulo import host
from cumulo.errors import HostError

PY = sys.executable


async def test_exit_code_stdout_stderr_and_stdin() -> None:
    code = "import sys; d = sys.stdin.read(); print(d.upper()); print('oops', file=sys.stderr); sys.exit(3)"
    res = await host.run_bounded([PY, "-c", code], stdin=b"hello", timeout=30)
    assert (res.returncode, res.stdout, res.stderr, res.timed_out) == (3, b"HELLO\n", b"oops\n", False)
    assert not res.stdout_truncated and not res.stderr_truncated


async def test_output_beyond_the_limit_keeps_head_and_tail() -> None:
    # 1 MiB on each pipe, in order, so head and tail are recognisable.
    code = ("import sys\nfor i in range(16384):\n"
            "    line = b'%063d\\n' % i\n    sys.stdout.buffer.write(line); sys.stderr.buffer.write(line)")
    res = await host.run_bounded([PY, "-c", code], timeout=60, limit=8192, head=4096)
    full = b"".join(b"%063d\n" % i for i in range(16384))
    for data, cut in ((res.stdout, res.stdout_truncated), (res.stderr, res.stderr_truncated)):
        assert cut and len(data) == 8192
        assert data == full[:4096] + full[-4096:]
    assert res.returncode == 0


async def test_a_big_stdin_the_command_does_not_read_is_no_error() -> None:
    res = await host.run_bounded([PY, "-c", "pass"], stdin=b"x" * (4 << 20), timeout=30)
    assert res.returncode == 0


async def test_timeout_runs_the_hook_then_kills_and_keeps_the_output() -> None:
    called: list[bool] = []

    async def hook() -> None:
        called.append(True)

    code = "import sys, time; print('started', flush=True); time.sleep(600)"
    res = await host.run_bounded([PY, "-u", "-c", code], timeout=2, on_timeout=hook, grace=0.5)
    assert res.timed_out and called == [True]
    assert res.returncode == -9 and res.stdout == b"started\n"


async def test_cancel_kills_and_reaps(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    code = f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    task = asyncio.ensure_future(host.run_bounded([PY, "-c", code], timeout=600))
    deadline = asyncio.get_running_loop().time() + 30
    while not (pidfile.exists() and pidfile.read_text()):
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pid = int(pidfile.read_text())
    assert not host.pid_alive(pid)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped


async def test_bad_argv_is_refused() -> None:
    with pytest.raises(HostError, match="bad argv"):
        await host.run_bounded([])
    with pytest.raises(HostError, match="bad argv"):
        await host.run_bounded(["/bin/echo", 3])  # type: ignore[list-item]
