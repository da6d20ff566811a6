"""Service rows and liveness: every worker registers itself and heartbeats; `is_up` judges the rows.

Nova's rule: a service is up when its last heartbeat is newer than `service_down_time` (60 s by
default, `conf.servicegroup.service_down_time`) and it is not forced down. Workers heartbeat every
`conf.servicegroup.report_interval` seconds (10 by default).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import sqlalchemy as sa

from cumulo.conf import Settings
from cumulo.db import Database, new_uuid, utcnow
from cumulo.hosts.models import services
from cumulo.hosts.zones import zone_of_host

LOG = logging.getLogger(__name__)


def service_down_time(conf: Settings) -> float:
    return conf.servicegroup.service_down_time


def report_interval(conf: Settings) -> float:
    return conf.servicegroup.report_interval


def is_up(row: Mapping[str, Any], conf: Settings, now: dt.datetime | None = None) -> bool:
    """Whether a services row counts as up (recent heartbeat, not forced down)."""
    if row.get("forced_down"):
        return False
    seen: dt.datetime | None = row.get("last_seen_up") or row.get("updated_at") or row.get("created_at")
    if seen is None:
        return False
    now = now or utcnow()
    return abs((now - seen).total_seconds()) <= service_down_time(conf)


async def register_service(
    db: Database, host: str, binary: str, topic: str, availability_zone: str, *, mark_up: bool = True
) -> int:
    """Create or refresh the (host, binary) row; keeps the admin's disabled flag. Returns its id.

    mark_up=False registers without a heartbeat: a compute agent reports up only once it has
    reconciled, which is what the conductor's crash recovery waits for."""
    now = utcnow()
    seen = {"last_seen_up": now, "report_count": services.c.report_count + 1} if mark_up else {}
    async with db.write() as conn:
        if binary.endswith("-compute"):
            # A host an aggregate put in a zone stays there.
            availability_zone = await zone_of_host(conn, host) or availability_zone
        row = (
            await conn.execute(sa.select(services.c.id).where(services.c.host == host, services.c.binary == binary))
        ).first()
        if row is not None:
            await conn.execute(
                sa.update(services)
                .where(services.c.id == row[0])
                .values(topic=topic, availability_zone=availability_zone, updated_at=now, **seen)
            )
            return int(row[0])
        res = await conn.execute(
            sa.insert(services).values(
                uuid=new_uuid(),
                host=host,
                binary=binary,
                topic=topic,
                availability_zone=availability_zone,
                disabled=False,
                forced_down=False,
                last_seen_up=now if mark_up else None,
                report_count=1 if mark_up else 0,
                created_at=now,
                updated_at=now,
            )
        )
        return int(res.inserted_primary_key[0])  # type: ignore[index]


async def heartbeat(db: Database, service_id: int) -> None:
    await heartbeat_many(db, [service_id])


async def heartbeat_many(db: Database, service_ids: list[int]) -> None:
    """One UPDATE for the services (a host's nodes; many fake hosts' beats at once)."""
    now = utcnow()
    async with db.write() as conn:
        await conn.execute(
            sa.update(services)
            .where(services.c.id.in_(sorted(set(service_ids))))
            .values(last_seen_up=now, report_count=services.c.report_count + 1, updated_at=now)
        )


class Heartbeats:
    """Heartbeats of many services of one process, grouped: the beats made while a write runs go in
    the next one (`cumulo compute --fake-hosts 1000`: a thousand heartbeat transactions every
    report_interval became a few; issue 14). `beat` returns once its services' row is written."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._queue: list[tuple[list[int], asyncio.Future[None]]] = []
        self._runner: asyncio.Task[None] | None = None
        self.writes = 0

    async def beat(self, service_ids: list[int]) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((list(service_ids), fut))
        # A runner of a loop that is gone (a test's, a stopped process's) never flushes again.
        if self._runner is None or self._runner.done() or self._runner.get_loop() is not fut.get_loop():
            self._queue = [q for q in self._queue if q[1].get_loop() is fut.get_loop()]
            self._runner = asyncio.create_task(self._run())
        await fut

    async def _run(self) -> None:
        try:
            await asyncio.sleep(0)  # the beats of this moment join
            while self._queue:
                batch, self._queue = self._queue, []
                self.writes += 1
                try:
                    await heartbeat_many(self.db, [sid for ids, _ in batch for sid in ids])
                except Exception as exc:
                    for _, f in batch:
                        if not f.done():
                            f.set_exception(exc)
                    continue
                for _, f in batch:
                    if not f.done():
                        f.set_result(None)
        finally:
            self._runner = None
            for _, f in self._queue:
                f.cancel()
            self._queue.clear()


class Periodic:
    """Runs named coroutines every N seconds until stopped; one failure never stops the loop."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, name: str, interval: float, fn: Callable[[], Awaitable[Any]], *, initial_delay: float | None = None) -> None:
        async def loop() -> None:
            await asyncio.sleep(interval if initial_delay is None else initial_delay)
            while True:
                try:
                    await fn()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    LOG.exception("periodic task %s failed", name)
                await asyncio.sleep(interval)

        self.stop_one(name)
        self._tasks[name] = asyncio.create_task(loop(), name=f"periodic:{name}")

    def stop_one(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class WorkerService:
    """Registration plus heartbeat, shared by the scheduler and the conductor."""

    def __init__(self, db: Database, conf: Settings, binary: str, topic: str, availability_zone: str = "internal") -> None:
        self.db, self.conf = db, conf
        self.binary, self.topic, self.availability_zone = binary, topic, availability_zone
        self.service_id: int | None = None
        self.periodic = Periodic()

    async def start(self) -> None:
        self.service_id = await register_service(
            self.db, self.conf.host_name, self.binary, self.topic, self.availability_zone
        )
        sid = self.service_id
        self.periodic.start("heartbeat", report_interval(self.conf), lambda: heartbeat(self.db, sid))

    async def stop(self) -> None:
        await self.periodic.stop()
