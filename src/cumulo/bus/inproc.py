"""In-process transport: one asyncio queue per topic, each message handled in its own task.

Several endpoints may serve one topic (peers): a cast or call goes to one of them in turn, a
fanout to every one. Errors cross as the exception objects themselves (nothing leaves the process).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from typing import Any

from cumulo.bus import dispatch
from cumulo.bus.base import ENVELOPE_VERSION, RemoteError
from cumulo.errors import CumuloError
from cumulo.metrics import control

LOG = logging.getLogger(__name__)

_Item = tuple[dict[str, Any], "asyncio.Future[Any] | None", "object | None"]


class InprocBus:
    def __init__(self, max_concurrency_per_topic: int = 256, *, version: int = ENVELOPE_VERSION) -> None:
        self._queues: dict[str, asyncio.Queue[_Item]] = {}
        self._endpoints: dict[str, list[object]] = {}
        self._turn: dict[str, itertools.count[int]] = {}
        self._consumers: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._limit = max_concurrency_per_topic
        self._running = False
        self.version = version

    def _queue(self, topic: str) -> asyncio.Queue[_Item]:
        # A cast to a topic nobody serves yet waits in its queue, as it would in a broker.
        return self._queues.setdefault(topic, asyncio.Queue())

    def _envelope(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        # Round-trip through JSON so nothing in-process can rely on shared objects.
        return json.loads(json.dumps({"v": self.version, "method": method, "args": args}))  # type: ignore[no-any-return]

    async def cast(self, topic: str, method: str, **args: Any) -> None:
        control.bus_message(topic, method, "cast")
        await self._queue(topic).put((self._envelope(method, args), None, None))

    async def call(self, topic: str, method: str, *, timeout: float = 60.0, **args: Any) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        control.bus_message(topic, method, "call")
        await self._queue(topic).put((self._envelope(method, args), fut, None))
        return await asyncio.wait_for(fut, timeout)

    async def fanout(self, topic: str, method: str, **args: Any) -> None:
        """To every endpoint serving `topic` now (none: dropped, as a broker's fanout is)."""
        control.bus_message(topic, method, "fanout")
        msg = self._envelope(method, args)
        for endpoint in list(self._endpoints.get(topic, [])):
            await self._queue(topic).put((msg, None, endpoint))

    def serve(self, topic: str, endpoint: object) -> None:
        self._endpoints.setdefault(topic, []).append(endpoint)
        self._turn.setdefault(topic, itertools.count())
        self._queue(topic)
        if self._running and topic not in self._consumers:
            self._consumers[topic] = asyncio.create_task(self._consume(topic))

    async def ready(self) -> None:
        return None

    async def start(self) -> None:
        self._running = True
        for topic in self._endpoints:
            if topic not in self._consumers:
                self._consumers[topic] = asyncio.create_task(self._consume(topic))

    async def stop(self) -> None:
        self._running = False
        for task in [*self._consumers.values(), *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._consumers.values(), *self._tasks, return_exceptions=True)
        self._consumers.clear()
        self._tasks.clear()

    async def _consume(self, topic: str) -> None:
        queue = self._queue(topic)
        sem = asyncio.Semaphore(self._limit)
        while True:
            msg, fut, endpoint = await queue.get()
            await sem.acquire()
            if endpoint is None:
                peers = self._endpoints[topic]
                endpoint = peers[next(self._turn[topic]) % len(peers)]
            task = asyncio.create_task(self._dispatch(topic, endpoint, msg, fut))
            self._tasks.add(task)
            task.add_done_callback(self._finisher(sem))

    def _finisher(self, sem: asyncio.Semaphore) -> Any:
        def done(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            sem.release()

        return done

    async def _dispatch(self, topic: str, endpoint: object, msg: dict[str, Any],
                        fut: asyncio.Future[Any] | None) -> None:
        method = msg.get("method", "")
        known = False
        try:
            handler = dispatch.resolve(topic, endpoint, method)
            known = True
            kwargs = dispatch.admit(handler, msg.get("v"), self.version, msg.get("args", {}))
            result = await handler(**kwargs)
            if fut is not None and not fut.done():
                fut.set_result(json.loads(json.dumps(result)))
        except asyncio.CancelledError:
            if fut is not None and not fut.done():
                fut.cancel()
            raise
        except Exception as exc:
            control.bus_failure(topic, str(method) if known else "(unknown)")
            if fut is not None:
                if not fut.done():
                    err = exc if isinstance(exc, CumuloError) else RemoteError(type(exc).__name__, str(exc))
                    fut.set_exception(err)
            else:
                LOG.exception("cast %s.%s failed", topic, method)
