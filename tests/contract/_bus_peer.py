"""A consumer process for the bus tests: serves TOPIC on the broker at URL with `work(key)`, which
appends the key to MARKER and then never returns (the test kills the process with SIGKILL while it
holds the message). Prints "ready" once it consumes.

    python _bus_peer.py URL TOPIC MARKER
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from cumulo.bus.amqp import AmqpBus


class Stuck:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    async def work(self, key: str) -> None:
        with self.marker.open("a") as fh:
            fh.write(key + "\n")
        await asyncio.Event().wait()


async def main(url: str, topic: str, marker: str) -> None:
    bus = AmqpBus(url)
    bus.serve(topic, Stuck(Path(marker)))
    await bus.start()
    await bus.ready()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
