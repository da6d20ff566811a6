"""The reverter of multi-step host changes (cumulo.host.revert): undos run last first, only when
the block fails or is cancelled before commit, each whatever the others do."""

from __future__ import annotations

import asyncio

import pytest

from cumulo.host.revert import Reverter


async def test_a_failed_block_undoes_its_steps_last_first() -> None:
    done: list[str] = []

    async def drop(what: str) -> None:
        await asyncio.sleep(0)
        done.append(what)

    with pytest.raises(RuntimeError, match="step 3"):
        async with Reverter() as r:
            r.add(drop, "dir")
            r.add(done.append, "netns")  # a plain function too
            r.add(drop, what="disk")
            raise RuntimeError("step 3 failed")
    assert done == ["disk", "netns", "dir"]


async def test_a_committed_block_undoes_nothing() -> None:
    done: list[str] = []
    async with Reverter() as r:
        r.add(done.append, "dir")
        r.commit()
    assert done == []
    with pytest.raises(ValueError):
        async with Reverter() as r:
            r.add(done.append, "before")
            r.commit()
            r.add(done.append, "after")  # a step after a commit is undone on its own
            raise ValueError
    assert done == ["after"]


async def test_a_failing_undo_does_not_stop_the_others_nor_hide_the_cause(caplog: pytest.LogCaptureFixture) -> None:
    done: list[str] = []

    def broken() -> None:
        raise OSError("busy")

    with pytest.raises(KeyError):
        async with Reverter() as r:
            r.add(done.append, "first")
            r.add(broken)
            raise KeyError("cause")
    assert done == ["first"]
    assert "undo" in caplog.text and "busy" in caplog.text


async def test_a_cancelled_block_still_undoes_to_the_end() -> None:
    done: list[str] = []
    started = asyncio.Event()

    async def slow_undo() -> None:
        await asyncio.sleep(0.01)
        done.append("undone")

    async def block() -> None:
        async with Reverter() as r:
            r.add(slow_undo)
            started.set()
            await asyncio.Event().wait()  # never set: only a cancel ends it

    task = asyncio.create_task(block())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert done == ["undone"]
