"""The conductor's batched select turns (compute/conductor/batching.py, issue 14)."""

from __future__ import annotations

import asyncio
from typing import Any

from cumulo.compute.conductor.batching import SelectTurns
from cumulo.errors import NoValidHost


class Recorder:
    """A scheduler that answers each request with its own name, and records the messages."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def select_destinations(self, request_spec: dict[str, Any], num_instances: int) -> list[dict[str, Any]]:
        self.calls.append([request_spec["name"]])
        await self.gate.wait()
        if request_spec["name"].startswith("none"):
            raise NoValidHost("No valid host was found. none")
        return [{"host": request_spec["name"]}]

    async def select_batch(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.calls.append([r["request_spec"]["name"] for r in requests])
        await self.gate.wait()
        return [{"error": "No valid host was found. none"} if r["request_spec"]["name"].startswith("none")
                else {"destinations": [{"host": r["request_spec"]["name"]}]} for r in requests]


async def test_builds_waiting_for_a_turn_select_in_one_message_and_the_turn_outlasts_their_claims() -> None:
    sched, lock = Recorder(), asyncio.Lock()
    turns = SelectTurns(lambda: sched, lock)
    claimed: list[str] = []
    in_turn: list[int] = []
    active = 0

    async def build(name: str) -> str:
        nonlocal active
        async with turns.select({"name": name}) as dests:
            active += 1
            in_turn.append(active)
            await asyncio.sleep(0.01)  # the claim
            claimed.append(dests[0]["host"])
            active -= 1
            return str(dests[0]["host"])

    sched.gate.clear()
    first = asyncio.create_task(build("a"))
    await asyncio.sleep(0)  # "a" leads a turn of its own; the rest queue behind it
    rest = [asyncio.create_task(build(n)) for n in ("b", "c", "none-d", "e")]
    await asyncio.sleep(0.01)
    sched.gate.set()
    assert await first == "a"
    results = await asyncio.gather(*rest, return_exceptions=True)
    assert results[:2] == ["b", "c"] and isinstance(results[2], NoValidHost) and results[3] == "e"
    # One message for "a", one for the four that waited meanwhile; the lock held through each turn.
    assert sched.calls == [["a"], ["b", "c", "none-d", "e"]]
    assert not lock.locked() and sorted(claimed) == ["a", "b", "c", "e"]
    assert max(in_turn) == 3  # b, c and e claimed in one turn, never beside "a"


async def test_a_turn_alone_excludes_batches_and_the_lock_is_the_migrations_lock() -> None:
    sched, lock = Recorder(), asyncio.Lock()
    turns = SelectTurns(lambda: sched, lock)
    order: list[str] = []

    async def alone() -> None:
        async with turns.alone():
            assert lock.locked()
            order.append("group-start")
            await asyncio.sleep(0.02)
            order.append("group-end")

    async def build() -> None:
        async with turns.select({"name": "x"}):
            order.append("build")

    async def migration() -> None:
        async with lock:  # what conductor/migrate.py does around its select and claim
            order.append("migration")

    g = asyncio.create_task(alone())
    await asyncio.sleep(0)
    await asyncio.gather(build(), migration(), g)
    assert order[:2] == ["group-start", "group-end"] and set(order[2:]) == {"build", "migration"}
    assert not lock.locked()


async def test_cancelled_builds_leave_their_turn() -> None:
    sched, lock = Recorder(), asyncio.Lock()
    turns = SelectTurns(lambda: sched, lock)

    async def build(name: str, hold: asyncio.Event) -> None:
        async with turns.select({"name": name}):
            await hold.wait()

    sched.gate.clear()
    release_a = asyncio.Event()
    a = asyncio.create_task(build("a", release_a))
    await asyncio.sleep(0)
    stuck = [asyncio.create_task(build(n, asyncio.Event())) for n in ("b", "c")]  # the next turn, never done
    await asyncio.sleep(0.01)
    sched.gate.set()
    release_a.set()
    await a
    await asyncio.sleep(0.01)
    late = asyncio.create_task(build("d", asyncio.Event()))  # waits behind their turn
    await asyncio.sleep(0.01)
    assert sched.calls == [["a"], ["b", "c"]] and lock.locked()
    for t in [*stuck, late]:
        t.cancel()
    await asyncio.gather(*stuck, late, return_exceptions=True)
    assert not lock.locked()
    async with asyncio.timeout(5), turns.select({"name": "e"}) as dests:  # nobody holds a turn forever
        assert dests[0]["host"] == "e"
    assert sched.calls[-1] == ["e"] and not lock.locked()
