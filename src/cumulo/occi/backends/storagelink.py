"""storagelink <-> a server's volume attachments: the OCCI storagelink kind over the compute
service's attach and detach (the same path as Nova's os-volume_attachments, so the same checks,
policy rules `os_compute_api:os-volumes-attachments:*`, agent casts and host effects) and the volume
service's attachment records.

Mapping (docs/occi.md, "Storage", restates it):
- occi.core.id = the attachment's id (Cinder's attachment, which Nova's block device mapping of
  the server records as its attachment_id); occi.core.source = /compute/<server uuid>;
  occi.core.target = /storage/<volume uuid>.
- occi.storagelink.deviceid = the mapping's device name (/dev/vdb ...; a client may ask for one on
  create, as Nova's `device`); occi.storagelink.mountpoint = where the compute sees the storage:
  /mnt/volumes/<volume uuid> in a container (runc mounts the volume's filesystem there), the
  device in a VM (the guest mounts it where it likes). The cloud decides both: a mountpoint a
  client sends is ignored, a change of either on update is a 400.
- occi.storagelink.state: active (the attachment is attached and the volume in-use), inactive
  (being attached or detached), error (the attach failed); state.message = "<attachment status>,
  volume <volume status>".
- create (POST /storagelink/ with source and target, or a storagelink inline on a compute create,
  which the compute backend turns into a block device mapping): attach, answered at once (the
  link is inactive until the compute's agent has attached it, then active); delete: detach.
- Scope: the caller's project, as the volume service's attachment list and the compute service's
  server lookups scope them.
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from cumulo import errors, policy
from cumulo.compute import volume_records
from cumulo.compute.api.volume_attachments import PREFIX  # registers os-volumes-attachments:* rules
from cumulo.compute.service.volume_attachments import VolumeAttachmentService
from cumulo.context import RequestContext
from cumulo.occi.backends import templates
from cumulo.occi.backends.endpoints import endpoints, located
from cumulo.occi.backends.storage import every_page, offline_mark, state_conflicts
from cumulo.occi.model import ActionRequest, Entity, EntityRequest, Kind, split_location
from cumulo.volume import states

if TYPE_CHECKING:
    from cumulo.compute.service.servers import ComputeService
    from cumulo.occi.deps import OcciServices
    from cumulo.volume.service import VolumeService

CONTAINER_MOUNTS = "/mnt/volumes"  # where runc mounts a volume in a container (compute/drivers/runc/volhost.py)
_FEW = 8  # up to this many volumes, each is read alone; beyond, the project's list is read once


def instance_type(server: dict[str, Any]) -> str:
    """"container" or "vm", from the image the server was booted with (its request spec)."""
    image = (server.get("request_spec") or {}).get("image") or {}
    return templates.instance_type({**(image.get("properties") or {}), "container_format": image.get("container_format")})


def mountpoint(server: dict[str, Any], volume_id: str, device: str | None) -> str:
    if instance_type(server) == "container":
        return f"{CONTAINER_MOUNTS}/{volume_id}"
    return device or ""


def link_state(attach_status: str, volume_status: str | None) -> str:
    if attach_status.startswith("error"):
        return "error"
    if attach_status == states.ATTACHMENT_ATTACHED and volume_status not in (states.DETACHING, states.ATTACHING):
        return "active"
    return "inactive"


def _unlinking(vol: dict[str, Any]) -> bool:
    """The volume's only link is being deleted (detaching): the link is gone for OCCI at once (GFD.223
    §10.4: DELETE deletes it) while the host unmounts. A multiattach volume's detaching names no
    one link: its links stay shown (inactive) until done. An `available` volume whose attachment row
    is still there is a detach the host finished a moment before the row goes: gone too."""
    return vol.get("status") in (states.DETACHING, states.AVAILABLE) and not vol.get("multiattach")


class StorageLinkBackend:
    """KindBackend for storagelink."""

    def __init__(self, kind: Kind, compute: ComputeService, volume: VolumeService) -> None:
        self.kind = kind
        self.compute = compute
        self.volume = volume

    def attachments(self) -> VolumeAttachmentService:
        return VolumeAttachmentService(self.compute)

    def entity(self, attachment: dict[str, Any], server: dict[str, Any], mapping: dict[str, Any],
               volume_status: str | None) -> Entity:
        aid, vid = str(attachment["id"]), str(attachment["volume_id"])
        status = str(attachment.get("attach_status") or attachment.get("status") or "")
        device = mapping.get("device_name")
        attrs: dict[str, Any] = {
            "occi.core.id": aid,
            "occi.core.source": f"/compute/{server['uuid']}",
            "occi.core.target": f"/storage/{vid}",
            "occi.storagelink.deviceid": device or "",
            "occi.storagelink.mountpoint": mountpoint(server, vid, device),
            "occi.storagelink.state": link_state(status, volume_status),
            "occi.storagelink.state.message": f"{status}, volume {volume_status or 'unknown'}",
        }
        return Entity(kind=self.kind.id, id=aid, location=f"/storagelink/{aid}", attributes=attrs)

    # --- reading ---

    async def _servers(self, ctx: RequestContext, uuids: set[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for uuid in sorted(uuids):
            with contextlib.suppress(errors.NotFound):  # deleted meanwhile: its links went with it
                server = await self.compute.get(ctx, uuid)
                if server["project_id"] == ctx.project_id:  # an admin's too: its project's only
                    out[uuid] = server
        return out

    async def list(self, ctx: RequestContext) -> list[Entity]:
        """The caller's project's storagelinks: every attachment of a volume to one of its servers
        that the server maps."""
        return await self.links_of(ctx, None)

    async def links_of(self, ctx: RequestContext, server_uuids: Iterable[str] | None) -> builtins.list[Entity]:
        """The storagelinks of some of the caller's servers (None: all of them): what the compute
        backend renders inline, without listing every link of the project for one compute."""
        policy.authorize(ctx, f"{PREFIX}:index")
        atts = [a for a in await every_page(self.volume.list_attachments, ctx) if a.get("instance_uuid")]
        if server_uuids is not None:
            wanted = {str(u) for u in server_uuids}
            atts = [a for a in atts if str(a["instance_uuid"]) in wanted]
        if not atts:
            return []
        servers = await self._servers(ctx, {str(a["instance_uuid"]) for a in atts})
        mappings = await self.attachments().of_servers(sorted(servers))
        by_attachment = {str(m["attachment_id"]): m for rows in mappings.values() for m in rows
                         if m.get("attachment_id")}
        volume_ids = {str(a["volume_id"]) for a in atts}
        if len(volume_ids) <= _FEW:
            vols = []
            for vid in sorted(volume_ids):
                with contextlib.suppress(errors.NotFound):
                    vols.append(await self.volume.get_volume(ctx, vid))
        else:
            vols = await every_page(self.volume.list_volumes, ctx)
        statuses = {str(v["id"]): str(v["status"]) for v in vols}
        unlinking = {str(v["id"]) for v in vols if _unlinking(v)}
        out = []
        for a in atts:
            server = servers.get(str(a["instance_uuid"]))
            mapping = by_attachment.get(str(a["id"]))
            if server is None or mapping is None or str(a["volume_id"]) in unlinking:
                continue
            out.append(self.entity(a, server, mapping, statuses.get(str(a["volume_id"]))))
        return out

    async def _resolve(self, ctx: RequestContext, entity_id: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """(attachment, server, mapping) of a storagelink the caller may see; NotFound otherwise."""
        missing = errors.NotFound(f"storagelink {str(entity_id)[:64]} not found")
        try:
            att = await self.volume.get_attachment(ctx, entity_id)
        except errors.NotFound:
            raise missing from None
        if not att.get("instance_uuid"):
            raise missing
        try:
            server = await self.compute.get(ctx, str(att["instance_uuid"]))
        except errors.NotFound:
            raise missing from None
        if server["project_id"] != ctx.project_id:  # an admin, too, reaches only its project's links here
            raise missing
        mapping = next((m for m in await self.attachments().of_server(server)
                        if str(m.get("attachment_id")) == str(att["id"])), None)
        if mapping is None:
            raise missing
        return att, server, mapping

    async def get(self, ctx: RequestContext, entity_id: str) -> Entity:
        policy.authorize(ctx, f"{PREFIX}:show")
        att, server, mapping = await self._resolve(ctx, entity_id)
        vol = await self.volume.get_volume(ctx, str(att["volume_id"]))
        if _unlinking(vol):
            raise errors.NotFound(f"storagelink {str(entity_id)[:64]} not found")
        return self.entity(att, server, mapping, str(vol["status"]))

    # --- writing ---

    async def create(self, ctx: RequestContext, req: EntityRequest) -> Entity:
        if req.mixins:
            raise errors.Invalid(f"a storagelink takes no mixin {req.mixins[0]}")
        source, target = endpoints(req, "the /compute/<id> to link the storage to", "the /storage/<id> to link")
        server_id = located(source, "compute", "occi.core.source")
        volume_id = located(target, "storage", "occi.core.target")
        policy.authorize(ctx, f"{PREFIX}:create")
        try:
            server = await self.compute.get(ctx, server_id)
        except errors.NotFound:
            raise errors.Invalid(f"occi.core.source /compute/{server_id[:64]} does not exist") from None
        try:
            vol = await self.volume.get_volume(ctx, volume_id)
        except errors.NotFound:
            raise errors.Invalid(f"occi.core.target /storage/{volume_id[:64]} does not exist") from None
        if offline_mark(vol):
            raise errors.InvalidState(f"storage {volume_id} is offline: bring it online before linking it")
        if vol["status"] != states.AVAILABLE and not (vol.get("multiattach") and vol["status"] == states.IN_USE):
            raise errors.InvalidState(f"storage {volume_id} is {vol['status']}: only an available storage can be "
                                      "linked to a compute")
        device = req.attributes.get("occi.storagelink.deviceid")
        if device and volume_records.normalize_device(str(device)) is None:
            raise errors.Invalid(f"occi.storagelink.deviceid {str(device)[:64]!r} is not a device name such as /dev/vdb")
        with state_conflicts():
            mapping = await self.attachments().attach(
                ctx, server, str(vol["id"]), device=str(device) if device else None, multiattach_ok=True)
        att = await self.volume.get_attachment(ctx, str(mapping["attachment_id"]))
        return self.entity(att, server, mapping, states.RESERVED)

    async def update(self, ctx: RequestContext, entity_id: str, req: EntityRequest, *, replace: bool) -> Entity:
        current = await self.get(ctx, entity_id)
        if req.mixins:
            raise errors.Invalid(f"a storagelink takes no mixin {req.mixins[0]}")
        for name in ("occi.storagelink.deviceid", "occi.storagelink.mountpoint", "occi.core.source",
                     "occi.core.target"):
            value = req.attributes.get(name)
            if value is not None and name in ("occi.core.source", "occi.core.target"):
                with contextlib.suppress(ValueError):  # absolute or root-relative, as rendered
                    value = "/{}/{}".format(*split_location(str(value)))
            if value is not None and str(value) != str(current.attributes.get(name)):
                raise errors.Invalid(f"{name} of a storagelink cannot change (it is "
                                     f"{current.attributes.get(name)!r}): delete the link and make a new one")
        return current

    async def delete(self, ctx: RequestContext, entity_id: str) -> None:
        policy.authorize(ctx, f"{PREFIX}:delete")
        att, server, _mapping = await self._resolve(ctx, entity_id)
        with state_conflicts():
            await self.attachments().detach(ctx, server, str(att["volume_id"]))

    async def act(self, ctx: RequestContext, entity_id: str, action: ActionRequest) -> None:
        raise errors.Invalid(f"a storagelink has no action {action.action}")


def make(svc: OcciServices) -> StorageLinkBackend:
    from cumulo.occi import categories

    return StorageLinkBackend(categories.STORAGELINK, svc.compute, svc.volume)
