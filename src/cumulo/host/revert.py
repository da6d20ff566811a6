"""The reverter of multi-step host changes (Incus's shared/revert): register an undo after each
step; when the block fails (or is cancelled) before `commit()`, every undo runs, the last first.

    async with Reverter() as r:
        await make_netns(name)
        r.add(drop_netns, name)
        ...
        r.commit()

An undo may be a plain function or a coroutine function. Each runs whatever the others did (one
that raises is logged and the next still runs), and the block's own exception is what propagates.
The undos of a cancelled block run to their end (shielded): a half-made change never stays behind
because the caller gave up waiting.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any

LOG = logging.getLogger(__name__)


class Reverter:
    def __init__(self) -> None:
        self._undo: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []

    def add(self, undo: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run `undo(*args, **kwargs)` if the block fails from here on."""
        self._undo.append((undo, args, kwargs))

    def commit(self) -> None:
        """The change is whole: forget every undo."""
        self._undo.clear()

    async def revert(self) -> None:
        """Run the undos registered so far, the last first, and forget them."""
        undo, self._undo = self._undo, []
        for fn, args, kwargs in reversed(undo):
            try:
                result = fn(*args, **kwargs)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                LOG.exception("undo %s failed", getattr(fn, "__qualname__", fn))

    async def __aenter__(self) -> Reverter:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if exc_type is not None and self._undo:
            await asyncio.shield(self.revert())
