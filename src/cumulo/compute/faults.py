"""How workers turn an exception into an instance fault (message shown to users, details for admins)."""

from __future__ import annotations

import traceback

from cumulo.errors import CumuloError


def fault_text(exc: BaseException) -> tuple[str, str]:
    """(message, details): the domain message (or the exception's type and text), and the traceback."""
    message = exc.message if isinstance(exc, CumuloError) else f"{type(exc).__name__}: {exc}"
    details = "".join(traceback.format_exception(exc))[-4000:]
    return message, details
