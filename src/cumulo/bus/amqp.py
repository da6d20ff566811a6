"""RabbitMQ transport (aio-pika): the Bus contract across processes and machines.

URL: `amqp://user:password@host:port/vhost[?prefetch=64&unavailable_after=5&reconnect_interval=1
&heartbeat=15]` (`prefetch` and `unavailable_after` are this transport's; the rest goes to aio-pika).

- A topic is one durable queue of that name on the default exchange ("conductor", "scheduler",
  "compute.<host>", ...), shared by every consumer serving it: peers split the work.
- `cast`: a persistent message; it returns once the broker confirmed it (publisher confirms). The
  sender declares the queue first, so a cast to a topic nobody serves yet waits in it.
- `call`: a transient message with `reply_to` (this process's queue `reply.<id>`: durable, so an
  answer sent while the process reconnects after a broker restart waits for it, and deleted by the
  broker after 10 minutes without a consumer, `x-expires`, when the process is gone), a
  correlation id and an expiration of `timeout`; the answer or the handler's error comes back on
  the reply queue. No answer within `timeout`: TimeoutError. Calls and answers go on a
  channel without publisher confirms (a lost one is the caller's timeout; it saves a round trip);
  an answer is not even waited for until the connection's writer wrote it (the ack follows at once).
- Per hop: messages are published with aiormq's publish on the channel (no aio-pika Message
  object; while connected, a publish with nothing to declare first runs under aiormq's own
  deadline of `unavailable_after`, no timer of ours), and a delivery is handled in the task
  aio-pika runs its callback in (no task of ours).
- `fanout`: a transient message to the durable fanout exchange `<topic>_fanout`; every consumer of
  the topic binds an exclusive queue of its own to it, so each live consumer gets one copy. It
  returns once the broker confirmed it, i.e. routed it to those queues: a message sent to the
  topic after (the scheduler's services_changed, then a build's select) is queued behind it.
- Acknowledgement after the handler: a consumer takes at most `prefetch` messages of a topic at
  once, runs each in its own task and acks when the handler returned (or raised: its error is the
  answer). A consumer killed mid-message never acks: the broker redelivers the message to a peer
  or to the consumer's next start. Handlers are idempotent (they CAS on task_state). A consumer
  stopped cleanly nacks what it was running back to the queue.
- Versions (bus.dispatch): a message of a version the method does not handle is nacked back once
  (an upgraded peer may take it); met again (redelivered), it is rejected and a call answered
  with UnsupportedVersion.
- The broker away: the connection is robust (aio-pika's connect_robust re-opens the connection,
  channels, queues, bindings and consumers). A send waits at most `unavailable_after` seconds
  for the connection and the broker's confirm, then raises BusUnavailable: the message may or may
  not have been taken (at least once; handlers are idempotent and tolerate a removed row).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any, NamedTuple

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustConnection,
    ExchangeType,
)
from yarl import URL

from cumulo.bus import dispatch
from cumulo.bus.base import ENVELOPE_VERSION, BusUnavailable, UnsupportedVersion
from cumulo.metrics import control

LOG = logging.getLogger(__name__)

CONSUMER_CHANNELS = 8
REPLY_QUEUE_EXPIRES_MS = 600_000

Basic = aiormq.spec.Basic  # pamqp's, as aiormq exports it

_SEND_ERRORS = (aiormq.exceptions.AMQPError, aio_pika.exceptions.AMQPException, ConnectionError, OSError,
                RuntimeError)


class _Outgoing(NamedTuple):
    """A message to publish: its body and AMQP properties (aio-pika's Message without its
    per-attribute bookkeeping, which cost more than the frames: a send is on every hop)."""

    body: bytes
    properties: Basic.Properties


async def _publish(channel: AbstractChannel, exchange: str, routing_key: str, message: _Outgoing, *,
                   wait: bool = True, timeout: float | None = None) -> None:
    """What aio-pika's Exchange.publish does (mandatory, the channel's confirms when it has them),
    straight on the channel's aiormq channel. `wait=False`: return once the frames are queued for the
    socket, not after the connection's writer wrote them (an answer: a lost one is the caller's
    timeout either way)."""
    raw = await channel.get_underlay_channel()
    assert isinstance(raw, aiormq.Channel)
    await raw.basic_publish(message.body, exchange=exchange, routing_key=routing_key,
                            properties=message.properties, mandatory=True, wait=wait, timeout=timeout)


def _options(url: str) -> tuple[URL, int, float]:
    """(the URL for aio-pika, prefetch, unavailable_after) from the transport URL."""
    parsed = URL(url)
    query = dict(parsed.query)
    prefetch = int(query.pop("prefetch", "64"))
    unavailable_after = float(query.pop("unavailable_after", "5"))
    query.setdefault("reconnect_interval", "1")
    query.setdefault("heartbeat", "15")
    if prefetch < 1 or unavailable_after <= 0:
        raise ValueError("transport URL: prefetch must be >= 1 and unavailable_after > 0")
    return parsed.with_query(query), prefetch, unavailable_after


class AmqpBus:
    def __init__(self, url: str, *, version: int = ENVELOPE_VERSION, start_timeout: float = 60.0) -> None:
        self._url, self._prefetch, self._unavailable_after = _options(url)
        self.version = version
        self._start_timeout = start_timeout
        self._id = uuid.uuid4().hex[:12]
        self._reply_name = f"reply.{self._id}"
        self._conn: AbstractRobustConnection | None = None
        self._pub: AbstractChannel | None = None  # casts: publisher confirms
        self._fast: AbstractChannel | None = None  # calls and answers: no confirm round trip
        self._endpoints: list[tuple[str, object]] = []
        self._consuming = 0
        self._channels: list[AbstractChannel] = []
        # A few channels for every consumer of the process (a host process with --fake-hosts serves
        # thousands of topics; RabbitMQ allows 2047 channels per connection; a channel runs one
        # declaration at a time, so several set up topics in parallel); prefetch is per consumer
        # (basic.qos global=false): each topic holds at most `prefetch` messages.
        self._consumers: list[AbstractChannel] = []
        self._replies: AbstractChannel | None = None
        self._setups: set[asyncio.Task[None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._queues: set[str] = set()
        self._exchanges: dict[str, AbstractExchange] = {}

    # -- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (retrying while the broker is not up yet, for `start_timeout`), then consume."""
        deadline = asyncio.get_running_loop().time() + self._start_timeout
        while True:
            try:
                self._conn = await aio_pika.connect_robust(self._url, timeout=10)
                break
            except _SEND_ERRORS as exc:
                if asyncio.get_running_loop().time() > deadline:
                    raise BusUnavailable(f"message broker unreachable: {exc}") from exc
                await asyncio.sleep(1.0)
        self._pub = await self._conn.channel(publisher_confirms=True)
        self._fast = await self._conn.channel(publisher_confirms=False)
        replies = await self._conn.channel()
        self._channels.append(replies)
        for _ in range(CONSUMER_CHANNELS):
            channel = await self._conn.channel()
            await channel.set_qos(prefetch_count=self._prefetch, global_=False)
            self._consumers.append(channel)
        queue = await replies.declare_queue(self._reply_name, durable=True,
                                            arguments={"x-expires": REPLY_QUEUE_EXPIRES_MS})
        self._replies = replies
        await queue.consume(self._on_reply, no_ack=True)
        async def consume_all(lane: int) -> None:
            for index, (topic, endpoint) in enumerate(self._endpoints):
                if index % CONSUMER_CHANNELS == lane:
                    await self._consume(topic, endpoint, lane)

        await asyncio.gather(*(consume_all(lane) for lane in range(CONSUMER_CHANNELS)))

    async def stop(self) -> None:
        for task in [*self._setups, *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._setups, *self._tasks, return_exceptions=True)
        self._setups.clear()
        self._tasks.clear()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(BusUnavailable("the bus stopped"))
        if self._conn is not None:
            try:
                if self._replies is not None:
                    async with asyncio.timeout(self._unavailable_after):
                        await self._replies.queue_delete(self._reply_name)
                await self._conn.close()
            except (*_SEND_ERRORS, TimeoutError):
                LOG.debug("closing the broker connection failed", exc_info=True)
        self._conn = self._pub = self._fast = self._replies = None
        self._consumers.clear()
        self._channels.clear()
        self._queues.clear()
        self._exchanges.clear()
        self._consuming = 0

    def serve(self, topic: str, endpoint: object) -> None:
        self._endpoints.append((topic, endpoint))
        if self._conn is not None:
            task = asyncio.get_running_loop().create_task(self._consume(topic, endpoint))
            self._setups.add(task)
            task.add_done_callback(self._setup_done)

    def _setup_done(self, task: asyncio.Task[None]) -> None:
        self._setups.discard(task)
        if not task.cancelled() and task.exception() is not None:
            LOG.error("consuming from the broker failed", exc_info=task.exception())

    async def ready(self) -> None:
        """Wait until every `serve` so far consumes (its queue and fanout binding exist)."""
        while self._setups:
            await asyncio.gather(*list(self._setups), return_exceptions=True)

    async def _consume(self, topic: str, endpoint: object, lane: int | None = None) -> None:
        if lane is None:
            lane = self._consuming % CONSUMER_CHANNELS
            self._consuming += 1
        channel = self._consumers[lane]
        exchange = await channel.declare_exchange(f"{topic}_fanout", ExchangeType.FANOUT, durable=True)
        mine = await channel.declare_queue(f"{topic}.fanout.{self._id}.{uuid.uuid4().hex[:8]}", exclusive=True,
                                           auto_delete=True)
        await mine.bind(exchange)
        await mine.consume(self._receiver(topic, endpoint))
        shared = await channel.declare_queue(topic, durable=True)
        await shared.consume(self._receiver(topic, endpoint))

    # -- sending ---------------------------------------------------------------------------------

    def _body(self, method: str, args: dict[str, Any]) -> bytes:
        # json.dumps first: an argument that is not JSON fails here, before anything is sent.
        return json.dumps({"v": self.version, "method": method, "args": args}).encode()

    async def _send(self, what: str, coro_factory: Any, *, confirmed: bool = False,
                    ready: tuple[str, str, _Outgoing, bool] | None = None) -> None:
        """Run `coro_factory(channel)` within unavailable_after, or BusUnavailable. `ready`: the
        send is that one publish (exchange, routing key, message, wait), nothing to declare first;
        while connected it runs under aiormq's own deadline for it (no timer of ours per send)."""
        conn, pub = self._conn, (self._pub if confirmed else self._fast)
        if conn is None or pub is None:
            raise BusUnavailable(f"{what}: the bus is not started")
        try:
            if ready is not None and conn.connected.is_set():
                exchange, key, message, wait = ready
                await _publish(pub, exchange, key, message, wait=wait, timeout=self._unavailable_after)
                return
            async with asyncio.timeout(self._unavailable_after):
                await conn.connected.wait()
                await coro_factory(pub)
        except TimeoutError:
            raise BusUnavailable(f"message broker unreachable: {what} not sent within "
                                 f"{self._unavailable_after:g} s") from None
        except _SEND_ERRORS as exc:
            raise BusUnavailable(f"message broker unreachable: {what} not sent ({type(exc).__name__})") from exc

    async def _to_queue(self, topic: str, message: _Outgoing, *, confirmed: bool) -> None:
        async def publish(pub: AbstractChannel) -> None:
            if topic not in self._queues:
                await pub.declare_queue(topic, durable=True)
                self._queues.add(topic)
            await _publish(pub, "", topic, message)

        await self._send(f"{topic}", publish, confirmed=confirmed,
                         ready=("", topic, message, True) if topic in self._queues else None)

    async def cast(self, topic: str, method: str, **args: Any) -> None:
        body = self._body(method, args)
        control.bus_message(topic, method, "cast")
        await self._to_queue(topic, _Outgoing(body, Basic.Properties(content_type="application/json", delivery_mode=2)),
                             confirmed=True)

    async def call(self, topic: str, method: str, *, timeout: float = 60.0, **args: Any) -> Any:
        body = self._body(method, args)
        control.bus_message(topic, method, "call")
        corr = uuid.uuid4().hex
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[corr] = fut
        try:
            await self._to_queue(topic, _Outgoing(body, Basic.Properties(
                content_type="application/json", delivery_mode=1, correlation_id=corr, reply_to=self._reply_name,
                expiration=str(max(int(timeout * 1000), 1)))), confirmed=False)
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._pending.pop(corr, None)

    async def fanout(self, topic: str, method: str, **args: Any) -> None:
        body = self._body(method, args)
        control.bus_message(topic, method, "fanout")

        async def publish(pub: AbstractChannel) -> None:
            exchange = self._exchanges.get(topic)
            if exchange is None:
                exchange = await pub.declare_exchange(f"{topic}_fanout", ExchangeType.FANOUT, durable=True)
                self._exchanges[topic] = exchange
            await _publish(pub, exchange.name, "", _Outgoing(body, Basic.Properties(
                content_type="application/json", delivery_mode=1)))

        await self._send(f"fanout {topic}", publish, confirmed=True)

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        fut = self._pending.get(message.correlation_id or "")
        if fut is None or fut.done():
            return  # a late answer (the call timed out) or a redelivered message's second answer
        try:
            reply = json.loads(message.body)
        except ValueError:
            fut.set_exception(dispatch.decode_error(None))
            return
        if "error" in reply:
            fut.set_exception(dispatch.decode_error(reply["error"]))
        else:
            fut.set_result(reply.get("result"))

    # -- receiving -------------------------------------------------------------------------------

    def _receiver(self, topic: str, endpoint: object) -> Any:
        async def on_message(message: AbstractIncomingMessage) -> None:
            # aio-pika already runs each delivery's callback in a task of its own: the message is
            # handled in it (no third task per message), tracked so that `stop` can cancel it.
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            try:
                await self._handle(topic, endpoint, message)
            finally:
                self._tasks.discard(task)

        return on_message

    async def _reply(self, message: AbstractIncomingMessage, body: dict[str, Any]) -> None:
        if not message.reply_to:
            return
        data = json.dumps({"v": self.version, **body}).encode()
        answer = _Outgoing(data, Basic.Properties(content_type="application/json", delivery_mode=1,
                                                  correlation_id=message.correlation_id))
        reply_to = message.reply_to
        try:
            await self._send(f"reply to {reply_to}", lambda pub: _publish(pub, "", reply_to, answer, wait=False),
                             ready=("", reply_to, answer, False))
        except BusUnavailable:
            LOG.warning("the answer to %s was not sent: the broker is unreachable", message.reply_to)

    async def _settle(self, message: AbstractIncomingMessage, how: str) -> None:
        try:
            if how == "ack":
                await message.ack()
            elif how == "requeue":
                await message.nack(requeue=True)
            else:
                await message.reject(requeue=False)
        except _SEND_ERRORS:
            # The channel went away with the message: the broker redelivers it.
            LOG.info("could not %s a message (channel closed): the broker redelivers it", how)

    async def _handle(self, topic: str, endpoint: object, message: AbstractIncomingMessage) -> None:
        method = "(unknown)"
        try:
            try:
                msg = json.loads(message.body)
                method = str(msg["method"])
                args = msg.get("args") or {}
                if not isinstance(args, dict):
                    raise TypeError("args is not an object")
            except (ValueError, KeyError, TypeError) as exc:
                LOG.error("malformed message on %s dropped: %s", topic, exc)
                await self._settle(message, "reject")
                return
            handler = dispatch.resolve(topic, endpoint, method)
            try:
                kwargs = dispatch.admit(handler, msg.get("v"), self.version, args)
            except UnsupportedVersion:
                if not message.redelivered:
                    LOG.warning("%s.%s v%s: not handled here, handed back to a peer", topic, method, msg.get("v"))
                    await self._settle(message, "requeue")
                    return
                raise
            result = await handler(**kwargs)
            await self._reply(message, {"result": result})
        except asyncio.CancelledError:
            await asyncio.shield(self._settle(message, "requeue"))
            raise
        except Exception as exc:
            control.bus_failure(topic, method)
            if message.reply_to:
                await self._reply(message, {"error": dispatch.encode_error(exc)})
            else:
                LOG.exception("cast %s.%s failed", topic, method)
            if isinstance(exc, UnsupportedVersion):
                await self._settle(message, "reject")
                return
        await self._settle(message, "ack")
