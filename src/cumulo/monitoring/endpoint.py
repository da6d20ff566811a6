"""The Prometheus scrape endpoint: `GET /metrics` on its own listen address, for admins only.

Two locks on it, both always on:
- its own address (`metrics_host`/`metrics_port`, loopback:9180 by default; port 0 disables it),
  never the public API port, so tenants reaching the API do not even reach it;
- a credential on every scrape: an admin's Keystone token (`X-Auth-Token`, or
  `Authorization: Bearer <token>`), or the scrape secret, a random string the cloud writes to
  `<state_dir>/metrics-token` (mode 0600, the cloud user's alone) for Prometheus'
  `credentials_file`. No credential is 401, a non-admin's token 403.

The body is rendered in a worker thread: the server collector hands its gathering to the loop
(servers.py), so nothing is read on the event loop and the loop keeps serving while it renders.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import secrets
import socket
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from starlette.types import Receive, Scope, Send

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.metrics import control
from cumulo.monitoring.servers import ServerCollector
from cumulo.web.http import Authenticator, answer_lifespan

if TYPE_CHECKING:
    from cumulo.compute.agent.manager import ComputeManager
    from cumulo.db import Database

LOG = logging.getLogger(__name__)

SECRET_FILE = "metrics-token"
PATH = "/metrics"


def build_registry(managers: Sequence[ComputeManager], db: Database, loop: asyncio.AbstractEventLoop) -> CollectorRegistry:
    """One cloud's registry: the control-plane instruments, this process, the servers."""
    registry = CollectorRegistry()
    for instrument in control.ALL:
        registry.register(instrument)
    ProcessCollector(registry=registry)
    registry.register(ServerCollector(managers, db, loop))
    return registry


def ensure_secret(state_dir: Path) -> str:
    """The scrape secret in <state_dir>/metrics-token (0600), made on first start, kept after."""
    path = state_dir / SECRET_FILE
    with contextlib.suppress(FileNotFoundError):
        text = path.read_text().strip()
        if len(text) >= 32:
            os.chmod(path, 0o600)
            return text
    value = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{SECRET_FILE}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    os.replace(tmp, path)
    return value


def _credential(scope: Scope) -> str | None:
    headers: dict[str, str] = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    token = headers.get("x-auth-token")
    if token:
        return token.strip()
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


class MetricsApp:
    """ASGI app serving GET /metrics to admins (see the module docstring)."""

    def __init__(self, registry: CollectorRegistry, identity: Authenticator, secret: str) -> None:
        self.registry = registry
        self.identity = identity
        self.secret = secret

    async def _admitted(self, scope: Scope) -> tuple[int, str]:
        ctx: RequestContext | None = scope.get("cumulo.context")  # set by in-process test clients
        if ctx is None:
            cred = _credential(scope)
            if cred is None:
                return 401, "Authentication required: an admin token (X-Auth-Token) or the scrape secret.\n"
            if self.secret and hmac.compare_digest(cred.encode(), self.secret.encode()):
                return 200, ""
            try:
                ctx = await self.identity.validate_token(cred)
            except errors.Unauthorized:
                return 401, "The token is not valid.\n"
        if not ctx.is_admin:
            return 403, "Metrics are for admins only.\n"
        return 200, ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        headers: list[tuple[bytes, bytes]] = []
        if scope.get("path") != PATH:
            status, body, ctype = 404, b"Not found: metrics are at /metrics\n", "text/plain; charset=utf-8"
        elif scope.get("method") not in ("GET", "HEAD"):
            status, body, ctype = 405, b"Method not allowed\n", "text/plain; charset=utf-8"
            headers.append((b"allow", b"GET, HEAD"))
        else:
            status, why = await self._admitted(scope)
            if status == 200:
                body = await asyncio.to_thread(generate_latest, self.registry)
                ctype = CONTENT_TYPE_LATEST
            else:
                body, ctype = why.encode(), "text/plain; charset=utf-8"
                if status == 401:
                    headers.append((b"www-authenticate", b'Bearer realm="cumulo-metrics"'))
        headers += [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope.get("method") == "HEAD" else body})


def bind(host: str, port: int) -> socket.socket:
    """The metrics listening socket, bound before the cloud starts so a taken port fails early."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


def url(host: str, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}{PATH}"


def make_server(app: MetricsApp, log_level: str) -> Any:
    """A uvicorn server for the metrics app that leaves signals to the main API server (which
    stops first; the caller then sets should_exit on this one)."""
    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            yield

    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off", timeout_keep_alive=75)
    return _Server(config)
