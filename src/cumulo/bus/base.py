"""The bus contract: the envelope version, the Bus protocol every transport implements, topic names."""


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
