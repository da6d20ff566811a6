"""Cinder's microversions: `OpenStack-API-Version: volume 3.x` negotiated for /v3 requests.

No header means 3.0, "latest" the maximum; a malformed version is 400, one outside 3.0-3.70 is
406 (Cinder's InvalidGlobalAPIVersion). Every /v3 answer names the version it was served at and
carries `Vary: OpenStack-API-Version`.
"""

from __future__ import annotations

import json
import re
from typing import NamedTuple

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from cumulo.web.http import with_headers


class Version(NamedTuple):
    """A volume microversion; compares with plain (major, minor) tuples."""

    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


MIN_VERSION = Version(3, 0)
MAX_VERSION = Version(3, 70)
SCOPE_KEY = "cumulo.volume_microversion"


def text(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


def request_version(request: Request) -> Version:
    return request.scope.get(SCOPE_KEY, MIN_VERSION)  # type: ignore[no-any-return]


def requested(headers: dict[str, str]) -> str | None:
    value = headers.get("openstack-api-version")
    if not value:
        return None
    for part in value.split(","):
        service, _, version = part.strip().partition(" ")
        if service.lower() in ("volume", "block-storage"):
            return version.strip()
    return None


def parse(value: str) -> Version | None:
    if value.strip().lower() == "latest":
        return MAX_VERSION
    m = re.fullmatch(r"\s*([1-9]\d{0,2})\.(0|[1-9]\d{0,3})\s*", value)
    return Version(int(m.group(1)), int(m.group(2))) if m else None


def _fault(status: int, name: str, message: str) -> bytes:
    return json.dumps({name: {"code": status, "message": message}}).encode()


class VolumeMicroversions:
    """Negotiates the version of /v3 requests and echoes it in the answer's headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        root: str = scope.get("root_path", "")
        inner = path[len(root):] if root and path.startswith(root) else path
        if scope["type"] != "http" or not inner.startswith("/v3"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        asked = requested(headers)
        version = MIN_VERSION
        error: tuple[int, bytes] | None = None
        if asked is not None:
            parsed = parse(asked)
            if parsed is None:
                error = 400, _fault(400, "badRequest", f"Invalid API version request string {asked[:32]}: it must be of format MajorNum.MinorNum.")
            elif not (MIN_VERSION <= parsed <= MAX_VERSION):
                error = 406, _fault(406, "computeFault", f"Version {asked[:32]} is not supported by the API. Minimum is {text(MIN_VERSION)} and maximum is {text(MAX_VERSION)}.")
            else:
                version = parsed
        scope[SCOPE_KEY] = version
        extra = [(b"openstack-api-version", f"volume {text(version)}".encode()), (b"vary", b"OpenStack-API-Version")]
        await with_headers(self.app, scope, receive, send, extra, error)
