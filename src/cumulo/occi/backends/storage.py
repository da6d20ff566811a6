"""storage <-> volumes: the OCCI storage kind over the volume service (Cinder's service layer, never
its HTTP API), with the caller's RequestContext, so the volume service's own scoping, policy
(volume:*), quotas and status machine apply. A storage made here is the same volume in
`openstack volume list`, and the other way round.

Mapping (docs/occi.md, "Storage", restates it):
- occi.core.id = the volume's UUID; title = its name; summary = its description;
  occi.storage.size = its size in GiB (a whole number: Cinder's sizes are whole GiB; a fractional
  size asked for is rounded up).
- occi.storage.state: online (available, in-use, and the statuses of an online volume at work:
  reserved, attaching, detaching, extending, backing-up, uploading, retyping, awaiting-transfer),
  offline (taken offline: Cinder's `maintenance`; and a volume not usable yet: creating,
  restoring-backup, downloading, deleting), error (error, error_*). state.message = Cinder's status
  (with the reason of an error, and "going online" while an online runs).
- actions, each advertised only in the states that allow it (any other state: 409):
  offline (available and detached: the volume service's offline, which seals the file on the
  host), online (offline), backup (available or in-use: a Cinder backup, forced for an in-use one),
  snapshot (available or in-use: a Cinder snapshot, forced likewise), resize (1.1; attribute
  `size`, or occi.storage.size, in GiB: an extend, online for an in-use volume as Cinder 3.42).
- create: occi.storage.size is required (GFD.224 gives it no default; 400 naming it otherwise);
  update: title/summary -> name/description; a bigger size -> extend; a smaller one -> 400;
  delete: refused (409) while linked to a compute, offline, or with snapshots.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.occi.model import ActionRequest, Entity, EntityRequest, Kind
from cumulo.volume import states
from cumulo.volume.base import OFFLINE, OFFLINE_ENTERING, OFFLINE_LEAVING
from cumulo.volume.query import Page

if TYPE_CHECKING:
    from cumulo.occi.deps import OcciServices
    from cumulo.volume.service import VolumeService

ACTION_SCHEME = "http://schemas.ogf.org/occi/infrastructure/storage/action#"
ONLINE = ACTION_SCHEME + "online"
OFFLINE_ACTION = ACTION_SCHEME + "offline"
BACKUP = ACTION_SCHEME + "backup"
SNAPSHOT = ACTION_SCHEME + "snapshot"
RESIZE = ACTION_SCHEME + "resize"
VOLUME_VERSION = (3, 60)  # the Cinder microversion OCCI's calls act as (3.42+: an in-use volume extends online)
_PAGE = 1000
_TERMS = ("online", "offline", "backup", "snapshot", "resize")

# Cinder statuses of a volume whose data is reachable (an online storage), beyond available/in-use.
_ONLINE_BUSY = frozenset({
    states.RESERVED, states.ATTACHING, states.DETACHING, states.EXTENDING, states.BACKING_UP, states.UPLOADING,
    states.RETYPING, states.AWAITING_TRANSFER,
})
_USABLE = frozenset({states.AVAILABLE, states.IN_USE})


def offline_mark(rec: dict[str, Any]) -> str | None:
    """The volume's offline mark: None (not offline), "entering" (being sealed), "True" (sealed) or
    "leaving" (being brought online)."""
    if rec.get("status") != states.MAINTENANCE:
        return None
    mark = (rec.get("admin_metadata") or {}).get(OFFLINE)
    return None if mark is None else str(mark)


def occi_state(rec: dict[str, Any]) -> tuple[str, str]:
    """(occi.storage.state, occi.storage.state.message) of a volume record."""
    status = str(rec.get("status") or "")
    if status.startswith("error"):
        reason = rec.get("error_message")
        return "error", f"{status}: {reason}" if reason else status
    mark = offline_mark(rec)
    # the reason the last operation on a usable volume failed (an offline the host refused, an
    # upload ...): the worker keeps it in error_message until an operation succeeds
    failed = f" (the last operation failed: {rec['error_message']})" if rec.get("error_message") else ""
    if mark == OFFLINE_LEAVING:
        return "offline", f"{status} (going online){failed}"
    if mark == OFFLINE_ENTERING:  # the host has not sealed the file yet: "offline" only once it has
        return "online", f"{status} (going offline){failed}"
    if status in _USABLE or status in _ONLINE_BUSY:
        return "online", status + failed
    return "offline", status + failed


def allowed_actions(rec: dict[str, Any]) -> list[str]:
    status = rec.get("status")
    if offline_mark(rec) == "True":
        return [ONLINE]
    if status == states.AVAILABLE and rec.get("attach_status") != states.ATTACHED:
        return [OFFLINE_ACTION, BACKUP, SNAPSHOT, RESIZE]
    if status == states.IN_USE:
        return [BACKUP, SNAPSHOT, RESIZE]
    return []


def whole_gib(value: Any, name: str) -> int:
    """A size in GiB as Cinder takes it: a whole number. GFD.224 types occi.storage.size as a float;
    a fraction is rounded UP (0.1 -> 1, 1.5 -> 2), so the storage holds at least what was asked and
    the entity then shows the real size. Zero, negative and non-finite sizes are 400s."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise errors.Invalid(f"{name} must be a number of GiB, not {str(value)[:32]!r}")
    try:
        number = float(value)
    except ValueError:
        raise errors.Invalid(f"{name} must be a number of GiB, not {str(value)[:32]!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise errors.Invalid(f"{name} must be a positive number of GiB (got {str(value)[:32]})")
    if number > 1 << 31:
        raise errors.Invalid(f"{name} {int(number)} GiB is too large")
    return math.ceil(number)


def text_attr(value: Any, name: str) -> str:
    """A title or summary as Cinder keeps a name or description: at most 255 characters, no NUL."""
    text = str(value)
    if len(text) > 255:
        raise errors.Invalid(f"{name} is too long: {len(text)} characters, at most 255")
    if "\x00" in text:
        raise errors.Invalid(f"{name} must not contain a NUL character")
    return text


async def every_page(list_page: Callable[[RequestContext, dict[str, str]], Awaitable[Page]],
                     ctx: RequestContext) -> list[dict[str, Any]]:
    """Every item of a volume service listing (list_volumes, list_attachments), page by page."""
    out: list[dict[str, Any]] = []
    params = {"sort": "created_at:asc,id:asc", "limit": str(_PAGE)}
    while True:
        page = await list_page(ctx, params)
        out += page.items
        if not page.more or not page.items:
            return out
        params = {**params, "marker": str(page.items[-1]["id"])}


@contextlib.contextmanager
def state_conflicts() -> Iterator[None]:
    """Cinder's "Invalid volume: ... status must be ..." refusals (400 in Cinder's API) are the state
    conflicts OCCI answers with 409; other refusals stay 400."""
    try:
        yield
    except errors.InvalidState:
        raise
    except errors.Invalid as exc:
        if exc.message.startswith(("Invalid volume:", "Invalid snapshot:", "Invalid backup:")):
            raise errors.InvalidState(exc.message) from exc
        raise


class StorageBackend:
    """KindBackend for storage (one per app)."""

    def __init__(self, kind: Kind, volume: VolumeService) -> None:
        self.kind = kind
        self.volume = volume

    # --- reading ---

    def entity(self, rec: dict[str, Any]) -> Entity:
        vid = str(rec["id"])
        state, message = occi_state(rec)
        attrs: dict[str, Any] = {
            "occi.core.id": vid,
            "occi.core.title": rec.get("name") or "",
            "occi.storage.size": int(rec.get("size") or 0),
            "occi.storage.state": state,
            "occi.storage.state.message": message,
        }
        if rec.get("description"):
            attrs["occi.core.summary"] = rec["description"]
        return Entity(kind=self.kind.id, id=vid, location=f"/storage/{vid}", attributes=attrs,
                      actions=allowed_actions(rec))

    async def records(self, ctx: RequestContext) -> list[dict[str, Any]]:
        """Every volume of the caller's project (an admin's too: Cinder's list without all_tenants)."""
        return await every_page(self.volume.list_volumes, ctx)

    async def list(self, ctx: RequestContext) -> list[Entity]:
        return [self.entity(r) for r in await self.records(ctx) if r.get("status") != states.DELETING]

    async def _record(self, ctx: RequestContext, entity_id: str) -> dict[str, Any]:
        """The volume, when it is the caller's project's: an admin, too, reaches only its own project's
        entities through /occi (as with every other kind), not every volume Cinder would show it."""
        rec = await self.volume.get_volume(ctx, entity_id)
        # a volume whose DELETE was accepted is gone for OCCI at once (GFD.223 §10.4), as a compute's
        if rec.get("project_id") != ctx.project_id or rec.get("status") == states.DELETING:
            raise errors.NotFound(f"Volume {str(entity_id)[:64]} could not be found.")
        return rec

    async def get(self, ctx: RequestContext, entity_id: str) -> Entity:
        return self.entity(await self._record(ctx, entity_id))

    # --- writing ---

    @staticmethod
    def _no_extras(req: EntityRequest) -> None:
        if req.mixins:
            raise errors.Invalid(f"a storage takes no mixin {req.mixins[0]}")
        if req.links:
            raise errors.Invalid("a storage has no links of its own: link it from a compute with a storagelink")

    async def create(self, ctx: RequestContext, req: EntityRequest) -> Entity:
        self._no_extras(req)
        if req.attributes.get("occi.storage.size") is None:
            raise errors.Invalid("occi.storage.size is required: the size of the new storage in GiB")
        size = whole_gib(req.attributes["occi.storage.size"], "occi.storage.size")
        body: dict[str, Any] = {"size": size}
        for attr, field in (("occi.core.title", "name"), ("occi.core.summary", "description")):
            if req.attributes.get(attr) is not None:
                body[field] = text_attr(req.attributes[attr], attr)
        rec = await self.volume.create_volume(ctx, {"volume": body}, version=VOLUME_VERSION)
        return self.entity(rec)

    async def update(self, ctx: RequestContext, entity_id: str, req: EntityRequest, *, replace: bool) -> Entity:
        self._no_extras(req)
        rec = await self._record(ctx, entity_id)
        values: dict[str, Any] = {}
        for attr, field in (("occi.core.title", "name"), ("occi.core.summary", "description")):
            if attr in req.attributes:
                value = req.attributes[attr]
                values[field] = None if value is None else text_attr(value, attr)
            elif replace:  # PUT: a mutable attribute left out returns to its default (none)
                values[field] = None
        grow = None
        if req.attributes.get("occi.storage.size") is not None:  # checked before anything is written
            grow = self._new_size(rec, req.attributes["occi.storage.size"], "occi.storage.size")
        if grow is not None:  # first: a grow refused (quota, state) leaves the title and summary as they were
            with state_conflicts():
                await self.volume.extend(ctx, str(rec["id"]), grow, version=VOLUME_VERSION)
        if values and any(values[f] != rec.get(f) for f in values):
            await self.volume.update_volume(ctx, entity_id, {"volume": values})
        return await self.get(ctx, entity_id)

    @staticmethod
    def _new_size(rec: dict[str, Any], value: Any, name: str) -> int | None:
        """The size to extend to (None: it is the size already); 400 for a smaller one, 409 when the
        storage cannot grow in its state."""
        size = whole_gib(value, name)
        current = int(rec.get("size") or 0)
        if size == current:
            return None
        if size < current:
            raise errors.Invalid(f"{name} {size} is smaller than the storage's {current} GiB: a storage only grows")
        if rec.get("status") not in (states.AVAILABLE, states.IN_USE) or offline_mark(rec):
            raise errors.InvalidState(f"storage {rec['id']} is {occi_state(rec)[1]}: it grows only when online "
                                      "(available or in-use)")
        return size

    async def _resize(self, ctx: RequestContext, rec: dict[str, Any], value: Any, name: str) -> None:
        size = self._new_size(rec, value, name)
        if size is not None:
            with state_conflicts():
                await self.volume.extend(ctx, str(rec["id"]), size, version=VOLUME_VERSION)

    async def delete(self, ctx: RequestContext, entity_id: str) -> None:
        rec = await self._record(ctx, entity_id)
        servers = sorted({str(a.get("instance_uuid")) for a in rec.get("attachments") or () if a.get("instance_uuid")})
        if servers or rec.get("attach_status") == states.ATTACHED or rec.get("status") in (
                states.IN_USE, states.RESERVED, states.ATTACHING, states.DETACHING):
            linked = ", ".join(f"/compute/{s}" for s in servers) or "a compute"
            raise errors.InvalidState(f"storage {entity_id} is linked to {linked} ({rec.get('status')}): "
                                      "delete its storagelink first")
        if offline_mark(rec):
            raise errors.InvalidState(f"storage {entity_id} is offline: bring it online before deleting it")
        snaps = (await self.volume.list_snapshots(ctx, {"volume_id": str(rec["id"])})).items
        if snaps:
            raise errors.InvalidState(
                f"storage {entity_id} has {len(snaps)} snapshot(s) ({', '.join(str(s['id']) for s in snaps[:5])}): "
                "delete them through the block storage API first (openstack volume snapshot delete)")
        with state_conflicts():
            await self.volume.delete_volume(ctx, str(rec["id"]))

    async def act(self, ctx: RequestContext, entity_id: str, action: ActionRequest) -> None:
        term = action.action.removeprefix(ACTION_SCHEME)
        if term not in _TERMS:
            raise errors.Invalid(f"unknown storage action {action.action}")
        rec = await self._record(ctx, entity_id)
        if ACTION_SCHEME + term not in allowed_actions(rec):
            raise errors.InvalidState(f"storage {entity_id} is {occi_state(rec)[1]}: {term} is not allowed now "
                                      f"(allowed: {', '.join(a.rsplit('#', 1)[-1] for a in allowed_actions(rec)) or 'none'})")
        vid = str(rec["id"])
        label = rec.get("name") or vid
        with state_conflicts():
            if term == "offline":
                await self.volume.set_offline(ctx, vid)
            elif term == "online":
                await self.volume.set_online(ctx, vid)
            elif term == "backup":
                await self.volume.create_backup(ctx, {"backup": {
                    "volume_id": vid, "force": True, "name": f"{label} backup"[:255],
                    "description": "made by the OCCI storage backup action"}}, version=VOLUME_VERSION)
            elif term == "snapshot":
                await self.volume.create_snapshot(ctx, {"snapshot": {
                    "volume_id": vid, "force": True, "name": f"{label} snapshot"[:255],
                    "description": "made by the OCCI storage snapshot action"}})
            else:
                value = action.attributes.get("size", action.attributes.get("occi.storage.size"))
                if value is None:
                    raise errors.Invalid("resize needs the new size: attribute size (or occi.storage.size) in GiB")
                await self._resize(ctx, rec, value, "size")


def make(svc: OcciServices) -> StorageBackend:
    from cumulo.occi import categories

    return StorageBackend(categories.STORAGE, svc.volume)
