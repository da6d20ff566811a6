"""Cinder's user messages (/messages, microversion 3.3; filters, sorting and paging as from 3.5):
list, show and delete. The volume worker writes them (cumulo.volume.message_events) when an
asynchronous operation fails. A project sees and deletes its own messages; the admin sees every
project's with all_tenants.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo import errors, policy
from cumulo.context import RequestContext
from cumulo.volume import query
from cumulo.volume.backends import VolumeBackends
from cumulo.volume.base import authorize, owns, wants_all_tenants
from cumulo.volume.models import volume_messages

policy.register({
    "message:get_all": policy.READER,
    "message:get": policy.READER,
    "message:delete": policy.MEMBER,
})

SORT_KEYS = ("id", "created_at", "event_id", "message_level", "resource_type", "resource_uuid", "request_id",
             "guaranteed_until")
FILTERS = {name: query.equals(name)
           for name in ("resource_uuid", "resource_type", "event_id", "request_id", "message_level")}


def _record(row: Any) -> dict[str, Any]:
    return {"id": row.id, "project_id": row.project_id, "request_id": row.request_id,
            "resource_type": row.resource_type, "resource_uuid": row.resource_uuid, "event_id": row.event_id,
            "message_level": row.message_level, "user_message": row.user_message, "created_at": row.created_at,
            "guaranteed_until": row.expires_at}


def _not_found(message_id: str) -> errors.NotFound:
    return errors.NotFound(f"Message {message_id[:64]} could not be found.")


class VolumeMessages(VolumeBackends):
    """List, show and delete the caller's user messages."""

    async def list_messages(self, ctx: RequestContext, params: dict[str, str], *,
                            paging: bool = True) -> query.Page:
        """The caller's project's messages (every project's for the admin with all_tenants);
        `paging` False (before 3.5): no filters, sorting or paging, as Cinder."""
        authorize(ctx, "message:get_all")
        q = sa.select(volume_messages)
        if ctx.is_admin and params.get("project_id"):  # `openstack volume message list --project X`
            q = q.where(volume_messages.c.project_id == params["project_id"])
        elif not wants_all_tenants(ctx, params):
            q = q.where(volume_messages.c.project_id == ctx.project_id)
        async with self.db.read() as conn:
            items = [_record(r) for r in await conn.execute(q)]
        if not paging:
            params = {}
        return query.apply(items, params, allowed_sort=SORT_KEYS, filters=FILTERS)

    async def _message(self, conn: AsyncConnection, ctx: RequestContext, message_id: str) -> Any:
        if not isinstance(message_id, str) or len(message_id) > 36:
            raise _not_found(str(message_id))
        row = (await conn.execute(sa.select(volume_messages).where(volume_messages.c.id == message_id))).first()
        if row is None or not owns(ctx, row.project_id):
            raise _not_found(message_id)
        return row

    async def get_message(self, ctx: RequestContext, message_id: str) -> dict[str, Any]:
        authorize(ctx, "message:get")
        async with self.db.read() as conn:
            return _record(await self._message(conn, ctx, message_id))

    async def delete_message(self, ctx: RequestContext, message_id: str) -> None:
        authorize(ctx, "message:delete")
        async with self.db.write() as conn:
            row = await self._message(conn, ctx, message_id)
            await conn.execute(volume_messages.delete().where(volume_messages.c.id == row.id))
