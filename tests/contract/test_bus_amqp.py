"""The RabbitMQ transport's own promises, beyond the contract both transports keep:

- acknowledgement after the handler: a consumer process killed with SIGKILL mid-handler never
  acked, so the broker redelivers the message to a peer, which completes it;
- the broker away (`rabbitmqctl stop_app`): a cast or call raises BusUnavailable within a bounded
  time instead of hanging; after `start_app` the same bus objects work again (connection,
  channels, queues and consumers re-opened), and a persistent cast the broker held across the
  outage is delivered. That test runs on a RabbitMQ node of its own: stopping the run's shared
  broker would break every other test using it at that moment;
- a whole cloud (in process, fake driver) on that node: with the broker stopped a server create
  answers Nova's 503 and leaves no server, and once it is back the same cloud boots one.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _bus_rabbit import PrivateNode, Vhost

from cumulo import conf as conf_mod
from cumulo.bus.amqp import AmqpBus
from cumulo.bus.base import BusUnavailable
from cumulo.context import RequestContext, expand_roles

PEER = Path(__file__).with_name("_bus_peer.py")


class As:
    """ASGI wrapper: every request is made as `ctx` (as tests/conftest.py's ContextInjector)."""

    def __init__(self, app: Any, ctx: RequestContext) -> None:
        self.app, self.ctx = app, ctx

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = {**scope, "cumulo.context": self.ctx}
        await self.app(scope, receive, send)
REPO = Path(__file__).resolve().parents[2]


class Finisher:
    def __init__(self) -> None:
        self.done: list[tuple[str, bool]] = []
        self.finished = asyncio.Event()

    async def work(self, key: str) -> None:
        self.done.append((key, True))
        self.finished.set()

    async def echo(self, value: int) -> int:
        return value


@pytest.fixture(scope="module")
def amqp_url(scale_services: dict[str, str]) -> Iterator[str]:
    if not scale_services.get("dir"):
        pytest.skip("the run's RabbitMQ has no services dir (CUMULO_TEST_SERVICES_DIR) for rabbitmqctl")
    with Vhost(scale_services) as vhost:
        yield vhost.url


async def wait_for_file_line(path: Path, line: str, proc: asyncio.subprocess.Process) -> None:
    async with asyncio.timeout(60):
        while not (path.exists() and line in path.read_text().split()):
            assert proc.returncode is None, "the consumer process exited"
            await asyncio.sleep(0.05)


async def test_a_message_held_by_a_killed_consumer_goes_to_a_peer(amqp_url: str, tmp_path: Path) -> None:
    topic, marker = f"conductor-{uuid.uuid4().hex[:10]}", tmp_path / "started"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(PEER), amqp_url, topic, str(marker), stdout=asyncio.subprocess.PIPE,
        cwd=str(REPO),
    )
    sender, peer = AmqpBus(amqp_url), AmqpBus(amqp_url)
    try:
        assert proc.stdout is not None
        assert (await asyncio.wait_for(proc.stdout.readline(), 60)).strip() == b"ready"
        await sender.start()
        await sender.cast(topic, "work", key="k1")
        await wait_for_file_line(marker, "k1", proc)  # the process runs the handler and holds the message
        finisher = Finisher()
        peer.serve(topic, finisher)
        await peer.start()
        await peer.ready()
        assert finisher.done == []  # unacked, but not the peer's while its consumer lives
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.wait_for(finisher.finished.wait(), 60)
        assert finisher.done == [("k1", True)]
        assert marker.read_text().split() == ["k1"]
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        await sender.stop()
        await peer.stop()


@pytest.fixture(scope="module")
def node() -> Iterator[PrivateNode]:
    with PrivateNode() as n:
        yield n


async def test_the_broker_away_and_back(node: PrivateNode) -> None:
    quick = f"{node.url}?unavailable_after=2"  # a send gives up after 2 s without the broker
    sender, consumer = AmqpBus(quick), AmqpBus(quick)
    finisher = Finisher()
    consumer.serve("conductor", finisher)
    await sender.start()
    await consumer.start()
    try:
        assert await sender.call("conductor", "echo", value=1) == 1
        await sender.cast("held", "work", key="kept")  # nobody serves "held" yet: the broker keeps it
        await asyncio.to_thread(node.rabbitmqctl, "stop_app")
        try:
            for send in (sender.cast("conductor", "work", key="lost"), sender.call("conductor", "echo", value=2),
                         sender.fanout("conductor", "work", key="lost")):
                with pytest.raises(BusUnavailable, match="message broker unreachable"):
                    await asyncio.wait_for(send, 60)  # bounded: never a hang
        finally:
            await asyncio.to_thread(node.rabbitmqctl, "start_app")
        # The same objects, no restart: the first call that goes through after the broker returns.
        async with asyncio.timeout(120):
            while True:
                try:
                    assert await sender.call("conductor", "echo", value=3, timeout=5) == 3
                    break
                except (BusUnavailable, TimeoutError):
                    await asyncio.sleep(0.5)
        await sender.cast("conductor", "work", key="after")
        await asyncio.wait_for(finisher.finished.wait(), 60)
        assert finisher.done == [("after", True)]  # nothing sent during the outage arrives
        held = Finisher()
        consumer.serve("held", held)
        await asyncio.wait_for(held.finished.wait(), 60)
        assert held.done == [("kept", True)]  # a persistent cast survives the broker's stop
    finally:
        await sender.stop()
        await consumer.stop()


async def test_a_cloud_on_rabbitmq_answers_503_while_it_is_away(node: PrivateNode, tmp_path: Path) -> None:
    from cumulo.runtime import Cloud

    vhost = f"cloud-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(node.rabbitmqctl, "add_vhost", vhost)
    await asyncio.to_thread(node.rabbitmqctl, "set_permissions", "-p", vhost, "cumulo", ".*", ".*", ".*")
    conf = conf_mod.load(env={}, state_dir=tmp_path / "state", port=8080, power_sync_interval=3600.0,
                         local_driver="fake", transport=f"{node.url}{vhost}?unavailable_after=2")
    cloud = Cloud(conf)
    await cloud.start()
    ctx = RequestContext(user_id=uuid.uuid4().hex, project_id=uuid.uuid4().hex, roles=expand_roles(["member"]))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=As(cloud.asgi_app(), ctx)),
                               base_url="http://cumulo.test")
    api, mv = "/compute/v2.1", {"OpenStack-API-Version": "compute 2.37"}
    try:
        assert type(cloud.bus).__name__ == "AmqpBus"
        image = (await client.post("/image/v2/images", json={"name": "i", "disk_format": "raw",
                                                             "container_format": "bare"})).json()["id"]
        put = await client.put(f"/image/v2/images/{image}/file", content=b"\0" * 4096,
                               headers={"Content-Type": "application/octet-stream"})
        assert put.status_code == 204, put.text
        body = {"server": {"name": "s", "imageRef": image, "flavorRef": "42", "networks": "none"}}
        await asyncio.to_thread(node.rabbitmqctl, "stop_app")
        try:
            resp = await asyncio.wait_for(client.post(f"{api}/servers", json=body, headers=mv), 60)
        finally:
            await asyncio.to_thread(node.rabbitmqctl, "start_app")
        assert resp.status_code == 503, resp.text
        assert list(resp.json()) == ["serviceUnavailable"]
        assert (await client.get(f"{api}/servers", headers=mv)).json()["servers"] == []
        async with asyncio.timeout(120):  # the same cloud, once its connection is back
            while (resp := await client.post(f"{api}/servers", json=body, headers=mv)).status_code == 503:
                await asyncio.sleep(0.5)
            assert resp.status_code == 202, resp.text
            sid = resp.json()["server"]["id"]
            while (status := (await client.get(f"{api}/servers/{sid}", headers=mv)).json()["server"]["status"]) != "ACTIVE":
                assert status == "BUILD", status
                await asyncio.sleep(0.1)
        assert (await client.delete(f"{api}/servers/{sid}", headers=mv)).status_code == 204
    finally:
        await client.aclose()
        await cloud.stop()
        await asyncio.to_thread(node.rabbitmqctl, "delete_vhost", vhost)
