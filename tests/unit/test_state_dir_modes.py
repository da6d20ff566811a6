"""The state dir and the SQLite database are private to the cloud's user, whatever the umask."""

from __future__ import annotations

import os
from pathlib import Path

from cumulo.db import Database
from cumulo.runtime import private_state_dir


async def test_sqlite_database_is_0600_even_under_a_lax_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'cumulo.sqlite'}")
        await db.create_all()
        await db.dispose()
    finally:
        os.umask(old)
    made = sorted(p.name for p in tmp_path.iterdir())
    assert "cumulo.sqlite" in made
    for p in tmp_path.iterdir():
        assert p.stat().st_mode & 0o777 == 0o600, p


def test_an_existing_state_dir_is_narrowed_to_0700(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    private_state_dir(state)
    assert state.stat().st_mode & 0o777 == 0o700
    fresh = tmp_path / "a" / "fresh"
    private_state_dir(fresh)
    assert fresh.stat().st_mode & 0o777 == 0o700
