"""OCCI's fault format and the headers every OCCI answer carries (GFD.223 §5).

Every response, faults included, says `Server: cumulo/<version> OCCI/1.2` (GFD.223 §5.3: the server
MUST advertise its OCCI version on each response) and names the renderings it speaks in `Accept`
(§5.2, a SHOULD). A request whose User-Agent names a higher OCCI
version than 1.2 gets 501 Not Implemented, as §5.3 prescribes.

A fault is the status GFD.223 prescribes and a short message in the rendering the client asked for:
- text/plain (also the fallback for anything else, */* or no Accept): the message as the body;
- text/occi: the message as a short text body too (the text/occi rendering has no error form; a
  header-only client still gets the status), Content-Type text/occi;
- application/occi+json (or application/json): {"error": {"code": 404, "message": "..."}}.
Negotiation here never fails: a fault must be answerable even when the Accept header is the problem.
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cumulo import __version__, errors
from cumulo.occi.render.base import media_ranges

OCCI_VERSION = (1, 2)
SERVER = f"cumulo/{__version__} OCCI/{OCCI_VERSION[0]}.{OCCI_VERSION[1]}"
# GFD.223 §5.2: the server SHOULD name the renderings it speaks in a response Accept header.
ACCEPTED = "text/plain, text/occi, application/occi+json, text/uri-list"
_CLIENT_VERSION = re.compile(r"\bOCCI/(\d{1,6})\.(\d{1,6})")


class OcciNotImplemented(errors.CumuloError):
    """A feature this server does not implement (GFD.223: 501 Not Implemented)."""

    code = 501


_FAULT_KINDS = {"application/occi+json": "json", "application/json": "json", "text/occi": "text/occi",
                "text/occi+plain": "text/occi+plain"}  # GFD.229 §6: text/occi+plain is text/plain's other name


def fault_media_type(accept_values: list[str]) -> str:
    """The fault rendering for the Accept header(s): the first named OCCI rendering wins, by q
    order; anything unknown falls back to text/plain."""
    best: tuple[float, int, str] | None = None
    for media, q, pos in media_ranges([v[:8192] for v in accept_values]):
        kind = _FAULT_KINDS.get(media)
        if kind is not None and q > 0 and (best is None or (q, -pos) > (best[0], best[1])):
            best = (q, -pos, kind)
    return best[2] if best else "text/plain"


def fault_body(status: int, message: str, accept_values: list[str]) -> tuple[bytes, str]:
    """(body, content type) of a fault."""
    message = " ".join(message.split())
    if not message:
        try:
            message = HTTPStatus(status).phrase
        except ValueError:
            message = "Error"
    kind = fault_media_type(accept_values)
    if kind == "json":
        body = json.dumps({"error": {"code": status, "message": message}}, ensure_ascii=True).encode()
        return body, "application/occi+json"
    # Text: one line; lone surrogates (from a hostile path) cannot be encoded, so they are replaced.
    text = message.encode("utf-8", "replace") + b"\n"
    if kind == "text/occi":
        return text, "text/occi"
    return text, f"{'text/occi+plain' if kind == 'text/occi+plain' else 'text/plain'}; charset=utf-8"


def render_fault(status: int, message: str, request: Request) -> Response:
    """family_app's fault renderer for OCCI (the Server header is added by `OcciHeaders`)."""
    body, content_type = fault_body(status, message, request.headers.getlist("accept"))
    return Response(body, status_code=status, media_type=content_type)


def client_version(user_agent: str) -> tuple[int, int] | None:
    """The OCCI version a User-Agent names (`... OCCI/1.2`), None when it names none."""
    m = _CLIENT_VERSION.search(user_agent)
    return (int(m.group(1)), int(m.group(2))) if m else None


class OcciHeaders:
    """ASGI middleware around the OCCI app: the Server header on every response, and 501 for a
    client whose User-Agent asks for an OCCI version above 1.2."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [(k.lower(), v) for k, v in scope.get("headers") or ()]
        agents = [v.decode("latin-1") for k, v in headers if k == b"user-agent"]
        version = max((v for v in map(client_version, agents) if v is not None), default=None)
        server = (b"server", SERVER.encode())
        served = (b"accept", ACCEPTED.encode())

        async def send_with_server(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [(k, v) for k, v in message.get("headers", [])
                                      if k.lower() not in (b"server", b"accept")]
                message["headers"] += [server, served]
            await send(message)

        if version is not None and version > OCCI_VERSION:
            accept = [v.decode("latin-1") for k, v in headers if k == b"accept"]
            body, content_type = fault_body(
                501, f"OCCI/{version[0]}.{version[1]} is not implemented: this server speaks {SERVER.split()[-1]}",
                accept,
            )
            await send_with_server({"type": "http.response.start", "status": 501, "headers": [
                (b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send_with_server)
