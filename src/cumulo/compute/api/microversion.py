"""Compute microversions: negotiation from headers, and helpers to keep differences in schemas.

Both headers are honoured: `OpenStack-API-Version: compute X.Y` and `X-OpenStack-Nova-API-Version`.
No header means the minimum; "latest" means the maximum; outside the range is 406.
"""

from __future__ import annotations

import functools
import json
import re
from typing import NamedTuple

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from cumulo.web.http import with_headers


class Version(NamedTuple):
    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    @classmethod
    def parse(cls, text: str) -> Version:
        m = re.fullmatch(r"\s*([1-9]\d*)\.(0|[1-9]\d*)\s*", text)
        if not m:
            raise ValueError(text)
        return cls(int(m.group(1)), int(m.group(2)))


MIN_VERSION = Version(2, 1)
MAX_VERSION = Version(2, 79)

SCOPE_KEY = "cumulo.microversion"


@functools.lru_cache(maxsize=512)
def v(text: str) -> Version:
    """The version a literal names (cached: the handlers compare with a few dozen literals per request)."""
    return Version.parse(text)


def request_version(request: Request) -> Version:
    return request.scope.get(SCOPE_KEY, MIN_VERSION)  # type: ignore[no-any-return]


def requested_text(headers: dict[str, str]) -> str | None:
    value = headers.get("openstack-api-version")
    if value:
        # "compute 2.47" (may be a comma-separated list for several services)
        for part in value.split(","):
            service, _, version = part.strip().partition(" ")
            if service.lower() == "compute":
                return version.strip()
    legacy = headers.get("x-openstack-nova-api-version")
    return legacy.strip() if legacy else None


def _fault(status: int, name: str, message: str) -> tuple[int, bytes]:
    return status, json.dumps({name: {"code": status, "message": message}}).encode()


class MicroversionMiddleware:
    """Negotiates the version for /v2.1 requests and echoes it in the response headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        text = requested_text(headers)
        version = MIN_VERSION
        error: tuple[int, bytes] | None = None
        if text is not None:
            if text.strip().lower() == "latest":
                version = MAX_VERSION
            else:
                try:
                    version = Version.parse(text)
                except ValueError:
                    error = _fault(400, "badRequest", f"API Version String {text} is of invalid format. Must be of format MajorNum.MinorNum.")
                else:
                    if not (MIN_VERSION <= version <= MAX_VERSION):
                        error = _fault(
                            406,
                            "computeFault",
                            f"Version {text} is not supported by the API. Minimum is {MIN_VERSION} and maximum is {MAX_VERSION}.",
                        )
        scope[SCOPE_KEY] = version
        extra = [
            (b"openstack-api-version", f"compute {version}".encode()),
            (b"x-openstack-nova-api-version", str(version).encode()),
            (b"vary", b"OpenStack-API-Version, X-OpenStack-Nova-API-Version"),
        ]
        await with_headers(self.app, scope, receive, send, extra, error)
