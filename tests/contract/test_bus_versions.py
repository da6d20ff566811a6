"""Message versions and the rolling upgrade (bus.dispatch): a consumer at version N handles what its
method declares (default N-1 and N), and a message one version ahead with the arguments it does
not know dropped (a version step only adds optional arguments); anything else is refused. Over
RabbitMQ with buses of two versions (a sender upgraded before its consumer, and the reverse), and
the rule itself on the dispatcher both transports share."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from _bus_rabbit import Vhost

from cumulo.bus import dispatch
from cumulo.bus.amqp import AmqpBus
from cumulo.bus.base import UnsupportedVersion, versions


class BuilderV1:
    """An agent one version behind: build takes only the instance."""

    def __init__(self) -> None:
        self.built: list[dict[str, Any]] = []

    async def build(self, instance_uuid: str) -> str:
        self.built.append({"instance_uuid": instance_uuid})
        return "v1 built"


class BuilderV2:
    """The upgraded agent: build gained an optional `node` (added in v2)."""

    def __init__(self) -> None:
        self.built: list[dict[str, Any]] = []

    async def build(self, instance_uuid: str, node: str | None = None) -> str:
        self.built.append({"instance_uuid": instance_uuid, "node": node})
        return "v2 built"

    @versions(2)
    async def strict(self, instance_uuid: str, node: str) -> str:
        """A method whose v2 made `node` mandatory: a v1 message cannot be served."""
        return node


@pytest.fixture(scope="module")
def amqp_url(scale_services: dict[str, str]) -> Iterator[str]:
    if not scale_services.get("dir"):
        pytest.skip("the run's RabbitMQ has no services dir (CUMULO_TEST_SERVICES_DIR) for rabbitmqctl")
    with Vhost(scale_services) as vhost:
        yield vhost.url


@pytest.fixture
async def buses(amqp_url: str) -> AsyncIterator[dict[int, AmqpBus]]:
    made = {v: AmqpBus(amqp_url, version=v) for v in (1, 2, 3)}
    for b in made.values():
        await b.start()
    try:
        yield made
    finally:
        for b in made.values():
            await b.stop()


def topic() -> str:
    return f"compute.v-{uuid.uuid4().hex[:10]}"


async def test_a_new_sender_speaks_to_an_agent_one_version_behind(buses: dict[int, AmqpBus]) -> None:
    t, old = topic(), BuilderV1()
    buses[1].serve(t, old)
    await buses[1].ready()
    # The v2 sender adds the v2 field; the v1 agent handles the message without it.
    assert await buses[2].call(t, "build", instance_uuid="i-1", node="n-1") == "v1 built"
    await buses[2].cast(t, "build", instance_uuid="i-2", node="n-2")
    async with asyncio.timeout(30):
        while len(old.built) < 2:
            await asyncio.sleep(0.01)
    assert old.built == [{"instance_uuid": "i-1"}, {"instance_uuid": "i-2"}]


async def test_an_old_sender_speaks_to_an_upgraded_agent(buses: dict[int, AmqpBus]) -> None:
    t, new = topic(), BuilderV2()
    buses[2].serve(t, new)
    await buses[2].ready()
    assert await buses[1].call(t, "build", instance_uuid="i-1") == "v2 built"
    assert new.built == [{"instance_uuid": "i-1", "node": None}]  # the v2 field takes its default


async def test_a_method_that_narrowed_its_versions_refuses_older_messages(buses: dict[int, AmqpBus]) -> None:
    t = topic()
    buses[2].serve(t, BuilderV2())
    await buses[2].ready()
    assert await buses[2].call(t, "strict", instance_uuid="i", node="n") == "n"
    # Handed back once for an upgraded peer, then (met again) refused with the reason.
    with pytest.raises(UnsupportedVersion, match="message version 1 not handled"):
        await buses[1].call(t, "strict", instance_uuid="i", node="n", timeout=30)


async def test_a_message_two_versions_ahead_is_refused(buses: dict[int, AmqpBus]) -> None:
    t, old = topic(), BuilderV1()
    buses[1].serve(t, old)
    await buses[1].ready()
    with pytest.raises(UnsupportedVersion, match="message version 3"):
        await buses[3].call(t, "build", instance_uuid="i-1", timeout=30)
    assert old.built == []


# -- the rule itself, as both transports apply it --------------------------------------------------


async def test_the_version_rule() -> None:
    old, new = BuilderV1(), BuilderV2()
    args = {"instance_uuid": "i", "node": "n"}
    assert dispatch.admit(new.build, 2, 2, args) == args  # own version
    assert dispatch.admit(new.build, 1, 2, {"instance_uuid": "i"}) == {"instance_uuid": "i"}  # one behind
    assert dispatch.admit(old.build, 2, 1, args) == {"instance_uuid": "i"}  # one ahead: unknown args dropped
    for version, own in ((3, 1), (0, 2), ("2", 2), (None, 1)):
        with pytest.raises(UnsupportedVersion):
            dispatch.admit(old.build, version, own, {"instance_uuid": "i"})
    with pytest.raises(UnsupportedVersion):
        dispatch.admit(new.strict, 1, 2, args)  # declared {2} only
