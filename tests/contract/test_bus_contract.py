"""The bus contract (bus/base.py), checked on every transport the same way: "inproc" and "amqp"
(RabbitMQ, the run's broker from the `scale_services` fixture, in a vhost of this module's own).

Messages are JSON envelopes, each handled in its own task; `call` returns the handler's
JSON-round-tripped result or raises an error that names the remote exception's class (a
cumulo.errors class arrives as that class); a cast to a topic nobody serves yet waits for its
server; peers serving one topic split its messages, a fanout reaches each of them; one sender's
casts to a topic with one consumer start in the order sent. Each test uses topics of its own.

The broker-only properties (a consumer process killed mid-message, the broker stopped and
started, versions across a rolling upgrade) are in test_bus_amqp.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from _bus_rabbit import Vhost

from cumulo.bus.base import ENVELOPE_VERSION, Bus, compute_topic
from cumulo.bus.transports import make_bus
from cumulo.errors import NotFound

Peer = Callable[[], Awaitable[Bus]]


class Endpoint:
    def __init__(self, name: str = "ep") -> None:
        self.name = name
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

    async def who(self) -> str:
        self.received.append(("who", {}))
        await asyncio.sleep(0)
        return self.name

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
    """The remote class name: carried by RemoteError across a broker, or the class itself."""
    return str(getattr(exc, "exc_type", None) or type(exc).__name__)


@pytest.fixture(scope="module")
def amqp_url(scale_services: dict[str, str]) -> Iterator[str]:
    if not scale_services.get("dir"):
        pytest.skip("the run's RabbitMQ has no services dir (CUMULO_TEST_SERVICES_DIR) for rabbitmqctl")
    with Vhost(scale_services) as vhost:
        yield vhost.url


@pytest.fixture(params=["inproc", "amqp"])
def transport(request: pytest.FixtureRequest) -> str:
    if request.param == "inproc":
        return "inproc"
    return str(request.getfixturevalue("amqp_url"))


@pytest.fixture
async def bus(transport: str) -> AsyncIterator[Bus]:
    b = make_bus(transport)
    await b.start()
    try:
        yield b
    finally:
        await b.stop()


@pytest.fixture
async def peer(transport: str, bus: Bus) -> AsyncIterator[Peer]:
    """Another consumer of the same topics: in process, the same bus (its endpoints are peers);
    over a broker, a bus of its own (as another process would have)."""
    made: list[Bus] = []

    async def make() -> Bus:
        if transport == "inproc":
            return bus
        b = make_bus(transport)
        await b.start()
        made.append(b)
        return b

    try:
        yield make
    finally:
        for b in made:
            await b.stop()


@pytest.fixture
def topic() -> str:
    return f"svc-{uuid.uuid4().hex[:10]}"


async def served(bus: Bus, topic: str, name: str = "ep") -> Endpoint:
    ep = Endpoint(name)
    bus.serve(topic, ep)
    await bus.ready()
    return ep


async def until(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


def test_envelope_and_topics() -> None:
    assert ENVELOPE_VERSION == 1
    assert compute_topic("node-1") == "compute.node-1"
    with pytest.raises(ValueError, match="unsupported transport 'carrier-pigeon'"):
        make_bus("carrier-pigeon")
    assert type(make_bus("amqp://u:p@127.0.0.1:5672/v")).__name__ == "AmqpBus"  # no connection until start
    with pytest.raises(ValueError) as info:  # a mistyped scheme: the password stays out of the message
        make_bus("ampq://cumulo:S3CRET@198.18.0.1:5672/cloud")
    assert "S3CRET" not in str(info.value) and "'ampq'" in str(info.value)


async def test_call_returns_the_json_round_tripped_result(bus: Bus, topic: str) -> None:
    await served(bus, topic)
    out = await bus.call(topic, "echo", a=1, t=(1, 2), nested={"k": [None, True]})
    assert out == {"a": 1, "t": [1, 2], "nested": {"k": [None, True]}}  # tuples become lists


async def test_the_handler_gets_a_copy_of_the_arguments(bus: Bus, topic: str) -> None:
    await served(bus, topic)
    items = [1, 2]
    assert await bus.call(topic, "mutate", items=items) == [1, 2, 99]
    assert items == [1, 2]  # nothing is shared with the caller


async def test_unserialisable_arguments_are_refused_at_the_sender(bus: Bus, topic: str) -> None:
    ep = await served(bus, topic)
    with pytest.raises(TypeError):
        await bus.cast(topic, "note", value=object())
    assert await bus.call(topic, "echo") == {}  # the topic works, and nothing else arrived before
    assert ep.received == [("echo", {})]


async def test_cast_is_delivered(bus: Bus, topic: str) -> None:
    ep = await served(bus, topic)
    await bus.cast(topic, "note", value="hello")
    await asyncio.wait_for(ep.arrived.wait(), 30)
    assert ep.received == [("note", {"value": "hello"})]


async def test_a_cast_waits_for_a_topic_served_later(bus: Bus, topic: str) -> None:
    await bus.cast(topic, "note", value=7)
    ep = await served(bus, topic)
    await asyncio.wait_for(ep.arrived.wait(), 30)
    assert ep.received == [("note", {"value": 7})]


async def test_each_message_runs_in_its_own_task(bus: Bus, topic: str) -> None:
    await served(bus, topic)
    waiting = asyncio.ensure_future(bus.call(topic, "wait_for_release"))
    # The second message is handled while the first still waits: one slow handler blocks no topic.
    assert await bus.call(topic, "do_release") == "done"
    assert await asyncio.wait_for(waiting, 30) == "released"


async def test_a_cumulo_error_keeps_its_class_and_message(bus: Bus, topic: str) -> None:
    await served(bus, topic)
    with pytest.raises(NotFound) as info:  # the class itself, also across a broker
        await bus.call(topic, "not_found")
    assert info.value.code == 404
    assert "Server abc could not be found." in str(info.value)


async def test_any_other_error_arrives_named(bus: Bus, topic: str) -> None:
    await served(bus, topic)
    with pytest.raises(Exception) as info:
        await bus.call(topic, "broken")
    assert exc_type(info.value) == "ValueError"
    assert "bad value 42" in str(info.value)


@pytest.mark.parametrize("method", ["no_such_method", "_private", "__init__"])
async def test_unknown_and_private_methods_are_never_dispatched(bus: Bus, topic: str, method: str) -> None:
    ep = await served(bus, topic)
    with pytest.raises(Exception) as info:
        await bus.call(topic, method)
    assert exc_type(info.value) == "NotFound"
    assert method in str(info.value)
    assert ep.received == []


class _Lifecycle(Endpoint):
    """An endpoint with the public lifecycle a conductor, scheduler or host agent has."""

    async def stop(self) -> None:
        self.received.append(("stop", {}))

    async def dispatch(self, method: str, instance_uuid: str, args: dict[str, Any]) -> Any:
        self.received.append(("dispatch", {"method": method}))


@pytest.mark.parametrize("method", ["stop", "start", "dispatch", "recover", "heartbeat"])
async def test_an_endpoints_lifecycle_is_never_a_message(bus: Bus, topic: str, method: str) -> None:
    """A message "stop" would stop a conductor, scheduler or host agent, and the host agent's
    `dispatch` reached any method of its nodes, `_` ones too: none is dispatched."""
    ep = _Lifecycle()
    bus.serve(topic, ep)
    await bus.ready()
    with pytest.raises(Exception) as info:
        await bus.call(topic, method, **({"instance_uuid": "x", "args": {}} if method == "dispatch" else {}))
    assert exc_type(info.value) == "NotFound"
    assert ep.received == []


async def test_a_failing_cast_does_not_stop_the_topic(bus: Bus, topic: str) -> None:
    ep = await served(bus, topic)
    await bus.cast(topic, "broken")
    await bus.cast(topic, "note", value="after")
    await asyncio.wait_for(ep.arrived.wait(), 30)
    assert ep.received == [("note", {"value": "after"})]


async def test_a_call_times_out_when_nobody_answers(bus: Bus, topic: str) -> None:
    await served(bus, topic)
    with pytest.raises(asyncio.TimeoutError):
        await bus.call(topic, "wait_for_release", timeout=0.2)  # released never: it cannot answer in time


async def test_casts_from_one_sender_start_in_order(bus: Bus, topic: str) -> None:
    ep = await served(bus, topic)
    for i in range(30):
        await bus.cast(topic, "note", value=i)
    await until(lambda: len(ep.received) == 30)
    assert [args["value"] for _, args in ep.received] == list(range(30))


async def test_peers_on_one_topic_split_the_work(bus: Bus, peer: Peer, topic: str) -> None:
    eps = [await served(await peer(), topic, name) for name in ("a", "b")]
    answers = await asyncio.gather(*(bus.call(topic, "who") for _ in range(40)))
    assert sorted(set(answers)) == ["a", "b"]  # both took some
    assert sum(len(ep.received) for ep in eps) == 40  # and each message went to one of them only


async def test_a_fanout_reaches_every_peer_once(bus: Bus, peer: Peer, topic: str) -> None:
    eps = [await served(await peer(), topic, name) for name in ("a", "b", "c")]
    await bus.fanout(topic, "note", value="all")
    await until(lambda: all(ep.received for ep in eps))
    await bus.cast(topic, "note", value="one")  # a cast still goes to one peer
    await until(lambda: sum(len(ep.received) for ep in eps) == 4)
    for ep in eps:
        assert ("note", {"value": "all"}) in ep.received
    assert sum(("note", {"value": "one"}) in ep.received for ep in eps) == 1


async def test_a_fanout_nobody_serves_is_dropped(bus: Bus, topic: str) -> None:
    await bus.fanout(topic, "note", value="lost")  # no queue keeps it for a later consumer
    ep = await served(bus, topic)
    await bus.fanout(topic, "note", value="seen")
    await until(lambda: bool(ep.received))
    assert await bus.call(topic, "echo") == {}
    assert ("note", {"value": "lost"}) not in ep.received
