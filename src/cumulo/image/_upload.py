"""The request side of image uploads (PUT /file and PUT /stage): content type, size headers, body.

Shared by `api` (PUT /file) and `imports` (PUT /stage); the body is streamed as it arrives."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import ClientDisconnect, Request

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.image.service import ImageService

OCTET_STREAM = "application/octet-stream"


def header_int(request: Request, name: str) -> int | None:
    raw = request.headers.get(name)
    if raw is None:
        return None
    if not raw.strip().isdigit():
        raise errors.Invalid("Invalid or missing image size in request headers.")
    return int(raw)


async def body_chunks(request: Request) -> AsyncIterator[bytes]:
    """The request body as it arrives; a client that hangs up mid-upload is a client error."""
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect:
        raise errors.Invalid("The client disconnected before the image data was complete.") from None


async def receive(request: Request, svc: ImageService, ctx: RequestContext, final: str = "active") -> None:
    """Store the request body as the image's data (`final`: active for /file, uploading for /stage).
    Only application/octet-stream is taken; a declared size over the cap is refused before a byte."""
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if ctype != OCTET_STREAM:
        raise errors.UnsupportedMediaType(f"Content type '{ctype or None}' is not supported; use {OCTET_STREAM}")
    expected = header_int(request, "x-openstack-image-size")
    length = header_int(request, "content-length")
    if length is not None and length > svc.size_cap:
        raise errors.PayloadTooLarge(f"The incoming image is too large: it exceeds {svc.size_cap} bytes.")
    await svc.upload(ctx, request.path_params["image_id"], body_chunks(request), expected, final=final)
