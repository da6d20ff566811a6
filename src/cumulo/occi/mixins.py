"""User-defined mixins (GFD.221 tags): a project's own mixins, defined and deleted through the query
interface, and the entities tagged with them (their mixin collections, GFD.223 §"Collections").

Everything is scoped to the caller's project: another project's mixins and tags do not exist for
the caller (NotFound), and two projects may define the same category id independently.

Rules (GFD.221 Core, GFD.223 HTTP, GFD.229 Text; 1.1's HTTP rendering where 1.2 is silent):
- a definition gives term, scheme and location (title and `rel`/depends optional; JSON may give
  applies); a user mixin is a tag: attributes or actions in a definition are a 400;
- term follows GFD.229's ABNF; the scheme is an absolute URI ending in "#"; schemes below
  http://schemas.ogf.org/occi/ (reserved by GFD.221) and http://schemas.openstack.org/ (the
  provider's os_tpl, resource_tpl and contextualization mixins) are refused (400), and the id of a
  provider category is a 409;
- the location is a path below the OCCI root ("/tags/web/"; absolute URLs and /occi/-prefixed paths
  are taken too), one to four segments, unique in the project, never in or below a kind's collection
  or a provider mixin's location (409);
- deleting a provider category is a 403 (HTTP 1.1 rendering), an unknown one a 404, one that another
  of the project's mixins depends on a 409; deleting a mixin drops its tags;
- a tagged entity that is deleted loses its tags: the API calls `untag_entity` after an OCCI delete,
  and the mixin collection drops members the backend no longer finds (deleted through the OpenStack
  APIs), see occi.api_mixins.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.db import Database, new_uuid, utcnow
from cumulo.occi import categories
from cumulo.occi.model import Category, Kind, Mixin
from cumulo.occi.models import occi_mixin_tags as tags_t
from cumulo.occi.models import occi_mixins as mixins_t

# Category schemes no user mixin may take: OCCI's own (GFD.221 reserves the base URL) and the
# provider's (os_tpl/resource_tpl templates, contextualization).
RESERVED_SCHEMES = ("http://schemas.ogf.org/occi/", "https://schemas.ogf.org/occi/", "http://schemas.openstack.org/",
                    "https://schemas.openstack.org/")
# First path segments that belong to the kinds' collections, the query interface and the provider's
# template mixins, whatever categories the API serves; and "occi", which a location may carry as the
# OCCI root's prefix (so "/occi/occi/x/" would name "/x/" again).
RESERVED_SEGMENTS = frozenset({"-", ".well-known", "compute", "storage", "network", "networkinterface",
                               "storagelink", "entity", "resource", "link", "os_tpl", "resource_tpl", "occi"})
MAX_LEN = 255
MAX_SEGMENTS = 4
MAX_MIXINS_PER_PROJECT = 1000  # a tag is cheap, an unbounded number of them is not

_TERM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s\"<>\\^`{|}#]*#\Z")
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]*\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

Lookup = Callable[[str], Category | None]


def _no_lookup(_id: str) -> Category | None:
    return None


class MixinStore:
    """The user-mixin store over the `occi_mixins` and `occi_mixin_tags` tables (a `MixinSource` for
    the query interface, and `occi.deps.UserMixins` for the API).

    `lookup(id)` finds a provider category by id (occi.categories); `provider_locations()` lists the
    locations of the provider's kinds and mixins (collections no user mixin may take)."""

    def __init__(self, db: Database, *, lookup: Lookup = _no_lookup,
                 provider_locations: Callable[[], Iterable[str]] = tuple) -> None:
        self.db = db
        self.lookup = lookup
        self.provider_locations = provider_locations

    # --- the query interface -------------------------------------------------------------------

    async def mixins(self, ctx: RequestContext) -> list[Mixin]:
        """The caller's project's mixins, oldest first."""
        if ctx.project_id is None:
            return []
        q = sa.select(mixins_t).where(mixins_t.c.project_id == ctx.project_id).order_by(mixins_t.c.created_at,
                                                                                         mixins_t.c.id)
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).mappings().all()
        return [_mixin(r) for r in rows]

    def is_user_mixin(self, mixin_id: str) -> bool:
        """Whether `mixin_id` may name a user mixin: not a provider category, not in a reserved scheme."""
        return not mixin_id.startswith(RESERVED_SCHEMES) and self.lookup(mixin_id) is None

    async def get(self, ctx: RequestContext, mixin_id: str) -> Mixin:
        """The caller's mixin `mixin_id`; NotFound otherwise."""
        row = await self._row(ctx, mixins_t.c.scheme + mixins_t.c.term == mixin_id)
        if row is None:
            raise errors.NotFound(f"mixin {mixin_id} not found")
        return _mixin(row)

    async def at(self, ctx: RequestContext, location: str) -> Mixin | None:
        """The caller's mixin whose collection is at `location` ("/tags/web/"), or None."""
        try:
            path = normalize_location(location)
        except errors.Invalid:
            return None
        row = await self._row(ctx, mixins_t.c.location == path)
        return _mixin(row) if row is not None else None

    async def define(self, ctx: RequestContext, mixins: Sequence[Mixin]) -> None:
        """POST /-/: add mixin definitions, all or none (locations stored normalized: "/tags/web/")."""
        project = _project(ctx)
        if not mixins:
            raise errors.Invalid("no mixin definition in the request")
        existing = await self.mixins(ctx)
        if len(existing) + len(mixins) > MAX_MIXINS_PER_PROJECT:
            raise errors.OverQuota(f"a project may define at most {MAX_MIXINS_PER_PROJECT} mixins")
        ids = {m.id for m in existing}
        locations = {m.location for m in existing}
        provider = self._provider_paths()
        new: list[Mixin] = []
        for m in mixins:
            checked = self._check_definition(m, provider)
            if checked.id in ids:
                raise errors.Conflict(f"mixin {checked.id} already exists")
            if checked.location in locations:
                raise errors.Conflict(f"location {checked.location} is already a mixin's collection")
            for dep in checked.depends:
                if dep not in ids and not isinstance(self.lookup(dep), Mixin):
                    raise errors.Invalid(f"mixin {checked.id} depends on {dep}, which is not a known mixin")
            ids.add(checked.id)
            locations.add(checked.location or "")
            new.append(checked)
        now = utcnow()
        try:
            async with self.db.write() as conn:
                for m in new:
                    await conn.execute(sa.insert(mixins_t).values(
                        id=new_uuid(), project_id=project, scheme=m.scheme, term=m.term, title=m.title,
                        location=m.location, depends=list(m.depends), applies=list(m.applies), created_at=now))
        except IntegrityError:
            raise errors.Conflict("a mixin of that id or location was defined meanwhile") from None

    async def remove(self, ctx: RequestContext, mixin_ids: Sequence[str]) -> None:
        """DELETE /-/: remove mixins and their tags, all or none."""
        project = _project(ctx)
        if not mixin_ids:
            raise errors.Invalid("no mixin named in the request")
        for mid in mixin_ids:
            if not self.is_user_mixin(mid):
                raise errors.Forbidden(f"{mid} is a provider category: it cannot be deleted")
        async with self.db.write() as conn:
            rows = (await conn.execute(sa.select(mixins_t).where(mixins_t.c.project_id == project))).mappings().all()
            by_id = {r["scheme"] + r["term"]: r for r in rows}
            gone = set(mixin_ids)
            for mid in gone:
                if mid not in by_id:
                    raise errors.NotFound(f"mixin {mid} not found")
            for mid, r in by_id.items():
                if mid in gone:
                    continue
                needed = gone.intersection(_json_list(r["depends"]))
                if needed:
                    raise errors.Conflict(f"mixin {mid} depends on {sorted(needed)[0]}: delete it first")
            keys = [by_id[mid]["id"] for mid in gone]
            await conn.execute(sa.delete(tags_t).where(tags_t.c.mixin_id.in_(keys)))
            await conn.execute(sa.delete(mixins_t).where(mixins_t.c.id.in_(keys)))

    async def known(self, ctx: RequestContext, mixin_ids: Sequence[str]) -> list[str]:
        """Which of `mixin_ids` are the caller's mixins (in the order given)."""
        if ctx.project_id is None or not mixin_ids:
            return []
        mine = {m.id for m in await self.mixins(ctx)}
        return [m for m in mixin_ids if m in mine]

    # --- tags of one entity (the API, around a backend's create/update/delete) ------------------

    async def tags_of(self, ctx: RequestContext, kind: str, entity_ids: Sequence[str]) -> dict[str, list[str]]:
        """entity id -> the caller's mixin ids tagging it (entities without tags are left out)."""
        if ctx.project_id is None or not entity_ids:
            return {}
        out: dict[str, list[str]] = {}
        ids = list(dict.fromkeys(entity_ids))
        async with self.db.read() as conn:
            for i in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
                q = (sa.select(tags_t.c.entity_id, mixins_t.c.scheme, mixins_t.c.term)
                     .join(mixins_t, mixins_t.c.id == tags_t.c.mixin_id)
                     .where(mixins_t.c.project_id == ctx.project_id, tags_t.c.kind == kind,
                            tags_t.c.entity_id.in_(ids[i:i + 500]))
                     .order_by(tags_t.c.created_at, mixins_t.c.scheme, mixins_t.c.term))
                for eid, scheme, term in (await conn.execute(q)).all():
                    out.setdefault(eid, []).append(scheme + term)
        return out

    async def tag(self, ctx: RequestContext, mixin_ids: Sequence[str], kind: str, entity_id: str) -> None:
        """Tag one entity (which the API has found for the caller) with the caller's mixins."""
        rows = await self._resolve(ctx, mixin_ids, kind)
        async with self.db.write() as conn:
            have = await _tagged(conn, [r["id"] for r in rows], kind, [entity_id])
            await _insert_tags(conn, [(r["id"], kind, entity_id) for r in rows if (r["id"], entity_id) not in have])

    async def check_tags(self, ctx: RequestContext, mixin_ids: Sequence[str], kind: str) -> None:
        """What `tag` would refuse, without a write: call it before a backend creates the entity
        (NotFound for a mixin the caller lacks, Invalid for one that does not apply to `kind`)."""
        await self._resolve(ctx, mixin_ids, kind)

    async def set_tags(self, ctx: RequestContext, kind: str, entity_id: str, mixin_ids: Sequence[str]) -> None:
        """Replace the entity's tags among the caller's mixins by `mixin_ids` (PUT on the entity)."""
        project = _project(ctx)
        rows = await self._resolve(ctx, mixin_ids, kind)
        keep = {r["id"] for r in rows}
        async with self.db.write() as conn:
            mine = sa.select(mixins_t.c.id).where(mixins_t.c.project_id == project).scalar_subquery()
            await conn.execute(sa.delete(tags_t).where(
                tags_t.c.kind == kind, tags_t.c.entity_id == entity_id, tags_t.c.mixin_id.in_(mine),
                tags_t.c.mixin_id.not_in(keep)))
            have = await _tagged(conn, list(keep), kind, [entity_id])
            await _insert_tags(conn, [(k, kind, entity_id) for k in keep if (k, entity_id) not in have])

    async def untag_entity(self, ctx: RequestContext, kind: str, entity_id: str) -> None:
        """Drop every tag of a deleted entity, whichever project's mixin tagged it (the entity is gone
        for all of them)."""
        await self.forget(kind, [entity_id])

    async def forget(self, kind: str, entity_ids: Sequence[str], *, project_id: str | None = None) -> None:
        """Drop the tags of entities that no longer exist: every project's, or only `project_id`'s
        (an entity one project no longer finds may still exist for another: a network unshared)."""
        if not entity_ids:
            return
        cond = [tags_t.c.kind == kind, tags_t.c.entity_id.in_(list(entity_ids))]
        if project_id is not None:
            cond.append(tags_t.c.mixin_id.in_(
                sa.select(mixins_t.c.id).where(mixins_t.c.project_id == project_id).scalar_subquery()))
        async with self.db.write() as conn:
            await conn.execute(sa.delete(tags_t).where(*cond))

    # --- a mixin's collection (occi.api_mixins) -------------------------------------------------

    async def members(self, ctx: RequestContext, mixin_id: str) -> list[tuple[str, str]]:
        """(kind term, entity id) of every entity tagged with the caller's mixin, in tagging order."""
        key = await self._key(ctx, mixin_id)
        q = (sa.select(tags_t.c.kind, tags_t.c.entity_id).where(tags_t.c.mixin_id == key)
             .order_by(tags_t.c.created_at, tags_t.c.kind, tags_t.c.entity_id))
        async with self.db.read() as conn:
            return [(k, e) for k, e in (await conn.execute(q)).all()]

    async def entities_of(self, ctx: RequestContext, mixin_id: str) -> list[str]:
        """The locations ("/compute/<id>") of the entities tagged with the caller's mixin."""
        return [f"/{kind}/{eid}" for kind, eid in await self.members(ctx, mixin_id)]

    async def add_members(self, ctx: RequestContext, mixin_id: str, members: Sequence[tuple[str, str]]) -> None:
        """POST on the collection: tag these (kind term, entity id) entities (already tagged: kept)."""
        mixin = await self.get(ctx, mixin_id)
        for kind, _eid in members:
            _check_applies(mixin, kind)
        key = await self._key(ctx, mixin_id)
        async with self.db.write() as conn:
            have = await _tagged_members(conn, key)
            fresh = list(dict.fromkeys(m for m in members if m not in have))
            await _insert_tags(conn, [(key, k, e) for k, e in fresh])

    async def replace_members(self, ctx: RequestContext, mixin_id: str, members: Sequence[tuple[str, str]]) -> None:
        """PUT on the collection: the members become exactly `members`."""
        mixin = await self.get(ctx, mixin_id)
        for kind, _eid in members:
            _check_applies(mixin, kind)
        key = await self._key(ctx, mixin_id)
        wanted = set(members)
        async with self.db.write() as conn:
            have = await _tagged_members(conn, key)
            for kind, eid in have - wanted:
                await conn.execute(sa.delete(tags_t).where(
                    tags_t.c.mixin_id == key, tags_t.c.kind == kind, tags_t.c.entity_id == eid))
            fresh = list(dict.fromkeys(m for m in members if m not in have))
            await _insert_tags(conn, [(key, k, e) for k, e in fresh])

    async def remove_members(self, ctx: RequestContext, mixin_id: str,
                             members: Sequence[tuple[str, str]] | None = None) -> None:
        """DELETE on the collection: untag these entities (not tagged: ignored), or all when None."""
        key = await self._key(ctx, mixin_id)
        async with self.db.write() as conn:
            if members is None:
                await conn.execute(sa.delete(tags_t).where(tags_t.c.mixin_id == key))
                return
            for kind, eid in set(members):
                await conn.execute(sa.delete(tags_t).where(
                    tags_t.c.mixin_id == key, tags_t.c.kind == kind, tags_t.c.entity_id == eid))

    # --- helpers --------------------------------------------------------------------------------

    def _provider_paths(self) -> set[str]:
        out: set[str] = set()
        for loc in self.provider_locations():
            try:
                out.add(normalize_location(loc))
            except errors.Invalid:
                continue
        return out

    def _check_definition(self, m: Mixin, provider: set[str]) -> Mixin:
        """The definition with its location normalized, or Invalid/Conflict naming what is wrong."""
        if not isinstance(m, Mixin):
            raise errors.Invalid(f"{getattr(m, 'id', m)!s}: only mixins can be defined (class=\"mixin\")")
        check_term(m.term)
        check_scheme(m.scheme)
        known = self.lookup(m.id)
        if known is not None:
            raise errors.Conflict(f"category {m.id} already exists (a provider category)")
        if m.scheme.startswith(RESERVED_SCHEMES):
            raise errors.Invalid(f"scheme {m.scheme} is reserved for OCCI's and the provider's categories")
        if m.attributes or m.actions:
            raise errors.Invalid(f"mixin {m.id}: a user-defined mixin is a tag; it takes no attributes or actions")
        title = m.title or ""
        if len(title) > MAX_LEN or _CONTROL.search(title):
            raise errors.Invalid(f"mixin {m.id}: title too long or with control characters")
        if m.location is None or not str(m.location).strip():
            raise errors.Invalid(f"mixin {m.id}: a location is required (e.g. location=\"/{m.term}/\")")
        location = normalize_location(m.location)
        segments = location.strip("/").split("/")
        if segments[0] in RESERVED_SEGMENTS:
            raise errors.Conflict(f"location {location} is in or below a collection of the provider's ({segments[0]})")
        for taken in sorted(provider):
            if location == taken or location.startswith(taken) or taken.startswith(location):
                raise errors.Conflict(f"location {location} collides with the provider's collection {taken}")
        for dep in m.depends:
            if not isinstance(dep, str) or not dep or len(dep) > 2 * MAX_LEN or _CONTROL.search(dep) or dep == m.id:
                raise errors.Invalid(f"mixin {m.id}: bad depends value {dep!r}")
        for kind_id in m.applies:
            if not isinstance(kind_id, str) or not isinstance(self.lookup(kind_id), Kind):
                raise errors.Invalid(f"mixin {m.id}: applies names {kind_id!r}, which is not a kind")
        return Mixin(scheme=m.scheme, term=m.term, title=title, depends=tuple(dict.fromkeys(m.depends)),
                     applies=tuple(dict.fromkeys(m.applies)), location=location)

    async def _row(self, ctx: RequestContext, cond: Any) -> Any:
        if ctx.project_id is None:
            return None
        async with self.db.read() as conn:
            return (await conn.execute(sa.select(mixins_t).where(mixins_t.c.project_id == ctx.project_id, cond))
                    ).mappings().first()

    async def _key(self, ctx: RequestContext, mixin_id: str) -> str:
        row = await self._row(ctx, mixins_t.c.scheme + mixins_t.c.term == mixin_id)
        if row is None:
            raise errors.NotFound(f"mixin {mixin_id} not found")
        return str(row["id"])

    async def _resolve(self, ctx: RequestContext, mixin_ids: Sequence[str], kind: str) -> list[Any]:
        """The caller's mixin rows for `mixin_ids` (NotFound naming an unknown one), checked to apply to `kind`."""
        project = _project(ctx)
        wanted = list(dict.fromkeys(mixin_ids))
        if not wanted:
            return []
        async with self.db.read() as conn:
            rows = (await conn.execute(sa.select(mixins_t).where(mixins_t.c.project_id == project))).mappings().all()
        by_id = {r["scheme"] + r["term"]: r for r in rows}
        out = []
        for mid in wanted:
            row = by_id.get(mid)
            if row is None:
                raise errors.NotFound(f"mixin {mid} not found")
            _check_applies(_mixin(row), kind)
            out.append(row)
        return out


def make(svc: Any) -> MixinStore:
    """The store of the OCCI app (`svc`: occi.deps.OcciServices), over the cloud's database."""
    return MixinStore(svc.db, lookup=categories.get, provider_locations=_static_locations)


def _static_locations() -> list[str]:
    return [c.location for c in categories.ALL if isinstance(c, Kind | Mixin) and c.location]


# --- validation, shared with the API ---------------------------------------------------------------

def check_term(term: Any) -> None:
    if not isinstance(term, str) or not term or len(term) > MAX_LEN or not _TERM.match(term):
        raise errors.Invalid(f"bad mixin term {str(term)[:80]!r}: letters, digits, '-', '_' and '.', "
                             "starting with a letter or digit")


def check_scheme(scheme: Any) -> None:
    if not isinstance(scheme, str) or len(scheme) > MAX_LEN or not _SCHEME.match(scheme):
        raise errors.Invalid(f"bad mixin scheme {str(scheme)[:80]!r}: an absolute URI ending in '#', "
                             "e.g. http://example.com/occi/tags#")


def normalize_location(location: str) -> str:
    """A mixin location as stored: "/a/b/" below the OCCI root. Takes an absolute URL, a path with or
    without the /occi prefix, with or without the trailing slash; Invalid when it is no such path."""
    if not isinstance(location, str) or len(location) > 2 * MAX_LEN or _CONTROL.search(location):
        raise errors.Invalid(f"bad mixin location {str(location)[:80]!r}")
    raw = location.strip()
    path = raw
    if "://" in raw:
        rest = raw.split("://", 1)[1]
        path = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    if "?" in path or "#" in path or not path.startswith("/"):
        raise errors.Invalid(f"bad mixin location {raw[:80]!r}: a path below the OCCI root, e.g. /tags/web/")
    segments = [s for s in path.split("/") if s]
    if path.startswith("//") or "//" in path.rstrip("/"):
        raise errors.Invalid(f"bad mixin location {raw[:80]!r}: empty path segment")
    if segments and segments[0] == "occi":
        segments = segments[1:]
    if not segments or len(segments) > MAX_SEGMENTS or not all(_SEGMENT.match(s) for s in segments):
        raise errors.Invalid(f"bad mixin location {raw[:80]!r}: one to {MAX_SEGMENTS} path segments of letters, "
                             "digits, '-', '_', '.' and '~' below the OCCI root, e.g. /tags/web/")
    out = "/" + "/".join(segments) + "/"
    if len(out) > MAX_LEN:
        raise errors.Invalid(f"mixin location {raw[:80]!r} too long")
    return out


def kind_ids_of(kind: str) -> set[str]:
    """The kind ids an entity of kind term `kind` ("compute") is an instance of (for Mixin.applies)."""
    found = categories.kind_by_term(kind)
    return {k.id for k in categories.ancestry(found.id)} if found is not None else set()


def _check_applies(mixin: Mixin, kind: str) -> None:
    if mixin.applies and not kind_ids_of(kind).intersection(mixin.applies):
        raise errors.Invalid(f"mixin {mixin.id} does not apply to {kind} entities")


def _project(ctx: RequestContext) -> str:
    if ctx.project_id is None:
        raise errors.Forbidden("user-defined mixins belong to a project: use a project-scoped token")
    return ctx.project_id


def _json_list(value: Any) -> list[str]:
    if isinstance(value, str):
        value = json.loads(value)
    return [str(v) for v in (value or [])]


def _mixin(row: Any) -> Mixin:
    return Mixin(scheme=row["scheme"], term=row["term"], title=row["title"] or "",
                 depends=tuple(_json_list(row["depends"])), applies=tuple(_json_list(row["applies"])),
                 location=row["location"])


async def _tagged(conn: Any, keys: list[str], kind: str, entity_ids: list[str]) -> set[tuple[str, str]]:
    if not keys:
        return set()
    q = sa.select(tags_t.c.mixin_id, tags_t.c.entity_id).where(
        tags_t.c.mixin_id.in_(keys), tags_t.c.kind == kind, tags_t.c.entity_id.in_(entity_ids))
    return {(k, e) for k, e in (await conn.execute(q)).all()}


async def _tagged_members(conn: Any, key: str) -> set[tuple[str, str]]:
    q = sa.select(tags_t.c.kind, tags_t.c.entity_id).where(tags_t.c.mixin_id == key)
    return {(k, e) for k, e in (await conn.execute(q)).all()}


async def _insert_tags(conn: Any, rows: list[tuple[str, str, str]]) -> None:
    if not rows:
        return
    now = utcnow()
    step = dt.timedelta(microseconds=1)  # members list in the order the request gave them
    try:
        await conn.execute(sa.insert(tags_t), [{"mixin_id": k, "kind": kind, "entity_id": e, "created_at": now + i * step}
                                               for i, (k, kind, e) in enumerate(rows)])
    except IntegrityError:
        raise errors.Conflict("the mixin or the tag changed meanwhile; try again") from None
