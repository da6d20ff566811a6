"""What every OCCI route shares: negotiation, parsing, responses, the provider's categories, user-mixin
tags, filtering and pagination (GFD.223 §6-7).

Filtering (GFD.223 §7; GFD.185 for what 1.2 left out): a GET on the query interface, a kind
collection, a mixin collection or the root path may carry a filter as an OCCI rendering in the
request headers (`Category:` and `X-OCCI-Attribute:` lines, text/occi form, whatever rendering the
GET asks for; its body is never read). On the query interface the answer holds only the categories
related to a filter category: the category itself, its actions, and the kinds and mixins below it
(a kind's sub-kinds, the mixins that depend on a mixin: filtering by os_tpl lists every os_tpl
template). On collections the answer holds only the entities that carry every filter category (as
their kind, one of its parents, or a mixin) and whose attributes equal every filter attribute.

Pagination (GFD.223 §6): `?page=P&number=N` (also `;`-separated) returns the P-th page (1-based) of N
entities; N above `MAX_PAGE` is a 413; a page past the end is an empty collection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.occi import categories
from cumulo.occi.backends.base import KindBackend
from cumulo.occi.deps import OcciDeps, deps
from cumulo.occi.model import Category, Entity, EntityRequest, Kind, Mixin, split_location
from cumulo.occi.render.base import (
    TEXT_OCCI,
    TEXT_PLAIN,
    Parser,
    Rendered,
    Renderer,
    media_type_of,
    negotiate,
)
from cumulo.occi.render.select import filter_categories, filter_entity, parser_for, renderer_for
from cumulo.web.http import base_url  # the OCCI root as the client reached it, e.g. "http://host:port/occi"

MAX_PAGE = 1000  # the most entities one page may ask for (GFD.223 §6: more is a 413)


class OcciMethodNotAllowed(errors.MethodNotAllowed):
    """A method the target does not take: a 405 whose Allow names those it takes (RFC 7231 §6.5.5:
    MUST; GFD.223 §5.4 lists 405 among OCCI's status codes)."""

    def __init__(self, method: str, allow: Sequence[str], message: str | None = None) -> None:
        super().__init__(message or f"{method} is not allowed here (allowed: {', '.join(allow)})")
        self.allow = allow


def renderer(request: Request, *, listing: bool = False) -> Renderer:
    """The response rendering the Accept header(s) ask for (406 when none is acceptable; text/uri-list
    outside a listing is a 400, GFD.229 §7)."""
    return renderer_for(negotiate(request.headers.getlist("accept"), listing=listing), base_url(request))


async def read_body(request: Request) -> bytes:
    """The request body (the family app's BodyLimitMiddleware bounds it while it streams: 413)."""
    return await request.body()


def parser(request: Request, body: bytes) -> Parser:
    """The parser of the request's rendering: its Content-Type; without one, text/occi when the body
    is empty (everything is in the headers) and text/plain otherwise."""
    media = media_type_of(request.headers.get("content-type"))
    if not media:
        media = TEXT_PLAIN if body.strip() else TEXT_OCCI
    return parser_for(media)


def header_list(request: Request) -> list[tuple[bytes, bytes]]:
    return list(request.scope.get("headers") or [])


def respond(rendered: Rendered, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A Response of a rendering: its body, content type and (repeatable) headers."""
    resp = Response(rendered.body, status_code=status, media_type=rendered.content_type, headers=headers)
    resp.raw_headers.extend(rendered.raw_headers())
    return resp


def absolute(request: Request, location: str) -> str:
    """A root-relative location ("/compute/<id>") as an absolute URL below the OCCI root."""
    if "://" in location:
        return location
    return base_url(request) + "/" + location.lstrip("/")


# --- categories -----------------------------------------------------------------------------------


async def provider_mixins(d: OcciDeps, ctx: RequestContext) -> list[Mixin]:
    """The mixins the cloud's data defines for the caller (os_tpl per image, resource_tpl per flavor)."""
    found = await asyncio.gather(*(src.mixins(ctx) for src in d.sources))
    return [m for ms in found for m in ms]


async def all_categories(d: OcciDeps, ctx: RequestContext) -> list[Category]:
    """The query interface's categories: the static ones, the provider's and the caller's own mixins.
    Static kinds whose backend is missing are still listed (the model is the model)."""
    out: list[Category] = list(categories.ALL)
    out += await provider_mixins(d, ctx)
    if d.user_mixins is not None:
        out += await d.user_mixins.mixins(ctx)
    seen: set[str] = set()
    unique: list[Category] = []
    for c in out:
        if c.id not in seen:
            seen.add(c.id)
            unique.append(c)
    return unique


def related(filter_ids: Sequence[str], cats: Sequence[Category]) -> list[Category]:
    """The categories related to any of `filter_ids`: each itself, its actions, and every kind or
    mixin below it (sub-kinds by parent, mixins by depends, transitively), with their actions."""
    by_id = {c.id: c for c in cats}
    below: dict[str, list[str]] = {}  # category id -> the kinds and mixins right below it
    for other in cats:
        ups: tuple[str, ...] = ()
        if isinstance(other, Kind) and other.parent:
            ups = (other.parent,)
        elif isinstance(other, Mixin):
            ups = other.depends
        for up in ups:
            below.setdefault(up, []).append(other.id)
    wanted: set[str] = set()
    frontier = [f for f in filter_ids if f in by_id]
    while frontier:  # linear in the categories (a caller may see thousands of os_tpl images)
        cid = frontier.pop()
        if cid in wanted:
            continue
        wanted.add(cid)
        c = by_id[cid]
        if isinstance(c, Kind | Mixin):
            wanted.update(a for a in c.actions if a in by_id)
        frontier.extend(o for o in below.get(cid, ()) if o not in wanted)
    return [c for c in cats if c.id in wanted]


# --- entities -------------------------------------------------------------------------------------


def entity_at(d: OcciDeps, location: str) -> tuple[KindBackend, str] | None:
    """(backend, entity id) of an entity location ("/compute/<id>", absolute or root-relative); None
    when its collection is no kind's; Invalid naming it when it is no entity location at all."""
    try:
        coll, eid = split_location(location)
    except ValueError:
        raise errors.Invalid(f"{location[:120]!r} is not an entity location") from None
    backend = d.backend_at(coll)
    return (backend, eid) if backend is not None else None


async def check_seen(ctx: RequestContext, backend: KindBackend, eid: str, location: str) -> None:
    """NotFound naming `location` unless the caller can GET that entity (another project's entities
    do not exist for it)."""
    try:
        await backend.get(ctx, eid)
    except errors.NotFound:
        raise errors.NotFound(f"no entity at {location[:120]}") from None



async def with_tags(d: OcciDeps, ctx: RequestContext, entities: list[Entity]) -> list[Entity]:
    """`entities` with the caller's user-mixin tags added to their mixins."""
    if d.user_mixins is None or not entities:
        return entities
    by_kind: dict[str, list[Entity]] = {}
    for e in entities:
        by_kind.setdefault(e.kind.split("#", 1)[-1], []).append(e)
    for term, group in by_kind.items():
        tags = await d.user_mixins.tags_of(ctx, term, [e.id for e in group])
        for e in group:
            for m in tags.get(e.id, []):
                if m not in e.mixins:
                    e.mixins.append(m)
    return entities


def _same(want: Any, have: Any) -> bool:
    if isinstance(want, bool) or isinstance(have, bool):
        return str(want).lower() == str(have).lower()
    if isinstance(want, int | float) and isinstance(have, int | float):
        return float(want) == float(have)
    if isinstance(want, int | float) or isinstance(have, int | float):
        try:
            return float(str(want)) == float(str(have))
        except ValueError:
            return False
    return str(want) == str(have)


def matches(entity: Entity, flt: EntityRequest) -> bool:
    """Whether an entity passes a collection filter (categories and attribute values)."""
    held = {k.id for k in categories.ancestry(entity.kind)} | {entity.kind} | set(entity.mixins)
    wanted = ([flt.kind] if flt.kind else []) + list(flt.mixins)
    if any(c not in held for c in wanted):
        return False
    attrs = dict(entity.attributes)
    attrs.setdefault("occi.core.id", entity.id)
    for name, value in flt.attributes.items():
        if name not in attrs or not _same(value, attrs[name]):
            return False
    return True


async def entity_filter(request: Request) -> EntityRequest | None:
    """The filter of a collection GET, from the request headers (None when it names none). A GET's
    body is never read: GFD.223 §7 carries filters only in header renderings."""
    headers = header_list(request)
    if not any(k.lower() in (b"category", b"x-occi-attribute") for k, _ in headers):
        return None
    got = filter_entity(headers)
    if not got.kind and not got.mixins and not got.attributes:
        return None
    return got


async def category_filter(request: Request) -> list[str] | None:
    """The category ids a query-interface GET filters on, from the request headers (None when it
    names none)."""
    headers = header_list(request)
    if not any(k.lower() == b"category" for k, _ in headers):
        return None
    return [c.id for c in filter_categories(headers)]


def page(request: Request, entities: list[Entity]) -> list[Entity]:
    """GFD.223 §6 pagination (see the module text)."""
    raw = request.url.query
    params: dict[str, str] = {}
    for part in raw.replace(";", "&").split("&"):
        k, sep, v = part.partition("=")
        if k in ("page", "number"):
            params[k] = v
    if not params:
        return entities
    try:
        number = int(params.get("number", str(MAX_PAGE)))
        index = int(params.get("page", "1"))
    except ValueError:
        raise errors.Invalid("page and number must be integers") from None
    if number < 1 or index < 1:
        raise errors.Invalid("page and number start at 1")
    if number > MAX_PAGE:
        raise errors.PayloadTooLarge(f"number {number} is larger than {MAX_PAGE} entities a page may hold")
    return entities[(index - 1) * number:index * number]


def occi_deps(request: Request) -> OcciDeps:
    return deps(request)
