"""The OCCI 1.2 front door (GFD.223), mounted at /occi: the query interface, the kinds' collections,
entities, actions, the root listing, and (occi.api_mixins) mixin collections.

Routes, below /occi (statuses as GFD.223 prescribes them; the fault format is occi.faults'):
- GET /-/ and /.well-known/org/ogf/occi/-/: the categories (200), filtered (occi.api_common);
  POST: define user mixins (200); DELETE: remove them (200; a provider category is a 403).
- GET /: every entity of the caller (a collection, filterable, paginated); GET /resource/ and
  /link/ (Core's kinds, bound but served by no backend): the entities of their sub-kinds.
- GET /<kind>/: the kind's entities (filterable, paginated); POST: create (201 + Location);
  POST ?action=: the action on every entity of the collection (200); DELETE: delete every entity of
  the collection (200). PUT on a kind collection is not defined (405).
- GET /<kind>/<id>: the entity (200); PUT: full update (200 + the entity; a location that holds no
  entity is a 404: ids are the OpenStack UUIDs, so a client cannot choose one); POST: partial
  update (200 + the entity), or with ?action=term the action (200 + the entity); DELETE: 200.
- any other "/<path>/": a mixin collection (occi.api_mixins).
Unknown actions are a 400, an action the state forbids a 409 (the backend's InvalidState), unknown
paths a 404, other methods a 405. Every request is authenticated (occi.auth) and every backend call
carries the caller's context, so another project's entities are a 404 everywhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.occi import api_mixins, categories, mixins, validate
from cumulo.occi.api_common import (
    OcciMethodNotAllowed,
    absolute,
    all_categories,
    category_filter,
    check_seen,
    entity_at,
    entity_filter,
    header_list,
    matches,
    page,
    parser,
    provider_mixins,
    read_body,
    related,
    renderer,
    respond,
    with_tags,
)
from cumulo.occi.auth import OcciAuth, OcciUnauthorized, authenticate
from cumulo.occi.backends import compute as compute_backend
from cumulo.occi.backends import network as network_backend
from cumulo.occi.backends import networkinterface as networkinterface_backend
from cumulo.occi.backends import storage as storage_backend
from cumulo.occi.backends import storagelink as storagelink_backend
from cumulo.occi.backends import templates
from cumulo.occi.backends.base import KindBackend, MixinSource
from cumulo.occi.deps import OcciDeps, OcciServices, deps
from cumulo.occi.faults import OcciHeaders, OcciNotImplemented, render_fault
from cumulo.occi.model import ActionRequest, Entity, EntityRequest, Kind, Mixin
from cumulo.web.http import family_app


async def _ctx(request: Request) -> RequestContext:
    return await authenticate(request, deps(request).auth)


def _action_term(request: Request) -> str | None:
    """The ?action= term (None when the query has none; "" is a 400)."""
    for part in request.url.query.replace(";", "&").split("&"):
        k, sep, v = part.partition("=")
        if k == "action":
            if not v:
                raise errors.Invalid("the action query parameter names no action")
            return v
    return None


# --- the query interface --------------------------------------------------------------------------


async def query_interface(request: Request) -> Response:
    d = deps(request)
    ctx = await _ctx(request)
    if request.method in ("GET", "HEAD"):
        out = renderer(request)
        cats = await all_categories(d, ctx)
        wanted = await category_filter(request)
        if wanted is not None:
            cats = related(wanted, cats)
        return respond(out.categories(cats))
    if request.method not in ("POST", "DELETE"):
        raise OcciMethodNotAllowed(request.method, ("GET", "HEAD", "POST", "DELETE"))
    out = renderer(request)
    if d.user_mixins is None:
        raise OcciNotImplemented("user-defined mixins are not available on this server")
    body = await read_body(request)
    if request.method == "POST":
        defs = parser(request, body).categories(body, header_list(request))
        mixins = []
        for c in defs:
            if not isinstance(c, Mixin):
                raise errors.Invalid(f"{c.id} is not a mixin: only user-defined mixins may be added")
            mixins.append(c)
        await d.user_mixins.define(ctx, mixins)
        return respond(out.message("OK"))
    # DELETE
    cats = parser(request, body).categories(body, header_list(request), partial=True)
    if not cats:
        raise errors.Invalid("the request names no mixin to remove")
    provider = {m.id for m in await provider_mixins(d, ctx)}
    for c in cats:
        if categories.get(c.id) is not None or c.id in provider:
            raise errors.Forbidden(f"{c.id} is a provider category: it cannot be removed")
    await d.user_mixins.remove(ctx, [c.id for c in cats])
    return respond(out.message("OK"))


# --- collections ----------------------------------------------------------------------------------


async def root(request: Request) -> Response:
    d = deps(request)
    ctx = await _ctx(request)
    if request.method not in ("GET", "HEAD"):
        raise OcciMethodNotAllowed(request.method, ("GET", "HEAD"))
    out = renderer(request, listing=True)
    flt = await entity_filter(request)
    found = await asyncio.gather(*(b.list(ctx) for b in d.backends.values()))
    entities = await with_tags(d, ctx, [e for es in found for e in es])
    if flt is not None:
        entities = [e for e in entities if matches(e, flt)]
    return respond(out.collection(page(request, entities)))


async def collection(request: Request) -> Response:
    d = deps(request)
    ctx = await _ctx(request)
    name = request.path_params["collection"]
    backend = d.backend_at(name)
    if backend is None:
        parent = categories.kind_by_term(name)
        if parent is not None:
            return await _parent_collection(request, d, ctx, parent)
        return await mixin_collection(request, f"/{name}/")
    if request.method in ("GET", "HEAD"):
        return await _list(request, d, ctx, backend)
    if request.method == "POST":
        term = _action_term(request)
        if term is not None:
            return await _collection_action(request, d, ctx, backend, term)
        return await _create(request, d, ctx, backend)
    if request.method == "DELETE":
        out = renderer(request)
        entities = await backend.list(ctx)
        done = await _each([backend.delete(ctx, e.id) for e in entities])
        if d.user_mixins is not None:
            for e, deleted in zip(entities, done, strict=True):
                if deleted:
                    await d.user_mixins.untag_entity(ctx, backend.kind.term, e.id)
        return respond(out.message("OK"))
    raise OcciMethodNotAllowed(request.method, ("GET", "HEAD", "POST", "DELETE"))


async def _parent_collection(request: Request, d: OcciDeps, ctx: RequestContext, kind: Kind) -> Response:
    """The collection of a kind no backend serves itself (Core's resource at /resource/, link at
    /link/): every entity of its sub-kinds, read-only (nothing is ever just a resource or a link)."""
    if request.method not in ("GET", "HEAD"):
        raise OcciMethodNotAllowed(request.method, ("GET", "HEAD"))
    out = renderer(request, listing=True)
    flt = await entity_filter(request)
    below = [b for b in d.backends.values() if kind.id in {k.id for k in categories.ancestry(b.kind.id)}]
    found = await asyncio.gather(*(b.list(ctx) for b in below))
    entities = await with_tags(d, ctx, [e for es in found for e in es])
    if flt is not None:
        entities = [e for e in entities if matches(e, flt)]
    return respond(out.collection(page(request, entities)))


async def _each(calls: Sequence[Awaitable[Any]]) -> list[bool]:
    """Run every call of a collection-wide delete or action; when some fail, raise the first failure
    (the others still ran). An entity the caller sees but may not change (a shared network of another
    project: Forbidden) is left alone, not a failure of the whole request. Returns which calls
    succeeded."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, errors.Forbidden | errors.NotFound):
            raise r
    refused = [r for r in results if isinstance(r, errors.Forbidden)]
    if refused and len(refused) == len(results):
        raise refused[0]  # nothing the caller may change (e.g. a reader): say so
    return [not isinstance(r, BaseException) for r in results]


async def _list(request: Request, d: OcciDeps, ctx: RequestContext, backend: KindBackend) -> Response:
    out = renderer(request, listing=True)
    flt = await entity_filter(request)
    entities = await with_tags(d, ctx, await backend.list(ctx))
    if flt is not None:
        entities = [e for e in entities if matches(e, flt)]
    return respond(out.collection(page(request, entities)))


async def _collection_action(request: Request, d: OcciDeps, ctx: RequestContext, backend: KindBackend,
                             term: str) -> Response:
    out = renderer(request)
    act = await _action_request(request, backend.kind, term)
    entities = await backend.list(ctx)
    await _each([backend.act(ctx, e.id, act) for e in entities])
    return respond(out.message("OK"))


async def mixin_collection(request: Request, location: str) -> Response:
    ctx = await _ctx(request)
    return await api_mixins.collection(request, location, ctx)


async def deep_path(request: Request) -> Response:
    """A path of three or more segments: a mixin collection when it ends with "/", else a 404."""
    path = "/" + request.path_params["path"]
    if not path.endswith("/"):
        await _ctx(request)
        raise errors.NotFound("The resource could not be found.")
    return await mixin_collection(request, path)


# --- entities -------------------------------------------------------------------------------------


async def _known_mixins(d: OcciDeps, ctx: RequestContext, ids: Sequence[str]) -> dict[str, Mixin]:
    """The provider mixins a request may name: the static ones, and the data's (os_tpl, resource_tpl)
    when the request names any other."""
    known: dict[str, Mixin] = dict(categories.MIXINS)
    pending = [mid for mid in dict.fromkeys(ids) if mid not in known]
    if pending:
        # A source that can look ids up (one image read) is asked for those only, not listed whole.
        found = await asyncio.gather(*(
            src.lookup(ctx, pending) if hasattr(src, "lookup") else src.mixins(ctx) for src in d.sources))
        known.update({m.id: m for ms in found for m in ms})
    return known


async def _user_mixins(d: OcciDeps, ctx: RequestContext, ids: Sequence[str], known: dict[str, Mixin]) -> list[str]:
    """The caller's user mixins among `ids` (the rest must be provider mixins); an id that is
    neither is a 400 naming it (another project's mixins are unknown here)."""
    rest = [mid for mid in dict.fromkeys(ids) if mid not in known]
    user = await d.user_mixins.known(ctx, rest) if rest and d.user_mixins is not None else []
    unknown = [mid for mid in rest if mid not in user]
    if unknown:
        raise errors.Invalid(f"unknown mixin {unknown[0][:200]}")
    return user


async def _check_links(d: OcciDeps, ctx: RequestContext, req: EntityRequest, kind: Kind) -> None:
    """Every location a request points at (inline link targets; a link's source and target) must be
    an entity the caller sees: 404 otherwise (another project's entities do not exist)."""
    targets = [ln.target for ln in req.links]
    if categories.is_link_kind(kind.id):
        for attr in ("occi.core.source", "occi.core.target"):
            value = req.attributes.get(attr)
            if value:
                targets.append(str(value))
    for target in targets:
        found = entity_at(d, target)
        if found is None:
            raise errors.NotFound(f"no entity at {target[:120]}")
        await check_seen(ctx, *found, target)


async def _entity_request(request: Request, d: OcciDeps, ctx: RequestContext, backend: KindBackend, *,
                          create: bool, current: Entity | None = None) -> tuple[EntityRequest, list[str]]:
    """The validated request (user mixins stripped) and the user mixin ids it named. `current` (an
    update's entity): its mixins' attributes are known and its immutable values may be repeated, so
    that a client can PUT back the rendering it got (GFD.223 §10.2.2)."""
    body = await read_body(request)
    req = parser(request, body).entity(body, header_list(request))
    if req.kind is None:
        req.kind = backend.kind.id
    elif req.kind != backend.kind.id:
        raise errors.Invalid(f"kind {req.kind} does not belong to the collection {backend.kind.location}")
    link_mixins = [m for link in req.links for m in link.mixins]
    own = list(current.mixins) if current is not None else []
    if current is not None and req.links:  # its links, repeated, are left intact (GFD.223 §10.2.2)
        present = {link.id for link in current.links}
        req.links = [link for link in req.links if link.id is None or link.id not in present]
    known = await _known_mixins(d, ctx, [*req.mixins, *link_mixins, *own])
    user = await _user_mixins(d, ctx, req.mixins, known)
    check_tags = getattr(d.user_mixins, "check_tags", None)
    if user and check_tags is not None:  # a tag tag() would refuse is refused before the backend acts
        await check_tags(ctx, user, backend.kind.term)
    req.mixins = [m for m in dict.fromkeys(req.mixins) if m in known]
    mixins = [known[m] for m in dict.fromkeys([*req.mixins, *own]) if m in known]
    checked = validate.check_entity(req, backend.kind, mixins, create=create, resolve=known.get,
                                    current=current.attributes if current is not None else None)
    await _check_links(d, ctx, checked, backend.kind)
    return checked, user


async def _create(request: Request, d: OcciDeps, ctx: RequestContext, backend: KindBackend) -> Response:
    out = renderer(request)
    req, user = await _entity_request(request, d, ctx, backend, create=True)
    entity = await backend.create(ctx, req)
    if user and d.user_mixins is not None:
        await d.user_mixins.tag(ctx, user, backend.kind.term, entity.id)
        entity.mixins += [m for m in user if m not in entity.mixins]
    location = absolute(request, entity.location)
    return respond(out.locations([entity.location]), 201, {"Location": location})


def _entity_backend(request: Request) -> tuple[OcciDeps, KindBackend, str]:
    d = deps(request)
    backend = d.backend_at(request.path_params["collection"])
    if backend is None:
        raise errors.NotFound("The resource could not be found.")
    return d, backend, request.path_params["entity_id"]


async def entity(request: Request) -> Response:
    ctx = await _ctx(request)
    d, backend, eid = _entity_backend(request)
    if request.method in ("GET", "HEAD"):
        out = renderer(request)
        found = [await _get_tagged(d, ctx, backend, eid)]
        return respond(out.entity(found[0]))
    if request.method == "DELETE":
        out = renderer(request)
        await backend.delete(ctx, eid)
        if d.user_mixins is not None:
            await d.user_mixins.untag_entity(ctx, backend.kind.term, eid)
        return respond(out.message("OK"))
    if request.method == "POST":
        term = _action_term(request)
        if term is not None:
            out = renderer(request)
            act = await _action_request(request, backend.kind, term)
            await backend.act(ctx, eid, act)
            found = [await _get_tagged(d, ctx, backend, eid)]
            return respond(out.entity(found[0]))
        return await _update(request, d, ctx, backend, eid, replace=False)
    if request.method == "PUT":
        return await _update(request, d, ctx, backend, eid, replace=True)
    raise OcciMethodNotAllowed(request.method, ("GET", "HEAD", "PUT", "POST", "DELETE"))


async def _get_tagged(d: OcciDeps, ctx: RequestContext, backend: KindBackend, eid: str) -> Entity:
    """One entity with its user-mixin tags; the tags are read while the backend reads the entity."""
    if d.user_mixins is None:
        return await backend.get(ctx, eid)
    tags_task = asyncio.ensure_future(d.user_mixins.tags_of(ctx, backend.kind.term, [eid]))
    try:
        found = await backend.get(ctx, eid)
    except BaseException:
        await asyncio.gather(tags_task, return_exceptions=True)  # let the read finish, never cut a query short
        raise
    for m in (await tags_task).get(eid, []):
        if m not in found.mixins:
            found.mixins.append(m)
    return found


async def _update(request: Request, d: OcciDeps, ctx: RequestContext, backend: KindBackend, eid: str, *,
                  replace: bool) -> Response:
    out = renderer(request)
    current = await backend.get(ctx, eid)
    req, user = await _entity_request(request, d, ctx, backend, create=False, current=current)
    updated = await backend.update(ctx, eid, req, replace=replace)
    if d.user_mixins is not None:
        if replace:
            await d.user_mixins.set_tags(ctx, backend.kind.term, eid, user)
        elif user:
            await d.user_mixins.tag(ctx, user, backend.kind.term, eid)
    found = await with_tags(d, ctx, [updated])
    return respond(out.entity(found[0]))


async def _action_request(request: Request, kind: Kind, term: str) -> ActionRequest:
    """The validated action invocation of ?action=term on `kind`: an action the kind does not have is
    a 400; the body's action category, when it names one, must be the query's."""
    action = categories.action_of(kind.id, term)
    if action is None:
        raise errors.Invalid(f"unknown action {term} for kind {kind.term}")
    body = await read_body(request)
    headers = header_list(request)
    rendered = any(k.lower() in (b"category", b"x-occi-attribute") for k, _ in headers)
    if body.strip() or rendered:
        act = parser(request, body).action(body, headers)
        if act.action and act.action != action.id:
            raise errors.Invalid(f"the request's action {act.action} is not the query's action {term}")
        act.action = action.id
    else:
        act = ActionRequest(action=action.id)
    return validate.check_action(act, action)


# --- the app --------------------------------------------------------------------------------------


_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
ROUTES = [
    # every method reaches the query interface (else "/-/" would fall through to the routes below)
    Route("/-/", query_interface, methods=_ALL_METHODS),
    Route("/.well-known/org/ogf/occi/-/", query_interface, methods=_ALL_METHODS),
    Route("/", root, methods=_ALL_METHODS),
    # every method reaches the handlers too: a 405's Allow then names what that path takes (PUT on a
    # kind's collection is not, on a mixin's it is), not what the route pattern takes
    Route("/{collection}/", collection, methods=_ALL_METHODS),
    Route("/{collection}/{entity_id}", entity, methods=_ALL_METHODS),
    Route("/{path:path}", deep_path, methods=_ALL_METHODS),
]


def build_deps(svc: OcciServices | None, *, backends: Sequence[KindBackend] = (),
               sources: Sequence[MixinSource] = (), user_mixins: Any = None) -> OcciDeps:
    """The registry: one backend per kind and the template mixin sources, each built from `svc` by its
    module's `make(svc)`, and the user-mixin store; or (tests) the ones given."""
    found: list[KindBackend] = list(backends)
    srcs: list[MixinSource] = list(sources)
    store = user_mixins
    if svc is not None:
        found += [compute_backend.make(svc), storage_backend.make(svc), network_backend.make(svc),
                  networkinterface_backend.make(svc), storagelink_backend.make(svc)]
        srcs += templates.make(svc)
        if store is None:
            store = mixins.make(svc)
    registry = {b.kind.id: b for b in found}
    links = [b for b in found if categories.is_link_kind(b.kind.id)]
    for b in found:
        if hasattr(b, "link_backends"):  # a resource's links come from the link kinds' backends
            b.link_backends = links
    return OcciDeps(services=svc, backends=registry, sources=srcs, user_mixins=store,
                    auth=OcciAuth(svc.identity) if svc is not None else None)


def make_app(svc: OcciServices | None = None, *, occi_deps: OcciDeps | None = None) -> Any:
    """The OCCI family's ASGI app over the cloud's services (or ready-made `occi_deps`, in tests)."""
    d = occi_deps if occi_deps is not None else build_deps(svc)
    app = family_app(d, ROUTES, render_fault)
    app.router.redirect_slashes = False

    async def on_domain_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, errors.CumuloError)
        resp = render_fault(exc.code, exc.message, request)
        if isinstance(exc, OcciUnauthorized):
            resp.headers["WWW-Authenticate"] = exc.challenge
        if isinstance(exc, OcciMethodNotAllowed):
            resp.headers["Allow"] = ", ".join(exc.allow)
        return resp

    app.add_exception_handler(errors.CumuloError, on_domain_error)
    return OcciHeaders(app)


__all__ = ["ROUTES", "build_deps", "make_app", "Entity"]
