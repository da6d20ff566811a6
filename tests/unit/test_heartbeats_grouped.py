"""Heartbeats of a process's hosts grouped in few writes (hosts/servicegroup.Heartbeats, issue 14)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa

from cumulo.db import Database
from cumulo.hosts import servicegroup
from cumulo.hosts.models import services


async def test_beats_made_at_once_are_one_write_and_each_row_is_up(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'hb.db'}")
    await db.create_all()
    try:
        ids = [await servicegroup.register_service(db, f"h{i}", "nova-compute", f"compute.h{i}", "nova",
                                                   mark_up=False) for i in range(10)]
        beats = servicegroup.Heartbeats(db)
        await asyncio.gather(*(beats.beat([sid]) for sid in ids[:6]), beats.beat(ids[6:8]))
        assert beats.writes == 1
        await beats.beat([ids[0]])  # a later beat: a write of its own
        assert beats.writes == 2
        async with db.read() as conn:
            rows = dict((await conn.execute(sa.select(services.c.id, services.c.report_count)
                                            .where(services.c.id.in_(ids)))).all())
            up = {int(r[0]) for r in await conn.execute(
                sa.select(services.c.id).where(services.c.last_seen_up.is_not(None), services.c.id.in_(ids)))}
        assert up == set(ids[:8])  # the two that never beat stay down
        assert rows[ids[0]] == 2 and rows[ids[1]] == 1 and rows[ids[9]] == 0
    finally:
        await db.dispose()
