"""/v2.1/servers/{id}/os-server-password: show and clear the encrypted admin password.

Nova's metadata service lets a guest post its encrypted password, which Nova keeps in the server's
system_metadata as password_0..password_3 (255 characters each). Cumulo has no metadata service, so
nothing stores one yet: GET answers "" unless a password is there, and DELETE clears it (204).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import errors, policy
from cumulo.compute import instances as inst_db
from cumulo.compute.api import _common
from cumulo.compute.models import instances
from cumulo.web.http import empty, json_response

policy.register(
    {
        "compute:os-server-password:show": policy.READER,
        "compute:os-server-password:clear": policy.MEMBER,
    }
)

CHUNKS = 4
CHUNK_LENGTH = 255


def extract_password(system_metadata: dict[str, Any] | None) -> str:
    """The stored password: the password_N chunks in key order (Nova's extract_password)."""
    meta = system_metadata or {}
    return "".join(str(meta[k] or "") for k in sorted(meta) if k.startswith("password_"))


def cleared(system_metadata: dict[str, Any] | None) -> dict[str, Any]:
    """system_metadata with empty password chunks (Nova's convert_password(None))."""
    return {**(system_metadata or {}), **{f"password_{i}": "" for i in range(CHUNKS)}}


async def show(request: Request) -> Response:
    ctx = await _common.caller(request)
    row = await _common.compute_service(request).get(ctx, request.path_params["server_id"])
    policy.authorize(ctx, "compute:os-server-password:show")
    return json_response({"password": extract_password(row["system_metadata"])})


async def clear(request: Request) -> Response:
    ctx = await _common.caller(request)
    svc = _common.compute_service(request)
    row = await svc.get(ctx, request.path_params["server_id"])
    policy.authorize(ctx, "compute:os-server-password:clear")
    # Read-modify-write in one write transaction: an agent may change other system_metadata keys.
    async with svc.db.write() as conn:
        q = sa.select(instances.c.system_metadata).where(instances.c.uuid == row["uuid"], instances.c.deleted.is_(False))
        if conn.dialect.name != "sqlite":
            q = q.with_for_update()
        current = (await conn.execute(q)).first()
        if current is None:
            raise errors.NotFound(f"Instance {row['uuid']} could not be found.")
        await inst_db.cas_update(conn, row["uuid"], {"system_metadata": cleared(current[0])})
    return empty(204)


ROUTES = [
    Route("/v2.1/servers/{server_id}/os-server-password", show, methods=["GET"]),
    Route("/v2.1/servers/{server_id}/os-server-password", clear, methods=["DELETE"]),
]
