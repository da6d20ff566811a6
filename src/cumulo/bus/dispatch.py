"""What every transport does alike with a message: find the method, admit its version, carry errors.

Errors cross a process boundary by class name (a cumulo.errors class arrives as itself).

The version rule (a rolling upgrade, see docs/architecture.md "Scale out (issue 14): the bus"):
a consumer at version N handles a message of version v when v is in its method's declared
versions (`bus.base.versions`, default {N-1, N}); a message one version ahead (v == N+1, sent by
a peer already upgraded) is handled too, its arguments the old method does not take dropped,
since a version step may only add optional arguments. Anything else is unknown: `Unsupported`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from cumulo import errors
from cumulo.bus.base import BusUnavailable, RemoteError, UnsupportedVersion

LOG = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[Any]]


# Public methods of the endpoints that are not messages: their lifecycle (a message "stop" would
# stop a conductor, a scheduler or a host's agent) and the host agent's generic `dispatch` (which
# would reach any method of a node, `_` ones too). No RPC API sends these names.
NOT_MESSAGES = frozenset({"start", "stop", "dispatch", "recover", "heartbeat", "retire_stale_nodes"})


def resolve(topic: str, endpoint: object, method: str) -> Handler:
    """The endpoint's public async method `method`, or NotFound (never a `_` name, nor NOT_MESSAGES)."""
    allowed = isinstance(method, str) and not method.startswith("_") and method not in NOT_MESSAGES
    handler = getattr(endpoint, method, None) if allowed else None
    if handler is None or not callable(handler):
        raise RemoteError("NotFound", f"{topic} has no method {method!r}", 404)
    return handler  # type: ignore[no-any-return]


def admit(handler: Handler, version: Any, own: int, args: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments to call `handler` with for a message of `version`, or UnsupportedVersion."""
    declared = getattr(handler, "__bus_versions__", None) or frozenset({own - 1, own})
    if not isinstance(version, int):
        raise UnsupportedVersion(f"message without a version (consumer speaks {own})")
    if version in declared:
        return args
    if version == own + 1:
        params = inspect.signature(handler).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return args
        dropped = sorted(set(args) - set(params))
        if dropped:
            LOG.info("message v%d to a v%d consumer: arguments %s dropped", version, own, dropped)
        return {k: v for k, v in args.items() if k in params}
    raise UnsupportedVersion(f"message version {version} not handled (consumer speaks {own}, accepts "
                             f"{sorted(declared)} and {own + 1})")


def encode_error(exc: BaseException) -> dict[str, Any]:
    """{"type", "message", "code"} of an exception a handler raised."""
    if isinstance(exc, RemoteError):
        return {"type": exc.exc_type, "message": exc.message, "code": exc.code}
    if isinstance(exc, errors.CumuloError):
        return {"type": type(exc).__name__, "message": exc.message, "code": exc.code}
    return {"type": type(exc).__name__, "message": str(exc), "code": 500}


_OWN = {c.__name__: c for c in (BusUnavailable, UnsupportedVersion)}


def decode_error(body: Any) -> Exception:
    """The exception a caller raises for an encoded error: the cumulo.errors (or bus) class of that
    name when there is one (so `except NotFound` works across a broker), else RemoteError."""
    if not isinstance(body, dict):
        return RemoteError("RemoteError", "malformed error reply")
    name, message = str(body.get("type", "RemoteError")), str(body.get("message", ""))
    raw = body.get("code")
    code = raw if isinstance(raw, int) else 500
    cls = _OWN.get(name) or getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, errors.CumuloError):
        try:
            return cls(message)
        except TypeError:
            pass
    return RemoteError(name, message, code)
