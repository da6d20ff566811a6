"""The conductor's select turn, batched: builds waiting for it go to the scheduler in one message.

Before, one build at a time held the conductor's select lock around its select and its claims, so
concurrent builds saw each other's claims. Now the builds that queue while a turn runs form the next
batch: one of them (the leader) sends all their request specs in one `select_batch` call (one
scheduler message, one host-state read, one service check, each pick consumed before the next is
ranked), and the turn ends only when every build of the batch has claimed or given up, so the next
batch still sees their claims. The turn holds the conductor's `_select_lock` too, which the
migration paths (conductor/migrate.py, live.py) take around their own select and claim. Builds of a server group take a turn alone (`alone=True`): they read
their group's placed members inside the turn, as before.

Used only by `Conductor._select_and_claim` (SCHED's, issue 14: "batch concurrent requests").
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from cumulo.errors import NoValidHost


class Scheduler(Protocol):
    """What the turns call (compute.rpc.SchedulerAPI)."""

    async def select_destinations(self, request_spec: dict[str, Any], num_instances: int) -> list[dict[str, Any]]: ...

    async def select_batch(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]: ...


@dataclass(eq=False)
class _Ticket:
    spec: dict[str, Any] | None  # None: a turn alone, no select made for it
    dests: asyncio.Future[list[dict[str, Any]]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())
    taken: bool = False  # in a turn: it must leave it


class SelectTurns:
    def __init__(self, scheduler: Callable[[], Scheduler], lock: asyncio.Lock) -> None:
        # Looked up at each turn (tests swap the conductor's scheduler).
        self._scheduler = scheduler
        # The conductor's select lock, held for the whole turn: migrations select and claim under it.
        self._lock = lock
        self._holding = False
        self._cond = asyncio.Condition()
        self._busy = False
        self._left = 0  # builds of the running turn that have not left it yet
        self._waiting: list[_Ticket] = []
        self._notifies: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def select(self, spec: dict[str, Any]) -> AsyncIterator[list[dict[str, Any]]]:
        """The destinations for `spec` (or NoValidHost), selected with the other builds waiting;
        claim inside the block: the turn lasts until every build of the batch left its block."""
        ticket = _Ticket(spec)
        try:
            await self._enter(ticket)
            yield await ticket.dests
        finally:
            self._leave(ticket)

    @contextlib.asynccontextmanager
    async def alone(self) -> AsyncIterator[None]:
        """A turn of one's own (a server group's build selects and claims inside it)."""
        ticket = _Ticket(None)
        try:
            await self._enter(ticket)
            yield
        finally:
            self._leave(ticket)

    async def _enter(self, ticket: _Ticket) -> None:
        batch: list[_Ticket] = []
        async with self._cond:
            self._waiting.append(ticket)
            while not ticket.taken:
                if not self._busy:
                    batch = self._take(ticket)
                    break
                await self._cond.wait()
        if batch:
            await self._lock.acquire()
            self._holding = True
            await self._lead(batch)

    def _take(self, leader: _Ticket) -> list[_Ticket]:
        """The leader's batch: itself alone when it asked for that, else every waiting select."""
        if leader.spec is None:
            batch = [leader]
        else:
            batch = [t for t in self._waiting if t.spec is not None]
        self._waiting = [t for t in self._waiting if t not in batch]
        for t in batch:
            t.taken = True
        self._busy, self._left = True, len(batch)
        return batch

    async def _lead(self, batch: list[_Ticket]) -> None:
        selects = [t for t in batch if t.spec is not None]
        try:
            if len(selects) == 1:  # a batch of one: the plain message (an older scheduler serves it too)
                (only,) = selects
                only.dests.set_result(await self._scheduler().select_destinations(only.spec or {}, 1))
            elif selects:
                results = await self._scheduler().select_batch(
                    [{"request_spec": t.spec, "num_instances": 1} for t in selects])
                for t, r in zip(selects, results, strict=True):
                    if "error" in r:
                        t.dests.set_exception(NoValidHost(str(r["error"])))
                    else:
                        t.dests.set_result(list(r["destinations"]))
        except Exception as exc:
            for t in selects:
                if not t.dests.done():
                    t.dests.set_exception(exc)
        finally:
            for t in batch:
                if not t.dests.done():
                    t.dests.set_result([]) if t.spec is None else t.dests.cancel()
            self._notify()

    def _leave(self, ticket: _Ticket) -> None:
        """Synchronous, so a cancelled build still leaves its turn."""
        if not ticket.taken:
            if ticket in self._waiting:
                self._waiting.remove(ticket)
            return
        ticket.taken = False
        self._left -= 1
        if self._left <= 0:
            self._busy = False
            if self._holding:
                self._holding = False
                self._lock.release()
            self._notify()

    def _notify(self) -> None:
        async def wake() -> None:
            async with self._cond:
                self._cond.notify_all()

        task = asyncio.ensure_future(wake())
        self._notifies.add(task)
        task.add_done_callback(self._notifies.discard)
