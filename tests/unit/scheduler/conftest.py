"""Scheduler test rig: a temp SQLite DB with compute nodes, their services and placement providers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sched_rig import Hosts

from cumulo import conf as conf_mod
from cumulo.conf import Settings
from cumulo.db import Database
from cumulo.placement.service import Placement


@pytest.fixture
def sched_conf(tmp_path: Path) -> Settings:
    return conf_mod.load(env={}, state_dir=tmp_path / "state", cpu_allocation_ratio=4.0, ram_allocation_ratio=1.0,
                         disk_allocation_ratio=1.0)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'sched.db'}")
    await database.create_all()
    yield database
    await database.dispose()


@pytest.fixture
def placement(db: Database, sched_conf: Settings) -> Placement:
    return Placement(db, sched_conf)


@pytest.fixture
def hosts(db: Database, sched_conf: Settings, placement: Placement) -> Hosts:
    return Hosts(db, sched_conf, placement)


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database on the run's PostgreSQL server, whatever the test mode (tests/_pg.py)."""
    import _pg

    with _pg.fresh_database(request) as url:
        yield url


@pytest.fixture
async def pdb(pg_url: str) -> AsyncIterator[Database]:
    """The schema on `pg_url`: for the tests of real concurrency, which SQLite serialises."""
    database = Database(pg_url)
    await database.create_all()
    yield database
    await database.dispose()
