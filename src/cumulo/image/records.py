"""Image records and their visibility: create, list, show, update, delete and tag images, Glance's way.

Glance's image rows, extra properties and tags, and who may see and change them (also
deactivate/reactivate).

Visibility (Glance's rules): a project sees its own images, public and community ones, and shared
ones it is a member of; the admin sees all. Anything else is NotFound, so ids of other projects'
private images do not leak. Changing an image needs ownership (or admin): a visible image of
another project answers Forbidden.

Stored bytes are shared between images with identical content. `_refs` (a database advisory lock:
every API process of a split cloud shares the store) serialises the two places
that decide a key's fate (placing bytes + pointing a row at them, in `data`; dropping a row +
removing unreferenced bytes, here), so a delete never removes bytes another image just started to
use.

`ImageRecords` is the base of the image service (`service.ImageService`); the data path (`data`)
and the internal backend compute uses (`internal`) build on it.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import jsonschema
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo import errors, policy
from cumulo.conf import Settings
from cumulo.context import RequestContext
from cumulo.db import Database, isotime, new_uuid, utcnow
from cumulo.image import _query
from cumulo.image._patch import Change
from cumulo.image._schemas import (
    DISALLOWED_ON_CREATE,
    READ_ONLY,
    RESERVED,
    RESERVED_PREFIX,
    WRITABLE_CORE,
    create_body_schema,
)
from cumulo.image.models import image_members, image_properties, image_tags, images
from cumulo.image.store import ContentStore, ImageStore

LOG = logging.getLogger(__name__)

# Glance's default policies (secure RBAC): each rule's least role. Ownership is checked on the row.
POLICY_RULES = {
    "image:get_images": policy.READER,
    "image:get_image": policy.READER,
    "image:add_image": policy.MEMBER,
    "image:modify_image": policy.MEMBER,
    "image:delete_image": policy.MEMBER,
    "image:publicize_image": policy.ADMIN,
    "image:communitize_image": policy.MEMBER,
    "image:upload_image": policy.MEMBER,
    "image:download_image": policy.MEMBER,
    "image:deactivate": policy.MEMBER,
    "image:reactivate": policy.MEMBER,
    "image:get_members": policy.READER,
    "image:get_member": policy.READER,
    "image:add_member": policy.MEMBER,
    "image:delete_member": policy.MEMBER,
    "image:modify_member": policy.MEMBER,
}
policy.register(POLICY_RULES)

MAX_TAGS = 128  # Glance's image_tag_quota
MAX_PROPERTIES = 128  # Glance's image_property_quota
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_CREATE_VALIDATOR = jsonschema.Draft4Validator(create_body_schema())
_CORE_CREATE = ("id", "name", "visibility", "protected", "os_hidden", "owner", "container_format",
                "disk_format", "min_ram", "min_disk")


def not_found(image_id: str) -> errors.NotFound:
    return errors.NotFound(f"No image found with ID {image_id}")


def render(row: Any, props: dict[str, str], tags: list[str]) -> dict[str, Any]:
    """An image as Glance shows it: every core attribute (null when unset), extra properties flat."""
    view: dict[str, Any] = dict(props)
    image_id = row["id"]
    view.update(
        {
            "id": image_id,
            "name": row["name"],
            "status": row["status"],
            "visibility": row["visibility"],
            "protected": bool(row["protected"]),
            "os_hidden": bool(row["os_hidden"]),
            "checksum": row["checksum"],
            "os_hash_algo": row["os_hash_algo"],
            "os_hash_value": row["os_hash_value"],
            "owner": row["owner"],
            "size": row["size"],
            "virtual_size": row["virtual_size"],
            "container_format": row["container_format"],
            "disk_format": row["disk_format"],
            "created_at": isotime(row["created_at"]),
            "updated_at": isotime(row["updated_at"]),
            "tags": tags,
            "min_ram": row["min_ram"],
            "min_disk": row["min_disk"],
            "self": f"/v2/images/{image_id}",
            "file": f"/v2/images/{image_id}/file",
            "schema": "/v2/schemas/image",
        }
    )
    return view


@functools.cache
def _decorations_query() -> sa.Select[Any]:
    """Properties and tags of the images in the bound list "ids" in one statement (a round trip less
    on PostgreSQL; a server create reads its image), each kind in its own rows' id order. Built
    once: building the UNION ALL cost ~0.5 ms a read, more than its round trip."""
    p, t = image_properties, image_tags
    ids = sa.bindparam("ids", expanding=True, type_=p.c.image_id.type)
    u = sa.union_all(
        sa.select(sa.literal(0).label("kind"), p.c.id, p.c.image_id, p.c.name, sa.cast(p.c.value, sa.Text).label("value"))
        .where(p.c.image_id.in_(ids)),
        sa.select(sa.literal(1).label("kind"), t.c.id, t.c.image_id, sa.cast(sa.null(), sa.String(255)).label("name"),
                  sa.cast(t.c.value, sa.Text).label("value"))
        .where(t.c.image_id.in_(ids)),
    ).subquery()
    return sa.select(u).order_by(u.c.kind, u.c.id)


class ImageRecords:
    """Image rows and their visibility, over the DB (and the store, for bytes no row uses any more)."""

    def __init__(self, db: Database, conf: Settings) -> None:
        self.db = db
        self.conf = conf
        self.store: ContentStore = ImageStore(Path(conf.state_dir) / "images")
        self.size_cap = conf.image_size_cap  # an `extra: image_size_cap` already won in conf

    @property
    def _refs(self) -> AbstractAsyncContextManager[None]:
        """The store's reference lock: one holder across every process of the cloud (the API
        processes of a split cloud share the store; an advisory lock of the database)."""
        return self.db.advisory_lock("image-store-refs")

    # ---- loading and visibility ------------------------------------------------------------

    async def _row(self, conn: AsyncConnection, image_id: str) -> dict[str, Any] | None:
        if not isinstance(image_id, str) or not _UUID.fullmatch(image_id):
            return None
        q = sa.select(images).where(images.c.id == image_id, images.c.deleted.is_(False))
        row = (await conn.execute(q)).mappings().first()
        return dict(row) if row else None

    async def _is_member(self, conn: AsyncConnection, image_id: str, project_id: str | None) -> bool:
        if project_id is None:
            return False
        q = sa.select(image_members.c.id).where(
            image_members.c.image_id == image_id, image_members.c.member == project_id
        )
        return (await conn.execute(q)).first() is not None

    async def _can_see(self, conn: AsyncConnection, ctx: RequestContext, row: dict[str, Any]) -> bool:
        if ctx.is_admin or row["owner"] == ctx.project_id or row["visibility"] in ("public", "community"):
            return True
        return row["visibility"] == "shared" and await self._is_member(conn, row["id"], ctx.project_id)

    async def load(self, conn: AsyncConnection, ctx: RequestContext, image_id: str) -> dict[str, Any]:
        row = await self._row(conn, image_id)
        if row is None or not await self._can_see(conn, ctx, row):
            raise not_found(image_id)
        return row

    async def load_owned(self, conn: AsyncConnection, ctx: RequestContext, image_id: str, action: str) -> dict[str, Any]:
        row = await self.load(conn, ctx, image_id)
        if not ctx.is_admin and row["owner"] != ctx.project_id:
            raise errors.Forbidden(f"You are not authorized to complete {action} action.")
        return row

    async def _decorations(
        self, conn: AsyncConnection, ids: Sequence[str]
    ) -> tuple[dict[str, dict[str, str]], dict[str, list[str]]]:
        props: dict[str, dict[str, str]] = {i: {} for i in ids}
        tags: dict[str, list[str]] = {i: [] for i in ids}
        if not ids:
            return props, tags
        for kind, _id, image_id, name, value in await conn.execute(_decorations_query(), {"ids": list(ids)}):
            if kind == 0:
                props[image_id][name] = value
            else:
                tags[image_id].append(value)
        return props, tags

    async def _render(self, conn: AsyncConnection, row: dict[str, Any]) -> dict[str, Any]:
        props, tags = await self._decorations(conn, [row["id"]])
        return render(row, props[row["id"]], tags[row["id"]])

    async def _live_keys(self, conn: AsyncConnection) -> set[str]:
        q = sa.select(images.c.store_key).where(images.c.deleted.is_(False), images.c.store_key.is_not(None))
        return {r[0] for r in await conn.execute(q.distinct())}

    async def _release(self, key: str | None) -> None:
        """Remove the bytes of `key` unless a live image still uses them. Caller holds `_refs`."""
        if key is None:
            return
        async with self.db.read() as conn:
            q = sa.select(sa.func.count()).where(images.c.store_key == key, images.c.deleted.is_(False))
            users = (await conn.execute(q)).scalar_one()
        if not users:
            # The unpacked root (images/rootfs/<key>) stays: a running container may still use it as
            # its overlay lower dir, as Nova lets servers outlive their image. The compute driver,
            # which knows what its servers use, owns removing roots.
            await self.store.remove(key)

    async def set_status(self, conn: AsyncConnection, image_id: str, expected: tuple[str, ...], new: str, **values: Any) -> bool:
        res = await conn.execute(
            sa.update(images)
            .where(images.c.id == image_id, images.c.deleted.is_(False), images.c.status.in_(expected))
            .values(status=new, updated_at=utcnow(), **values)
        )
        return bool(res.rowcount)

    # ---- create / list / show / update / delete --------------------------------------------

    async def get(self, ctx: RequestContext, image_id: str) -> dict[str, Any]:
        """The image as `ctx` may see it (Glance field names, extra properties flat), or NotFound."""
        async with self.db.read() as conn:
            return await self._render(conn, await self.load(conn, ctx, image_id))

    async def create(self, ctx: RequestContext, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise errors.Invalid("Provided object does not match schema 'image': body must be an object")
        for key in (*DISALLOWED_ON_CREATE, *READ_ONLY):
            if key in body and key != "id":
                raise errors.Forbidden(f"Attribute '{key}' is read-only.")
        if any(len(key) > 255 for key in body):
            raise errors.Invalid("Custom property should not be greater than 255 characters.")
        error = next(iter(sorted(_CREATE_VALIDATOR.iter_errors(body), key=lambda e: list(e.path))), None)
        if error is not None:
            raise errors.Invalid(f"Provided object does not match schema 'image': {error.message}")
        body = dict(body)
        tags = _unique(body.pop("tags", []))
        core = {k: body.pop(k) for k in _CORE_CREATE if k in body}
        for key in body:
            if key in RESERVED or key.startswith(RESERVED_PREFIX):
                raise errors.Forbidden(f"Attribute '{key}' is reserved.")
        owner = core.get("owner", ctx.project_id)
        if not ctx.is_admin and owner != ctx.project_id:
            raise errors.Forbidden("You are not permitted to create images owned by another project.")
        self._check_visibility_change(ctx, core.get("visibility"))
        return await self.insert(ctx, core, body, tags)

    async def insert(
        self, ctx: RequestContext, core: dict[str, Any], extra: dict[str, str], tags: list[str]
    ) -> dict[str, Any]:
        if len(tags) > MAX_TAGS:
            raise errors.PayloadTooLarge(f"Maximum number of tags exceeded: {len(tags)} > {MAX_TAGS}")
        if len(extra) > MAX_PROPERTIES:
            raise errors.PayloadTooLarge(f"Maximum number of properties exceeded: {len(extra)} > {MAX_PROPERTIES}")
        image_id = str(core.get("id") or new_uuid())
        now = utcnow()
        values = {
            "id": image_id,
            "name": core.get("name"),
            "status": "queued",
            "visibility": core.get("visibility") or "shared",
            "protected": bool(core.get("protected", False)),
            "os_hidden": bool(core.get("os_hidden", False)),
            "owner": core.get("owner", ctx.project_id),
            "disk_format": core.get("disk_format"),
            "container_format": core.get("container_format"),
            "min_ram": core.get("min_ram", 0),
            "min_disk": core.get("min_disk", 0),
            "created_at": now,
            "updated_at": now,
            "deleted": False,
        }
        async with self.db.write() as conn:
            exists = (await conn.execute(sa.select(images.c.id).where(images.c.id == image_id))).first()
            if exists:
                raise errors.Conflict(f"Image with identifier {image_id} already exists!")
            await conn.execute(sa.insert(images).values(**values))
            if extra:
                rows = [{"image_id": image_id, "name": k, "value": v} for k, v in extra.items()]
                await conn.execute(sa.insert(image_properties), rows)
            if tags:
                await conn.execute(sa.insert(image_tags), [{"image_id": image_id, "value": t} for t in tags])
            row = await self._row(conn, image_id)
            assert row is not None
            return render(row, dict(extra), tags)

    def _check_visibility_change(self, ctx: RequestContext, visibility: str | None) -> None:
        rule = {"public": "publicize_image", "community": "communitize_image"}.get(visibility or "")
        if rule and not policy.allowed(ctx, f"image:{rule}"):
            raise errors.Forbidden(f"You are not authorized to complete {rule} action.")

    async def list_images(self, ctx: RequestContext, params: Sequence[tuple[str, str]]) -> tuple[list[dict[str, Any]], str | None]:
        """Images visible to ctx matching Glance's filters; returns (page, marker for the next page)."""
        q = _query.parse(params)
        sort = _query.full_sort(q)
        async with self.db.read() as conn:
            stmt = sa.select(images).where(*_query.where_clauses(ctx, q))
            if q.marker is not None:
                marker = await self._row(conn, q.marker)
                if marker is None or not await self._can_see(conn, ctx, marker):
                    raise errors.Invalid(f"Marker {q.marker} could not be found.")
                stmt = stmt.where(_query.after_marker(sort, marker))
            stmt = stmt.order_by(*_query.order_by(sort)).limit(q.limit)
            rows = [dict(r) for r in (await conn.execute(stmt)).mappings()]
            props, tags = await self._decorations(conn, [r["id"] for r in rows])
        page = [render(r, props[r["id"]], tags[r["id"]]) for r in rows]
        next_marker = rows[-1]["id"] if rows and len(rows) == q.limit else None
        return page, next_marker

    async def update(self, ctx: RequestContext, image_id: str, changes: Iterable[Change]) -> dict[str, Any]:
        """Apply parsed JSON-patch changes (see _patch) all-or-nothing."""
        async with self.db.write() as conn:
            row = await self.load_owned(conn, ctx, image_id, "modify_image")
            props_map, tags_map = await self._decorations(conn, [image_id])
            props, tags = dict(props_map[image_id]), list(tags_map[image_id])
            core: dict[str, Any] = {}
            for ch in changes:
                if ch.path in WRITABLE_CORE:
                    if ch.op == "remove":
                        raise errors.Forbidden(f"Property {ch.path} may not be removed.")
                    if ch.path == "owner" and not ctx.is_admin:
                        raise errors.Forbidden("Owner can't be updated by non admin.")
                    if ch.path == "visibility":
                        self._check_visibility_change(ctx, ch.value)
                    if ch.path in ("disk_format", "container_format") and row["status"] != "queued":
                        raise errors.Forbidden(f"Attribute {ch.path} can be only replaced for a queued image.")
                    if ch.path == "tags":
                        tags = _unique(ch.value)
                    else:
                        core[ch.path] = ch.value
                elif ch.op == "add":
                    if ch.draft == 4 and ch.path in props:
                        raise errors.Conflict(f"Property {ch.path} already present.")
                    props[ch.path] = ch.value
                elif ch.path not in props:
                    raise errors.Conflict(f"Property {ch.path} does not exist.")
                elif ch.op == "replace":
                    props[ch.path] = ch.value
                else:
                    del props[ch.path]
            if len(tags) > MAX_TAGS:
                raise errors.PayloadTooLarge(f"Maximum number of tags exceeded: {len(tags)} > {MAX_TAGS}")
            if len(props) > MAX_PROPERTIES:
                raise errors.PayloadTooLarge(f"Maximum number of properties exceeded: {len(props)} > {MAX_PROPERTIES}")
            await conn.execute(sa.update(images).where(images.c.id == image_id).values(**core, updated_at=utcnow()))
            await self._write_props(conn, image_id, props_map[image_id], props)
            if tags != tags_map[image_id]:
                await conn.execute(sa.delete(image_tags).where(image_tags.c.image_id == image_id))
                if tags:
                    await conn.execute(sa.insert(image_tags), [{"image_id": image_id, "value": t} for t in tags])
            new_row = await self._row(conn, image_id)
            assert new_row is not None
            return render(new_row, props, tags)

    async def _write_props(self, conn: AsyncConnection, image_id: str, old: dict[str, str], new: dict[str, str]) -> None:
        gone = [k for k in old if k not in new or old[k] != new[k]]
        if gone:
            await conn.execute(
                sa.delete(image_properties).where(
                    image_properties.c.image_id == image_id, image_properties.c.name.in_(gone)
                )
            )
        added = [{"image_id": image_id, "name": k, "value": v} for k, v in new.items() if old.get(k) != v]
        if added:
            await conn.execute(sa.insert(image_properties), added)

    async def delete(self, ctx: RequestContext, image_id: str) -> None:
        async with self._refs:
            async with self.db.write() as conn:
                row = await self.load_owned(conn, ctx, image_id, "delete_image")
                if row["protected"]:
                    raise errors.Forbidden(f"Image {image_id} is protected and cannot be deleted.")
                await self._soft_delete(conn, image_id)
            await self._release(row["store_key"])

    async def _soft_delete(self, conn: AsyncConnection, image_id: str) -> None:
        now = utcnow()
        await conn.execute(
            sa.update(images)
            .where(images.c.id == image_id)
            .values(deleted=True, deleted_at=now, status="deleted", updated_at=now)
        )
        await conn.execute(sa.delete(image_members).where(image_members.c.image_id == image_id))

    # ---- tags and actions ------------------------------------------------------------------

    async def add_tag(self, ctx: RequestContext, image_id: str, tag: str) -> None:
        if len(tag) > 255:
            raise errors.Invalid("Provided object does not match schema 'image': tag is longer than 255 characters")
        async with self.db.write() as conn:
            await self.load_owned(conn, ctx, image_id, "modify_image")
            _props, tags = await self._decorations(conn, [image_id])
            if tag in tags[image_id]:
                return
            if len(tags[image_id]) >= MAX_TAGS:
                raise errors.PayloadTooLarge(f"Maximum number of tags exceeded: {MAX_TAGS}")
            await conn.execute(sa.insert(image_tags).values(image_id=image_id, value=tag))
            await conn.execute(sa.update(images).where(images.c.id == image_id).values(updated_at=utcnow()))

    async def remove_tag(self, ctx: RequestContext, image_id: str, tag: str) -> None:
        async with self.db.write() as conn:
            await self.load_owned(conn, ctx, image_id, "modify_image")
            res = await conn.execute(
                sa.delete(image_tags).where(image_tags.c.image_id == image_id, image_tags.c.value == tag)
            )
            if not res.rowcount:
                raise errors.NotFound(f"Tag {tag} not found")
            await conn.execute(sa.update(images).where(images.c.id == image_id).values(updated_at=utcnow()))

    async def set_active(self, ctx: RequestContext, image_id: str, active: bool) -> None:
        """Deactivate (active=False) or reactivate an image; a no-op when already there."""
        action = "reactivate" if active else "deactivate"
        src, dst = ("deactivated", "active") if active else ("active", "deactivated")
        async with self.db.write() as conn:
            row = await self.load_owned(conn, ctx, image_id, action)
            if row["status"] == dst:
                return
            if row["status"] != src or not await self.set_status(conn, image_id, (src,), dst):
                raise errors.Invalid(f"Not allowed to {action} image in status '{row['status']}'")


def _unique(values: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for v in values:
        seen.setdefault(v, None)
    return list(seen)
