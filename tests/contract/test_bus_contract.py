"""The bus contract (bus/base.py), checked on every transport the same way.

Each transport joins by adding a factory to TRANSPORTS. Today: "inproc". A broker transport
(RabbitMQ, issue 14) must pass the same tests: messages are JSON envelopes, each handled in its own
task; `call` returns the handler's JSON-round-tripped result or raises an error that names the
remote exception's class; a cast to a topic nobody serves yet waits for its server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from cumulo.bus.base import ENVELOPE_VERSION, Bus, compute_topic
from cumulo.bus.transports import make_bus
from cumulo.errors import NotFound

TRANSPORTS: dict[str, Callable[[], Bus]] = {"inproc": lambda: make_bus("inproc")}


class Endpoint:
    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()

    async def echo(self, **args: Any) -> Any:
        self.received.append(("echo", args))
        self.arrived.set()
        return args

    async def note(self, value: Any) -> None:
        self.received.append(("note", {"value": value}))
        self.arrived.set()

    async def mutate(self, items: list[int]) -> list[int]:
        items.append(99)
        return items

    async def wait_for_release(self) -> str:
        await self.release.wait()
        return "released"

    async def do_release(self) -> str:
        self.release.set()
        return "done"

    async def not_found(self) -> None:
        raise NotFound("Server abc could not be found.")

    async def broken(self) -> None:
        raise ValueError("bad value 42")

    async def _private(self) -> str:
        return "must never run"


def exc_type(exc: BaseException) -> str:
    """The remote class name: carried by RemoteError across a broker, or the class itself in process."""
    return str(getattr(exc, "exc_type", None) or type(exc).__name__)


@pytest.fixture(params=sorted(TRANSPORTS))
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    b = TRANSPORTS[request.param]()
    await b.start()
    try:
        yield b
    finally:
        await b.stop()


async def served(bus: Bus, topic: str = "svc") -> Endpoint:
    ep = Endpoint()
    bus.serve(topic, ep)
    return ep


def test_envelope_and_topics() -> None:
    assert ENVELOPE_VERSION == 1
    assert compute_topic("node-1") == "compute.node-1"
    with pytest.raises(ValueError, match="unsupported transport 'carrier-pigeon'"):
        make_bus("carrier-pigeon")


async def test_call_returns_the_json_round_tripped_result(bus: Bus) -> None:
    await served(bus)
    out = await bus.call("svc", "echo", a=1, t=(1, 2), nested={"k": [None, True]})
    assert out == {"a": 1, "t": [1, 2], "nested": {"k": [None, True]}}  # tuples become lists


async def test_the_handler_gets_a_copy_of_the_arguments(bus: Bus) -> None:
    await served(bus)
    items = [1, 2]
    assert await bus.call("svc", "mutate", items=items) == [1, 2, 99]
    assert items == [1, 2]  # nothing is shared with the caller


async def test_unserialisable_arguments_are_refused_at_the_sender(bus: Bus) -> None:
    ep = await served(bus)
    with pytest.raises(TypeError):
        await bus.cast("svc", "note", value=object())
    assert ep.received == []


async def test_cast_is_delivered(bus: Bus) -> None:
    ep = await served(bus)
    await bus.cast("svc", "note", value="hello")
    await asyncio.wait_for(ep.arrived.wait(), 30)
    assert ep.received == [("note", {"value": "hello"})]


async def test_a_cast_waits_for_a_topic_served_later(bus: Bus) -> None:
    await bus.cast("late", "note", value=7)
    ep = await served(bus, "late")
    await asyncio.wait_for(ep.arrived.wait(), 30)
    assert ep.received == [("note", {"value": 7})]


async def test_each_message_runs_in_its_own_task(bus: Bus) -> None:
    await served(bus)
    waiting = asyncio.ensure_future(bus.call("svc", "wait_for_release"))
    # The second message is handled while the first still waits: one slow handler blocks no topic.
    assert await bus.call("svc", "do_release") == "done"
    assert await asyncio.wait_for(waiting, 30) == "released"


async def test_a_cumulo_error_keeps_its_class_and_message(bus: Bus) -> None:
    await served(bus)
    with pytest.raises(Exception) as info:
        await bus.call("svc", "not_found")
    assert exc_type(info.value) == "NotFound"
    assert "Server abc could not be found." in str(info.value)


async def test_any_other_error_arrives_named(bus: Bus) -> None:
    await served(bus)
    with pytest.raises(Exception) as info:
        await bus.call("svc", "broken")
    assert exc_type(info.value) == "ValueError"
    assert "bad value 42" in str(info.value)


@pytest.mark.parametrize("method", ["no_such_method", "_private", "__init__"])
async def test_unknown_and_private_methods_are_never_dispatched(bus: Bus, method: str) -> None:
    ep = await served(bus)
    with pytest.raises(Exception) as info:
        await bus.call("svc", method)
    assert exc_type(info.value) == "NotFound"
    assert method in str(info.value)
    assert ep.received == []


async def test_a_failing_cast_does_not_stop_the_topic(bus: Bus) -> None:
    ep = await served(bus)
    await bus.cast("svc", "broken")
    await bus.cast("svc", "note", value="after")
    await asyncio.wait_for(ep.arrived.wait(), 30)
    assert ep.received == [("note", {"value": "after"})]


async def test_a_call_times_out_when_nobody_answers(bus: Bus) -> None:
    await served(bus)
    with pytest.raises(asyncio.TimeoutError):
        await bus.call("svc", "wait_for_release", timeout=0.05)  # released never: it cannot answer in time
