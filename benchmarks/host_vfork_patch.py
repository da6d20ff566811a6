"""A prototype for diagnosis, not used by the cloud: `host.run`/`run_to_file` through subprocess
(vfork) in a thread pool instead of `asyncio.create_subprocess_exec`.

Under uvloop, create_subprocess_exec forks the whole cloud process (libuv uses fork, not vfork):
with ~100 MB resident that blocks the event loop for 4-7 ms per command, and a runc boot runs
five. Load it into a traced cloud to compare:

    BENCH_TRACE_PATCH=benchmarks/host_vfork_patch.py BENCH_LAUNCHER=".venv/bin/python benchmarks/trace_boot.py" \\
        .venv/bin/python benchmarks/boot_container.py
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

_POOL = ThreadPoolExecutor(max_workers=64, thread_name_prefix="host")


def install_host() -> None:
    from cumulo import host
    from cumulo.errors import HostError

    def run_sync(
        argv: list[str], stdin: bytes | None, env: dict[str, str] | None, cwd: str | None, timeout: float
    ) -> tuple[int, bytes, bytes]:
        try:
            p = subprocess.run(  # noqa: S603 - argv list from cumulo.host callers, no shell
                argv, input=stdin, stdin=subprocess.DEVNULL if stdin is None else None, capture_output=True,
                env={**os.environ, **env} if env else None, cwd=cwd, timeout=timeout, check=False,
            )
        except subprocess.TimeoutExpired:
            raise HostError(f"{argv[0]} timed out after {timeout:.0f}s") from None
        return p.returncode, p.stdout, p.stderr

    async def run(
        argv: list[str], *, timeout: float = 60.0, check: bool = True, stdin: bytes | None = None,
        env: dict[str, str] | None = None, cwd: str | None = None,
    ) -> host.Result:
        if not argv or not all(isinstance(a, str) for a in argv):
            raise HostError(f"bad argv: {argv!r}")
        loop = asyncio.get_running_loop()
        code, out, err = await loop.run_in_executor(_POOL, run_sync, argv, stdin, env, cwd, timeout)
        result = host.Result(tuple(argv), code or 0, out, err)
        if check and result.returncode != 0:
            msg = err.decode(errors="replace").strip() or out.decode(errors="replace").strip()
            raise HostError(f"{' '.join(argv[:3])} failed ({result.returncode}): {msg[-2000:]}")
        return result

    def to_file_sync(argv: list[str], output: str, timeout: float) -> int:
        fd = os.open(output, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd)  # noqa: S603 - as above
        finally:
            os.close(fd)
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise HostError(f"{argv[0]} timed out after {timeout:.0f}s") from None

    async def run_to_file(argv: list[str], output: str, *, timeout: float = 60.0) -> int:
        if not argv or not all(isinstance(a, str) for a in argv):
            raise HostError(f"bad argv: {argv!r}")
        return await asyncio.get_running_loop().run_in_executor(_POOL, to_file_sync, argv, output, timeout)

    host.run = run
    host.run_to_file = run_to_file
