"""Task callbacks: one POST of the Task JSON when a task ends, to allowed hosts only (no SSRF).

`check(url, allowed)` runs at request time (errors.Invalid naming the URL, which the API answers
400) and again right before the POST: scheme http or https; the host a loopback literal
(127.0.0.0/8, ::1) or a name/address listed in conf.paas.callback_hosts. A listed name is resolved
once and EVERY address it resolves to must be loopback or itself listed; link-local (169.254/16,
fe80::/10), private, multicast, reserved and unspecified addresses are refused unless listed.
The POST goes to the address checked (no second resolution), with the URL's Host header, no
redirects, a 5 s timeout, one attempt, the answer's body unread. `callback_state` on the task records the outcome;
"sending" is set by compare-and-swap first, so a resumed engine never posts twice.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from cumulo import errors
from cumulo.db import Database
from cumulo.paas.models import paas_tasks

LOG = logging.getLogger(__name__)
TIMEOUT = 5.0
T = paas_tasks.c
Resolver = Callable[[str, int], list[str]]


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    host: str  # as written in the URL (the Host header, the TLS server name)
    port: int
    path: str  # path + query
    address: str  # the checked address the POST connects to


def _system_resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _allowed_address(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, allowed: Iterable[str]) -> bool:
    if addr.is_loopback:
        return True
    for entry in allowed:
        try:
            if ipaddress.ip_address(entry) == addr:
                return True
        except ValueError:
            try:
                if addr in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


def check(url: str, allowed: Iterable[str], *, resolve: Resolver = _system_resolve) -> Target:
    """The target to POST to, or errors.Invalid naming why `url` is refused (blocking: resolves)."""
    allowed = tuple(a.strip().lower() for a in allowed if a.strip())
    if not isinstance(url, str) or len(url) > 2048:
        raise errors.Invalid("callback: a URL of at most 2048 characters is required")
    if any(c <= " " or c == "\x7f" for c in url):
        raise errors.Invalid(f"callback {url[:200]!r}: a URL may not hold spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise errors.Invalid(f"callback {url!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise errors.Invalid(f"callback {url!r}: only http and https URLs are allowed")
    host = (parts.hostname or "").lower()
    if not host:
        raise errors.Invalid(f"callback {url!r} names no host")
    if parts.username or parts.password:
        raise errors.Invalid(f"callback {url!r}: credentials in the URL are not allowed")
    if port == 0:
        raise errors.Invalid(f"callback {url!r}: port 0 is not a port to send to")
    port = port or (443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    literal = _literal(host)
    if literal is not None:
        if not _allowed_address(literal, allowed):
            raise errors.Invalid(f"callback {url!r}: address {host} is not loopback nor an allowed callback host")
        return Target(url, parts.scheme, host, port, path, str(literal))
    if host not in allowed and host != "localhost":
        raise errors.Invalid(f"callback {url!r}: host {host} is not an allowed callback host")
    try:
        addresses = resolve(host, port)
    except OSError as exc:
        raise errors.Invalid(f"callback {url!r}: host {host} does not resolve ({exc})") from None
    if not addresses:
        raise errors.Invalid(f"callback {url!r}: host {host} does not resolve")
    for text in addresses:
        addr = _literal(text.split("%", 1)[0])
        if addr is None or not _allowed_address(addr, allowed):
            raise errors.Invalid(f"callback {url!r}: host {host} resolves to {text}, which is not allowed")
    return Target(url, parts.scheme, host, port, path, addresses[0].split("%", 1)[0])


async def check_async(url: str, allowed: Iterable[str]) -> Target:
    """`check` off the event loop (name resolution blocks)."""
    return await asyncio.to_thread(check, url, tuple(allowed))


async def post(target: Target, body: Mapping[str, Any]) -> str:
    """One POST; the outcome as callback_state text ("sent <status>" or "failed: <why>")."""
    import httpx

    addr = _literal(target.address)
    netloc = f"[{target.address}]" if addr is not None and addr.version == 6 else target.address
    default = 443 if target.scheme == "https" else 80
    host_header = target.host if target.port == default else f"{target.host}:{target.port}"
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False, trust_env=False) as client:
            # streamed and closed unread: the answer's body is never read (an endless one cannot
            # hold the engine nor fill its memory)
            async with client.stream(
                "POST", f"{target.scheme}://{netloc}:{target.port}{target.path}",
                content=json.dumps(body, default=str).encode(),
                headers={"Host": host_header, "Content-Type": "application/json"}, extensions=extensions,
            ) as response:
                return f"sent {response.status_code}"
    except httpx.HTTPError as exc:
        return f"failed: {type(exc).__name__}: {exc}"[:500]


async def deliver(db: Database, task: Mapping[str, Any], body: Mapping[str, Any], allowed: Iterable[str]) -> str | None:
    """The one POST of a final task's callback (None when it has none or it was already tried)."""
    if not task.get("callback"):
        return None
    async with db.write() as conn:
        took = await conn.execute(
            sa.update(paas_tasks).where(T.id == task["id"], T.callback_state.is_(None)).values(callback_state="sending")
        )
    if not took.rowcount:
        return None
    try:
        target = await check_async(str(task["callback"]), allowed)
        state = await post(target, body)
    except errors.Invalid as exc:
        state = f"refused: {exc}"[:500]
    except Exception as exc:  # noqa: BLE001 - a callback never fails the task
        state = f"failed: {type(exc).__name__}: {exc}"[:500]
    async with db.write() as conn:
        await conn.execute(sa.update(paas_tasks).where(T.id == task["id"]).values(callback_state=state))
    LOG.info("paas: task %s callback %s", task["id"], state)
    return state
