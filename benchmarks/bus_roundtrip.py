"""The bus alone, in-process against RabbitMQ, in one run: a call's round trip (sequential, p50 and
p90), calls/s with 32 in flight, and casts/s (one sender awaiting each cast: the broker's confirm;
and 16 senders at once), each from the first send until the consumer has handled the last.

    .venv/bin/python benchmarks/bus_roundtrip.py [--url amqp://...] [--calls 1000] [--casts 5000]

Without --url (or CUMULO_TEST_TRANSPORT_URL) it starts a RabbitMQ node of its own (Debian's
package, scripts/services.py; needs root), in a vhost-less temp dir, and stops it at the end.
Each run uses topics of its own. No cloud: the transports only. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import secrets
import socket
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from cumulo.bus.transports import make_bus

ROOT = Path(__file__).resolve().parents[1]


class Counter:
    def __init__(self) -> None:
        self.n = 0
        self.target = 0
        self.done = asyncio.Event()

    async def echo(self, value: int) -> int:
        return value

    async def tick(self, i: int) -> None:
        self.n += 1
        if self.n >= self.target:
            self.done.set()


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _own_node() -> tuple[Any, Path, str]:
    for _ in range(50):
        port = 40000 + secrets.randbelow(9000)
        if all(_free(p) for p in (port, port + 1, port + 2)):
            break
    os.environ["CUMULO_TEST_AMQP_PORT"] = str(port)
    spec = importlib.util.spec_from_file_location("bench_services", ROOT / "scripts" / "services.py")
    assert spec is not None and spec.loader is not None
    services = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(services)
    root = Path(f"/tmp/cumulo-bench-bus-{port}")
    root.mkdir(mode=0o711)
    try:
        url = services.start_rabbitmq(root, secrets.token_urlsafe(12))
    except BaseException:
        services.stop(root)
        raise
    return services, root, url


async def measure(transport: str, calls: int, casts: int) -> dict[str, float]:
    server, client = make_bus(transport), make_bus(transport)
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    counter = Counter()
    server.serve(topic, counter)
    await server.start()
    if client is not server and transport != "inproc":
        await client.start()
    else:
        client = server  # in process: one bus is both sides
    await server.ready()
    out: dict[str, float] = {}
    try:
        for _ in range(50):  # warm-up
            await client.call(topic, "echo", value=0)
        lat = []
        for i in range(calls):
            t = time.perf_counter()
            await client.call(topic, "echo", value=i)
            lat.append(time.perf_counter() - t)
        out["call p50 ms"] = statistics.median(lat) * 1000
        out["call p90 ms"] = statistics.quantiles(lat, n=10)[-1] * 1000

        sem = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            async with sem:
                await client.call(topic, "echo", value=i)

        t = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(calls)))
        out["calls/s (32 in flight)"] = calls / (time.perf_counter() - t)

        for label, senders in (("casts/s (1 sender)", 1), ("casts/s (16 senders)", 16)):
            counter.n, counter.target = 0, casts
            counter.done.clear()

            async def send(k: int, senders: int = senders) -> None:
                for i in range(k, casts, senders):
                    await client.cast(topic, "tick", i=i)

            t = time.perf_counter()
            await asyncio.gather(*(send(k) for k in range(senders)))
            await asyncio.wait_for(counter.done.wait(), 600)
            out[label] = casts / (time.perf_counter() - t)
    finally:
        if client is not server:
            await client.stop()
        await server.stop()
    return out


async def run(url: str, calls: int, casts: int) -> None:
    inproc = await measure("inproc", calls, casts)
    amqp = await measure(url, calls, casts)
    print(f"{'':26} {'inproc':>10} {'rabbitmq':>10} {'ratio':>8}")
    for key in inproc:
        a, b = inproc[key], amqp[key]
        ratio = b / a if key.endswith("ms") else a / b  # how many times slower RabbitMQ is
        print(f"{key:26} {a:10.3f} {b:10.3f} {ratio:7.1f}x")
    print(f"(calls={calls}, casts={casts}; ratio = RabbitMQ's cost over in-process's)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("CUMULO_TEST_TRANSPORT_URL"))
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--casts", type=int, default=5000)
    args = parser.parse_args()
    services = root = None
    url = args.url
    if not url:
        services, root, url = _own_node()
    try:
        asyncio.run(run(url, args.calls, args.casts))
    finally:
        if services is not None:
            services.stop(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
