"""Fixtures the contract tests share: `lab`, the data plane's lab (_netplane_lab.Lab), removed after
each test (a module that needs another kind of lab, the DHCP and router tests, defines its own); and
`svc`, a network service over a fresh SQLite DB in the test's temp dir."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from _netplane_lab import Lab

from cumulo import conf as conf_mod
from cumulo.db import Database
from cumulo.network.service import NetworkService


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    lab = Lab()
    try:
        yield lab
    finally:
        await lab.cleanup()


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[NetworkService]:
    conf = conf_mod.load(env={}, state_dir=tmp_path / "state")
    conf.state_dir.mkdir(parents=True, exist_ok=True)
    db = Database(f"sqlite+aiosqlite:///{conf.state_dir / 'test.sqlite'}")
    await db.create_all()
    try:
        yield NetworkService(db, conf)
    finally:
        await db.dispose()
