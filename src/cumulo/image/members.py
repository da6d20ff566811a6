"""Image sharing (Glance's members API): the owner of a "shared" image adds projects as members;
each member accepts or rejects it. Accepted images appear in the member's default image list;
any member (even pending) may show and boot the image by id."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.db import isotime, utcnow
from cumulo.image._schemas import MEMBER_STATUSES
from cumulo.image.models import image_members, images

if TYPE_CHECKING:
    from cumulo.image.service import ImageService

MAX_MEMBERS = 128  # Glance's image_member_quota


def render(row: Any) -> dict[str, Any]:
    return {
        "created_at": isotime(row["created_at"]),
        "image_id": row["image_id"],
        "member_id": row["member"],
        "schema": "/v2/schemas/member",
        "status": row["status"],
        "updated_at": isotime(row["updated_at"]),
    }


def _only_shared(row: dict[str, Any]) -> None:
    if row["visibility"] != "shared":
        raise errors.Forbidden("Only shared images have members.")


async def _member_row(conn: AsyncConnection, image_id: str, member_id: str) -> dict[str, Any] | None:
    q = sa.select(image_members).where(image_members.c.image_id == image_id, image_members.c.member == member_id)
    row = (await conn.execute(q)).mappings().first()
    return dict(row) if row else None


def _is_owner(ctx: RequestContext, image: dict[str, Any]) -> bool:
    return ctx.is_admin or image["owner"] == ctx.project_id


async def list_members(svc: ImageService, ctx: RequestContext, image_id: str) -> list[dict[str, Any]]:
    """The owner sees every member; a member sees only its own membership."""
    async with svc.db.read() as conn:
        image = await svc.load(conn, ctx, image_id)
        _only_shared(image)
        q = sa.select(image_members).where(image_members.c.image_id == image_id).order_by(image_members.c.id)
        if not _is_owner(ctx, image):
            q = q.where(image_members.c.member == ctx.project_id)
        return [render(r) for r in (await conn.execute(q)).mappings()]


async def get_member(svc: ImageService, ctx: RequestContext, image_id: str, member_id: str) -> dict[str, Any]:
    async with svc.db.read() as conn:
        image = await svc.load(conn, ctx, image_id)
        row = await _member_row(conn, image_id, member_id)
        if row is None or not (_is_owner(ctx, image) or member_id == ctx.project_id):
            raise errors.NotFound(f"Member {member_id} not found for image {image_id}")
        return render(row)


async def add_member(svc: ImageService, ctx: RequestContext, image_id: str, member_id: str) -> dict[str, Any]:
    async with svc.db.write() as conn:
        image = await svc.load_owned(conn, ctx, image_id, "add_member")
        _only_shared(image)
        if await _member_row(conn, image_id, member_id) is not None:
            raise errors.Conflict(f"Member {member_id} already associated with image {image_id}")
        count = (
            await conn.execute(sa.select(sa.func.count()).where(image_members.c.image_id == image_id))
        ).scalar_one()
        if count >= MAX_MEMBERS:
            raise errors.PayloadTooLarge(f"Maximum number of members exceeded: {MAX_MEMBERS}")
        now = utcnow()
        await conn.execute(
            sa.insert(image_members).values(
                image_id=image_id, member=member_id, status="pending", created_at=now, updated_at=now
            )
        )
        row = await _member_row(conn, image_id, member_id)
        return render(row)


async def update_member(
    svc: ImageService, ctx: RequestContext, image_id: str, member_id: str, status: str
) -> dict[str, Any]:
    """Only the member project itself may accept or reject a shared image."""
    if status not in MEMBER_STATUSES:
        raise errors.Invalid(f"Provided object does not match schema 'member': {status!r} is not one of "
                             f"{list(MEMBER_STATUSES)}")
    async with svc.db.write() as conn:
        image = await svc.load(conn, ctx, image_id)
        row = await _member_row(conn, image_id, member_id)
        if row is None or not (_is_owner(ctx, image) or member_id == ctx.project_id):
            raise errors.NotFound(f"Member {member_id} not found for image {image_id}")
        if member_id != ctx.project_id and not ctx.is_admin:
            raise errors.Forbidden("You are not permitted to modify 'status' on this image member.")
        await conn.execute(
            sa.update(image_members)
            .where(image_members.c.id == row["id"])
            .values(status=status, updated_at=utcnow())
        )
        await conn.execute(sa.update(images).where(images.c.id == image_id).values(updated_at=utcnow()))
        row = await _member_row(conn, image_id, member_id)
        return render(row)


async def remove_member(svc: ImageService, ctx: RequestContext, image_id: str, member_id: str) -> None:
    async with svc.db.write() as conn:
        image = await svc.load(conn, ctx, image_id)
        row = await _member_row(conn, image_id, member_id)
        if not _is_owner(ctx, image):
            if row is not None and member_id == ctx.project_id:
                raise errors.Forbidden("You are not authorized to complete delete_member action.")
            raise errors.NotFound(f"Member {member_id} not found for image {image_id}")
        if row is None:
            raise errors.NotFound(f"Member {member_id} not found for image {image_id}")
        await conn.execute(sa.delete(image_members).where(image_members.c.id == row["id"]))
