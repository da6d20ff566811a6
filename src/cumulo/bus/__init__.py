"""Message bus: `cast` (fire and forget) and `call` (request/reply) to named topics.

Messages are JSON-serialisable envelopes {"v": 1, "method": str, "args": {...}} so that an AMQP
transport can replace the in-process one without touching callers. Topics: "conductor",
"scheduler", "compute.<host>".

An endpoint is any object; a message's `method` names an async method of it, called with `args` as
keyword arguments. Methods starting with "_" are never dispatched.
"""

from __future__ import annotations

from typing import Any, Protocol

ENVELOPE_VERSION = 1


class Bus(Protocol):
    async def cast(self, topic: str, method: str, **args: Any) -> None: ...

    async def call(self, topic: str, method: str, *, timeout: float = 60.0, **args: Any) -> Any: ...

    def serve(self, topic: str, endpoint: object) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def compute_topic(host: str) -> str:
    return f"compute.{host}"


def make_bus(transport: str) -> Bus:
    if transport == "inproc":
        from cumulo.bus.inproc import InprocBus

        return InprocBus()
    raise ValueError(f"unsupported transport {transport!r}; only 'inproc' is available")
