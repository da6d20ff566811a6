"""Memory under hostile request bodies (issue 8, section 1, item 3).

Starts `cumulo up` (fake driver) and sends N parallel chunked bodies (no Content-Length) of
SIZE MiB each to the unauthenticated `POST /identity/v3/auth/tokens`, 1 MiB a chunk, as fast as the
server takes them; each client stops sending once it has the answer. Prints the server's resident
memory before and after, its peak (VmHWM, which includes start-up), the status each client got and
how many MiB each managed to send before it. A report, never an assertion.

    .venv/bin/python benchmarks/hostile_bodies.py [--clients 5] [--size-mb 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from _harness import running_cloud

CHUNK = b"x" * (1 << 20)


def memory_mb(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) // 1024
    return out


async def hostile_client(port: int, size_mb: int) -> tuple[str, int]:
    """(status line, MiB sent before the answer came)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /identity/v3/auth/tokens HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    answer = asyncio.create_task(reader.readline())
    sent = 0
    try:
        while sent < size_mb and not answer.done():
            writer.write(b"%x\r\n" % len(CHUNK) + CHUNK + b"\r\n")
            await writer.drain()
            sent += 1
        if not answer.done():
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except OSError:
        pass  # the server closed the connection after answering
    try:
        status = (await asyncio.wait_for(answer, 120)).decode(errors="replace").strip()
    except (TimeoutError, OSError) as exc:
        status = f"no answer: {exc!r}"
    writer.close()
    return status, sent


async def run(clients: int = 5, size_mb: int = 200) -> dict[str, Any]:
    async with running_cloud() as cloud:
        assert cloud.proc is not None
        await asyncio.sleep(1.0)
        before = memory_mb(cloud.proc.pid)
        t0 = time.perf_counter()
        results = await asyncio.gather(*(hostile_client(cloud.port, size_mb) for _ in range(clients)))
        elapsed = time.perf_counter() - t0
        after = memory_mb(cloud.proc.pid)
    return {
        "clients": clients,
        "body_mb": size_mb,
        "rss_before_mb": before["VmRSS"],
        "rss_after_mb": after["VmRSS"],
        "peak_rss_mb": after["VmHWM"],
        "seconds": round(elapsed, 2),
        "answers": sorted({status for status, _ in results}),
        "mb_sent_before_answer": [sent for _, sent in results],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=5)
    ap.add_argument("--size-mb", type=int, default=200)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(run(args.clients, args.size_mb)), indent=2))


if __name__ == "__main__":
    main()
