"""The bus contract: the Bus protocol, the envelope version, topic names and the bus's errors.

Also the per-method version declaration (`versions`) the dispatcher (bus.dispatch) reads."""


from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from cumulo.errors import CumuloError

ENVELOPE_VERSION = 1

F = TypeVar("F", bound=Callable[..., Any])


class Bus(Protocol):
    async def cast(self, topic: str, method: str, **args: Any) -> None: ...

    async def call(self, topic: str, method: str, *, timeout: float = 60.0, **args: Any) -> Any: ...

    async def fanout(self, topic: str, method: str, **args: Any) -> None: ...

    def serve(self, topic: str, endpoint: object) -> None: ...

    async def ready(self) -> None:
        """Wait until every `serve` so far consumes (a fanout sent after reaches it)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class RemoteError(CumuloError):
    """A `call` whose handler raised an error that is not a cumulo.errors class; carries the remote
    exception's class name (`exc_type`) and the HTTP status its class maps to (`code`)."""

    def __init__(self, exc_type: str, message: str, code: int = 500) -> None:
        super().__init__(message)
        self.exc_type = exc_type
        self.code = code


class BusUnavailable(CumuloError):
    """The broker cannot be reached (down, restarting, refused): nothing was sent. The API
    families answer 503 in their own fault format; a request undoes what it changed before."""

    code = 503


class UnsupportedVersion(CumuloError):
    """A message whose envelope version the consumer's method does not handle."""

    code = 500


def compute_topic(host: str) -> str:
    return f"compute.{host}"


def versions(*accepted: int) -> Callable[[F], F]:
    """Declare the envelope versions an endpoint method handles (default: the consumer's own and
    the one before). A method whose message became incompatible narrows the set."""

    def mark(fn: F) -> F:
        fn.__bus_versions__ = frozenset(accepted)  # type: ignore[attr-defined]
        return fn

    return mark
