"""Host tokens: a compute host reads and writes an image's bytes without a tenant's token (issue 14).

A `cumulo compute` host that does not run in the image service's process downloads image bytes
from the image API (`image.remote.RemoteImages`) and uploads snapshots back. It acts for the cloud,
as Nova's service user does, so it is not bound to the image's project: it sends

    X-Cumulo-Host: <host name>
    X-Cumulo-Host-Token: <hosts.secrets.sign(secret "image", "image", "<host>|<image id>")>

which `GET` and `PUT /v2/images/{id}/file` accept in place of X-Auth-Token, for that one image,
until the token expires (TOKEN_TTL). A bad, expired or foreign token is a 401; the image's own
state rules (no data yet, not queued for an upload) answer as for an admin.
"""

from __future__ import annotations

from starlette.requests import Request

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.db import Database
from cumulo.hosts.secrets import secret, sign, verify

SECRET = "image"  # the cluster secret's name
PURPOSE = "image"
HOST_HEADER = "X-Cumulo-Host"
TOKEN_HEADER = "X-Cumulo-Host-Token"
TOKEN_TTL = 120.0  # seconds: one request's start; a download in progress is not cut at expiry


def subject(host: str, image_id: str) -> str:
    return f"{host}|{image_id}"


async def host_headers(db: Database, host: str, image_id: str, *, ttl: float = TOKEN_TTL) -> dict[str, str]:
    """The headers a compute host sends to read or write `image_id`'s bytes."""
    key = await secret(db, SECRET)
    return {HOST_HEADER: host, TOKEN_HEADER: sign(key, PURPOSE, subject(host, image_id), ttl)}


async def host_context(request: Request, db: Database, image_id: str) -> RequestContext | None:
    """The cloud's own context for a request carrying a valid host token for `image_id`; None when
    the request carries none (the caller authenticates X-Auth-Token as usual); 401 when it is bad."""
    token = request.headers.get(TOKEN_HEADER)
    if token is None:
        return None
    host = request.headers.get(HOST_HEADER) or ""
    # "|" separates the signed subject's parts: a host name never has one
    if not host or len(host) > 255 or "|" in host or not verify(await secret(db, SECRET), PURPOSE, subject(host, image_id), token):
        raise errors.Unauthorized("The host token is invalid or expired for this image.")
    return RequestContext(user_id=None, project_id=None, roles=frozenset({"admin", "member", "reader"}),
                          user_name=f"host:{host}")
