"""In-process transport: one asyncio queue per topic, each message handled in its own task."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from cumulo.bus.base import ENVELOPE_VERSION
from cumulo.errors import CumuloError
from cumulo.metrics import control

LOG = logging.getLogger(__name__)


class RemoteError(CumuloError):
    """A `call` whose handler raised; carries the remote exception's class name."""

    def __init__(self, exc_type: str, message: str) -> None:
        super().__init__(message)
        self.exc_type = exc_type


class InprocBus:
    def __init__(self, max_concurrency_per_topic: int = 256) -> None:
        self._queues: dict[str, asyncio.Queue[tuple[dict[str, Any], asyncio.Future[Any] | None]]] = {}
        self._endpoints: dict[str, object] = {}
        self._consumers: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._limit = max_concurrency_per_topic
        self._running = False

    def _queue(self, topic: str) -> asyncio.Queue[tuple[dict[str, Any], asyncio.Future[Any] | None]]:
        # A cast to a topic nobody serves yet waits in its queue, as it would in a broker.
        return self._queues.setdefault(topic, asyncio.Queue())

    @staticmethod
    def _envelope(method: str, args: dict[str, Any]) -> dict[str, Any]:
        # Round-trip through JSON so nothing in-process can rely on shared objects.
        return json.loads(json.dumps({"v": ENVELOPE_VERSION, "method": method, "args": args}))  # type: ignore[no-any-return]

    async def cast(self, topic: str, method: str, **args: Any) -> None:
        control.bus_message(topic, method, "cast")
        await self._queue(topic).put((self._envelope(method, args), None))

    async def call(self, topic: str, method: str, *, timeout: float = 60.0, **args: Any) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        control.bus_message(topic, method, "call")
        await self._queue(topic).put((self._envelope(method, args), fut))
        return await asyncio.wait_for(fut, timeout)

    def serve(self, topic: str, endpoint: object) -> None:
        self._endpoints[topic] = endpoint
        self._queue(topic)
        if self._running and topic not in self._consumers:
            self._consumers[topic] = asyncio.create_task(self._consume(topic))

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
            msg, fut = await queue.get()
            await sem.acquire()
            task = asyncio.create_task(self._dispatch(topic, msg, fut))
            self._tasks.add(task)
            task.add_done_callback(self._finisher(sem))

    def _finisher(self, sem: asyncio.Semaphore) -> Any:
        def done(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            sem.release()

        return done

    async def _dispatch(self, topic: str, msg: dict[str, Any], fut: asyncio.Future[Any] | None) -> None:
        method = msg.get("method", "")
        endpoint = self._endpoints[topic]
        handler = getattr(endpoint, method, None) if not method.startswith("_") else None
        try:
            if handler is None:
                raise RemoteError("NotFound", f"{topic} has no method {method!r}")
            result = await handler(**msg.get("args", {}))
            if fut is not None and not fut.done():
                fut.set_result(json.loads(json.dumps(result)))
        except asyncio.CancelledError:
            if fut is not None and not fut.done():
                fut.cancel()
            raise
        except Exception as exc:
            control.bus_failure(topic, str(method) if handler is not None else "(unknown)")
            if fut is not None:
                if not fut.done():
                    err = exc if isinstance(exc, CumuloError) else RemoteError(type(exc).__name__, str(exc))
                    fut.set_exception(err)
            else:
                LOG.exception("cast %s.%s failed", topic, method)
