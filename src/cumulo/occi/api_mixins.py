"""Mixin collections (GFD.223 §"HTTP Methods Applied to Collections"): GET, and for user-defined
mixins POST (associate), PUT (replace) and DELETE (disassociate).

occi.api calls `collection(request, location, ctx)` for a `/<path>/` that is no kind's collection
(a 404 when no mixin is bound there). The query interface's POST/DELETE of user mixins are occi.api's,
over the store (occi.mixins).

A mixin's collection is every entity associated with it (GFD.221 §"Collections"):
- a user mixin's: the entities tagged with it (occi.mixins). GET lists them (filtering and
  pagination as on kind collections, occi.api_common); POST adds the entities whose locations the
  request lists (X-OCCI-Location in text/occi or text/plain, text/uri-list lines, JSON locations);
  PUT replaces the membership by them; DELETE removes them, or every member when the request lists
  none. Each answers 200 with the collection as it then is. Every location must be an entity the
  caller can see (404 naming it otherwise) of a kind the mixin applies to (400).
- a provider mixin's (os_tpl/<image>, resource_tpl/<flavor>, ipnetwork, the template parents): the
  entities whose rendering carries the mixin or one below it (GET /os_tpl/ lists every compute made
  from an image, GET /os_tpl/<image id>/ those made from that image). Membership follows from the
  entities' own data: POST/PUT/DELETE there are a 405.
A member deleted meanwhile (e.g. through the OpenStack APIs) leaves the collection: the GET drops
the caller's project's tags of it when its backend answers NotFound for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.occi import api_common, categories
from cumulo.occi.backends.base import KindBackend
from cumulo.occi.deps import OcciDeps
from cumulo.occi.mixins import MixinStore, normalize_location
from cumulo.occi.model import Entity, Mixin

MAX_LOCATIONS = 1000  # entity locations one request may list


def _context(request: Request) -> RequestContext:
    ctx = request.scope.get("cumulo.context")
    if not isinstance(ctx, RequestContext):
        raise errors.Unauthorized("The request you have made requires authentication.")
    return ctx


# --- mixin collections ----------------------------------------------------------------------------


async def collection(request: Request, location: str, ctx: RequestContext | None = None) -> Response:
    """The mixin collection at `location` (a path below the OCCI root ending in "/"); NotFound when
    no mixin of the caller's or the provider's is bound there."""
    ctx = ctx if ctx is not None else _context(request)
    d = api_common.occi_deps(request)
    try:
        path = normalize_location(location)
    except errors.Invalid:
        raise errors.NotFound("The resource could not be found.") from None
    store = d.user_mixins if isinstance(d.user_mixins, MixinStore) else None
    mixin = await store.at(ctx, path) if store is not None else None
    if mixin is not None and store is not None:
        return await _user_collection(request, d, ctx, store, mixin)
    provider = await _provider_mixin_at(d, ctx, path)
    if provider is None:
        raise errors.NotFound("The resource could not be found.")
    if request.method == "POST" and "action" in request.query_params:
        raise errors.Invalid(f"mixin {provider.id} defines no action {request.query_params['action'][:80]!r}")
    if request.method not in ("GET", "HEAD"):
        raise api_common.OcciMethodNotAllowed(
            request.method, ("GET", "HEAD"), f"the membership of {provider.id} follows from the entities: only GET")
    entities = await _entities_with(d, ctx, provider)
    return await _listing(request, ctx, d, entities)


async def _user_collection(request: Request, d: OcciDeps, ctx: RequestContext, store: MixinStore,
                           mixin: Mixin) -> Response:
    method = request.method
    if "action" in request.query_params:
        if method != "POST":
            raise api_common.OcciMethodNotAllowed(method, ("POST",), "actions are triggered with POST")
        raise errors.Invalid(f"mixin {mixin.id} defines no action {request.query_params['action'][:80]!r}")
    if method in ("GET", "HEAD"):
        return await _listing(request, ctx, d, await _members(d, ctx, store, mixin))
    if method not in ("POST", "PUT", "DELETE"):
        raise api_common.OcciMethodNotAllowed(method, ("GET", "HEAD", "POST", "PUT", "DELETE"),
                                              f"{method} is not defined on a mixin collection")
    api_common.renderer(request, listing=True)  # 406/400 before any change
    body = await api_common.read_body(request)
    locations: list[str] = []
    if body.strip() or any(k.lower() == b"x-occi-location" for k, _ in api_common.header_list(request)):
        locations = api_common.parser(request, body).locations(body, api_common.header_list(request))
    if len(locations) > MAX_LOCATIONS:
        raise errors.PayloadTooLarge(f"at most {MAX_LOCATIONS} entity locations a request")
    if method == "DELETE":
        members = [_member(d, loc) for loc in locations]
        await store.remove_members(ctx, mixin.id, [(b.kind.term, eid) for b, eid, _ in members] or None)
    else:
        if method == "POST" and not locations:
            raise errors.Invalid("no entity location in the request (X-OCCI-Location)")
        found = await _resolve(d, ctx, locations)
        if method == "POST":
            await store.add_members(ctx, mixin.id, found)
        else:
            await store.replace_members(ctx, mixin.id, found)
    return await _listing(request, ctx, d, await _members(d, ctx, store, mixin), filtered=False)


def _member(d: OcciDeps, location: str) -> tuple[KindBackend, str, str]:
    """(backend, entity id, location) of an entity location; Invalid naming it when it is none."""
    found = api_common.entity_at(d, location)
    if found is None:
        raise errors.Invalid(f"{location[:120]!r} is not an entity location (no kind's collection holds it)")
    return found[0], found[1], location


async def _resolve(d: OcciDeps, ctx: RequestContext, locations: Sequence[str]) -> list[tuple[str, str]]:
    """(kind term, id) of each location, checked to be an entity the caller can see (NotFound naming it)."""
    members = [_member(d, loc) for loc in dict.fromkeys(locations)]
    await asyncio.gather(*(api_common.check_seen(ctx, b, e, loc) for b, e, loc in members))
    return [(b.kind.term, e) for b, e, _ in members]


async def _members(d: OcciDeps, ctx: RequestContext, store: MixinStore, mixin: Mixin) -> list[Entity]:
    """The entities tagged with `mixin`, in tagging order. One list call per kind; a member the list
    lacks is asked for by id and its tag dropped when it is gone."""
    members = await store.members(ctx, mixin.id)
    by_kind: dict[str, list[str]] = {}
    for kind, eid in members:
        by_kind.setdefault(kind, []).append(eid)
    found: dict[tuple[str, str], Entity] = {}
    for kind, ids in by_kind.items():
        backend = _backend_of(d, kind)
        if backend is None:
            continue  # the kind is not served (its backend is missing): nothing to show, keep the tags
        listed = {e.id: e for e in await backend.list(ctx)}
        gone: list[str] = []
        for eid in ids:
            entity = listed.get(eid)
            if entity is None:
                try:
                    entity = await backend.get(ctx, eid)
                except errors.NotFound:
                    gone.append(eid)
                    continue
            found[(kind, eid)] = entity
        if gone:  # gone for the caller: its project's tags go (another project may still see it)
            await store.forget(kind, gone, project_id=ctx.project_id)
    return [found[m] for m in members if m in found]


def _backend_of(d: OcciDeps, kind_term: str) -> KindBackend | None:
    for b in d.backends.values():
        if b.kind.term == kind_term:
            return b
    return None


async def _provider_mixin_at(d: OcciDeps, ctx: RequestContext, path: str) -> Mixin | None:
    candidates: list[Mixin] = [*categories.MIXINS.values(), *await api_common.provider_mixins(d, ctx)]
    for m in candidates:
        if m.location:
            try:
                if normalize_location(m.location) == path:
                    return m
            except errors.Invalid:
                continue
    return None


async def _entities_with(d: OcciDeps, ctx: RequestContext, mixin: Mixin) -> list[Entity]:
    """Every entity the caller sees that carries `mixin` or a mixin below it (by depends)."""
    cats = await api_common.all_categories(d, ctx)
    ids = {c.id for c in api_common.related([mixin.id], [*cats, mixin]) if isinstance(c, Mixin)} | {mixin.id}
    backends = [b for b in d.backends.values()
                if not mixin.applies or {k.id for k in categories.ancestry(b.kind.id)} & set(mixin.applies)]
    lists = await asyncio.gather(*(b.list(ctx) for b in backends))
    return [e for es in lists for e in es if ids.intersection(e.mixins)]


async def _listing(request: Request, ctx: RequestContext, d: OcciDeps, entities: list[Entity], *,
                   filtered: bool = True) -> Response:
    out = api_common.renderer(request, listing=True)
    entities = await api_common.with_tags(d, ctx, entities)
    if filtered:
        flt = await api_common.entity_filter(request)
        if flt is not None:
            entities = [e for e in entities if api_common.matches(e, flt)]
        entities = api_common.page(request, entities)
    return api_common.respond(out.collection(entities))
