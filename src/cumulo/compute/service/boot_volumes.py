"""Block device mappings of a server create on the API side (after bdm.parse): the sources looked up
in the caller's project, the image metadata a volume-backed server boots with, the existing
volumes reserved for it, and the block_device_mapping rows written.

As Nova's compute API (_validate_bdm, _get_bdm_image_metadata, _check_attach_and_reserve_volume):
- a volume source must be visible, `available` (or in-use and multiattach) and, as the root,
  bootable; it is reserved for the server here (a volume attachment, `reserved`) before the
  server's row is written, and given back when the create fails after that.
- a snapshot source must be `available`; an image source `active`; image -> volume sizes at least
  the image's.
- the image metadata of a volume-backed server: the image of an image -> volume root; the
  volume's `volume_image_metadata` (what Cinder copied from its image) of a volume root; for a
  snapshot root, the snapshot's volume's. It goes into the request_spec (the scheduler matches
  hypervisor_type and the formats on it; a volume is a block device, so its guest is a VM) and the
  agent boots with its kernel/ramdisk/command line (compute.specs).
- an image whose properties carry `bdm_v2` and `block_device_mapping` (a snapshot of a
  volume-backed server) boots as those mappings say: new volumes from its volume snapshots.
Volumes to be made (image, snapshot or blank -> volume) are made by the agent while the server is
in task_state block_device_mapping (compute/agent/block_devices.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo import errors
from cumulo.compute import volume_records
from cumulo.compute.service import bdm as bdm_mod
from cumulo.compute.service.bdm import BootPlan, invalid
from cumulo.compute.service.boot import CreateRequest, check_image_fits, image_summary
from cumulo.context import RequestContext
from cumulo.db import Database
from cumulo.hosts.models import compute_nodes

if TYPE_CHECKING:
    from cumulo.compute.volumes import VolumeClient
    from cumulo.image.service import ImageService

LOG = logging.getLogger(__name__)

# Image properties of a volume-backed snapshot (Nova's snapshot_volume_backed) that are not the
# boot image's own.
BDM_PROPERTIES = ("block_device_mapping", "bdm_v2", "root_device_name")
_VOLUME_IMAGE_CORE = ("image_id", "image_name", "disk_format", "container_format", "min_disk", "min_ram", "size",
                      "checksum")


@dataclass
class Prepared:
    """What the create writes for its mappings."""

    plan: BootPlan
    image: dict[str, Any] | None  # the request_spec image of a volume-backed server
    # index in plan.mappings -> attachment id of an existing volume reserved for the server
    reserved: dict[int, str] = field(default_factory=dict)


def from_image_properties(image: dict[str, Any], plan: BootPlan) -> BootPlan:
    """An image that is a volume-backed server's snapshot (bdm_v2): its mappings, as the request's
    would be (the request's own mappings come after; a root in the request wins)."""
    if str(image.get("bdm_v2", "")).lower() not in ("true", "1") or not image.get("block_device_mapping"):
        return plan
    raw = image["block_device_mapping"]
    try:
        mappings = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise invalid(f"the block_device_mapping property of image {image['id']} is not JSON.") from None
    if not isinstance(mappings, list) or not all(isinstance(m, dict) for m in mappings):
        raise invalid(f"the block_device_mapping property of image {image['id']} is not a list of mappings.")
    own = [m for m in plan.mappings if not (m["source_type"] == "image" and m["destination_type"] == "local")]
    if any(m["boot_index"] == 0 for m in own):
        return plan  # the request names its own root
    keep = {"source_type", "destination_type", "boot_index", "device_name", "volume_size", "snapshot_id",
            "volume_id", "delete_on_termination", "guest_format", "disk_bus", "device_type", "tag", "uuid"}
    api = [{k: v for k, v in m.items() if k in keep and v is not None} for m in mappings]
    for m in api:
        m.setdefault("uuid", m.pop("snapshot_id", None) or m.pop("volume_id", None))
        if m.get("uuid") is None:
            m.pop("uuid")
    merged = bdm_mod.parse({"block_device_mapping_v2": api})
    return BootPlan(image_ref=None, mappings=[*merged.mappings, *own])


def _volume_image(meta: dict[str, Any]) -> dict[str, Any]:
    """The request_spec image of a server booted from a volume with this volume_image_metadata."""
    return {
        "id": str(meta.get("image_id") or ""),
        "name": meta.get("image_name"),
        "disk_format": str(meta.get("disk_format") or "raw"),
        "container_format": str(meta.get("container_format") or "bare"),
        "min_ram": int(str(meta.get("min_ram") or 0)) if str(meta.get("min_ram") or 0).isdigit() else 0,
        "min_disk": 0,
        "size": 0,
        "properties": {k: v for k, v in meta.items() if k not in _VOLUME_IMAGE_CORE},
        "volume_backed": True,
    }


def _boot_image(image: dict[str, Any]) -> dict[str, Any]:
    summary = image_summary(image)
    summary["properties"] = {k: v for k, v in summary["properties"].items() if k not in BDM_PROPERTIES}
    summary["volume_backed"] = True
    return summary


async def prepare(client: VolumeClient | None, images: ImageService, ctx: RequestContext, plan: BootPlan,
                  flavor: dict[str, Any], max_count: int) -> Prepared:
    """Look every source up (400s in Nova's words) and work out the boot image; nothing is changed."""
    bdm_mod.check_sizes(plan, flavor)
    if not plan.stored:
        return Prepared(plan, None)
    if client is None and any(m["destination_type"] == "volume" for m in plan.mappings):
        raise invalid("this cloud has no block storage service.")
    boot: dict[str, Any] | None = None
    for m in plan.mappings:
        if m["destination_type"] != "volume":
            continue
        assert client is not None
        root = m["boot_index"] == 0
        if m["source_type"] == "volume":
            if max_count > 1:
                raise errors.Invalid("Cannot attach one or more volumes to multiple instances")
            volume = await _get(client.get_volume, ctx, m["volume_id"], "volume")
            status = volume.get("status")
            if status != "available" and not (status == "in-use" and volume.get("multiattach")):
                raise errors.Invalid(f"Invalid volume: volume '{m['volume_id']}' status must be 'available'. "
                                     f"Currently in '{status}'")
            if root and not volume.get("bootable"):
                raise errors.Invalid(f"Block Device {m['volume_id']} is not bootable.")
            m["volume_size"] = int(volume.get("size") or 0) or m["volume_size"]
            if root:
                boot = _volume_image(dict(volume.get("image_metadata") or {}))
        elif m["source_type"] == "snapshot":
            snap = await _get(client.get_snapshot, ctx, m["snapshot_id"], "snapshot")
            if snap.get("status") != "available":
                raise errors.Invalid(f"Invalid snapshot: snapshot {m['snapshot_id']} is {snap.get('status')}, "
                                     "not available.")
            m["volume_size"] = max(int(m["volume_size"] or 0), int(snap.get("size") or 0))
            if root:
                boot = await _snapshot_image(client, ctx, snap)
        elif m["source_type"] == "image":
            try:
                image = await images.get(ctx, m["image_id"])
            except errors.NotFound:
                raise invalid(f"failed to get image {m['image_id']}.") from None
            if image.get("status") != "active":
                raise errors.Invalid(f"Image {m['image_id']} is not active.")
            m["volume_size"] = bdm_mod.image_volume_size(image, m["volume_size"])
            if root:
                boot = _boot_image(image)
        elif root:  # a blank root volume: booted through the firmware from whatever it holds
            boot = _volume_image({})
    if boot is not None and int(flavor.get("memory_mb") or 0) < int(boot.get("min_ram") or 0):
        raise errors.Invalid("Flavor's memory is too small for requested image.")
    return Prepared(plan, boot)


@dataclass
class Resolved:
    """A create request's root: the image (None when booted from a volume) and its mappings."""

    image: dict[str, Any] | None  # the Glance image booted on local disk
    spec_image: dict[str, Any]  # what request_spec keeps: image_summary, or the volume's image metadata
    prepared: Prepared

    @property
    def volume_backed(self) -> bool:
        return self.image is None


VM_INSTANCE_TYPES = frozenset({"qemu", "kvm", "fake"})


def root_image_ref(req: CreateRequest) -> str | None:
    """The image a create boots from (or takes its mappings from), as `resolve` reads it."""
    return (req.block_devices or BootPlan(image_ref=req.image_ref)).image_ref or None


async def resolve(db: Database, client: VolumeClient | None, images: ImageService, ctx: RequestContext,
                  req: CreateRequest, flavor: dict[str, Any],
                  image_read: asyncio.Future[dict[str, Any]] | None = None) -> Resolved:
    """The root and the mappings of a create request, checked as Nova's API checks them (image fit,
    zero-disk flavors, the mappings' sources); nothing is changed. `image_read`: the read of
    `root_image_ref(req)` already under way (server_create starts it beside its other reads)."""
    plan = req.block_devices or BootPlan(image_ref=req.image_ref)
    max_count = req.max_count
    image: dict[str, Any] | None = None
    snapshot_image: dict[str, Any] | None = None  # an image whose mappings make the server volume-backed
    if plan.image_ref:
        try:
            image = await (image_read if image_read is not None else images.get(ctx, plan.image_ref))
        except errors.NotFound:
            raise errors.Invalid("Can not find requested image") from None
        plan = from_image_properties(image, plan)
        if plan.volume_backed:
            snapshot_image, image = _boot_image(image), None
    if image is None and not plan.volume_backed:
        raise errors.Invalid("Missing imageRef attribute")
    if int(flavor["root_gb"]) == 0 and image is not None and not ctx.is_admin:
        raise errors.Forbidden("Only volume-backed servers are allowed for flavors with zero disk.")
    if image is not None:
        check_image_fits(image, flavor)
    prepared = await prepare(client, images, ctx, plan, flavor, max_count)
    if image is not None:
        return Resolved(image, image_summary(image), prepared)
    spec_image = snapshot_image or prepared.image or _volume_image({})
    if str((spec_image.get("properties") or {}).get("hypervisor_type", "")).lower() == "container":
        raise errors.Conflict("A container cannot boot from a volume: its root filesystem is its image's layers "
                              "(runc); boot a VM image's volume, or attach the volume to the container instead.")
    async with db.read() as conn:
        offered = {str(t).lower() for row in await conn.execute(sa.select(compute_nodes.c.instance_types))
                   for t in (row[0] or ())}
    if offered and not offered & VM_INSTANCE_TYPES:
        raise errors.Conflict("Booting from a volume needs a VM host (QEMU): this cloud's hosts run containers "
                              "(runc) only, and a container cannot boot from a volume.")
    return Resolved(None, spec_image, prepared)


async def _get(getter: Any, ctx: RequestContext, ident: str, what: str) -> dict[str, Any]:
    try:
        found: dict[str, Any] = await getter(ctx, ident)
    except errors.NotFound:
        raise invalid(f"failed to get {what} {ident}.") from None
    return found


async def _snapshot_image(client: VolumeClient, ctx: RequestContext, snap: dict[str, Any]) -> dict[str, Any]:
    """The boot image of a root made from a snapshot: its volume's image metadata (when the volume is
    still there and visible), as Nova's _get_bdm_image_metadata."""
    try:
        volume = await client.get_volume(ctx, str(snap.get("volume_id") or ""))
    except errors.CumuloError:
        return _volume_image({})
    return _volume_image(dict(volume.get("image_metadata") or {}))


async def reserve(client: VolumeClient | None, ctx: RequestContext, prepared: Prepared, instance_uuid: str) -> None:
    """Existing volumes reserved for the server (Cinder attachments, `reserved`); on a failure the
    ones made so far are given back and the error raised."""
    for i, m in enumerate(prepared.plan.mappings):
        if m["source_type"] != "volume" or m["destination_type"] != "volume":
            continue
        assert client is not None
        try:
            att = await client.attachment_create(ctx, m["volume_id"], instance_uuid)
        except errors.CumuloError:
            await unreserve(client, ctx, prepared)
            raise
        prepared.reserved[i] = str(att["id"])


async def unreserve(client: VolumeClient | None, ctx: RequestContext, prepared: Prepared) -> None:
    if client is None:
        return
    for attachment_id in list(prepared.reserved.values()):
        try:
            await client.attachment_delete(ctx, attachment_id)
        except errors.CumuloError:
            pass
    prepared.reserved.clear()


async def write_rows(conn: AsyncConnection, prepared: Prepared, instance_uuid: str) -> None:
    """The server's block_device_mapping rows (in the create's transaction). Device names: the
    request's, else the next free /dev/vdX (the root: /dev/vda)."""
    used: list[str | None] = []
    for index, mapping in prepared.plan.stored_indexed():
        name = mapping["device_name"]
        name = volume_records.normalize_device(name) if name else None
        if name is None:
            name = volume_records.ROOT_DEVICE if mapping["boot_index"] == 0 else volume_records.next_device_name(used)
        used.append(name)
        await volume_records.insert(
            conn, instance_uuid=instance_uuid, source_type=mapping["source_type"],
            destination_type=mapping["destination_type"], device_name=name, boot_index=mapping["boot_index"],
            volume_id=mapping["volume_id"], snapshot_id=mapping["snapshot_id"], image_id=mapping["image_id"],
            volume_size=mapping["volume_size"], volume_type=mapping["volume_type"],
            delete_on_termination=mapping["delete_on_termination"], guest_format=mapping["guest_format"],
            disk_bus=mapping["disk_bus"], device_type=mapping["device_type"], tag=mapping["tag"],
            attachment_id=prepared.reserved.get(index))


# ---- snapshots of volume-backed servers (Nova's snapshot_volume_backed) ------------------------

_COPIED = ("disk_bus", "device_type", "boot_index", "delete_on_termination", "volume_size", "device_name")


def is_volume_backed(inst: dict[str, Any]) -> bool:
    """As compute.specs.volume_backed (which the API must not import: it imports the drivers' seam)."""
    image = (inst.get("request_spec") or {}).get("image") or {}
    return not inst.get("image_ref") and bool(image.get("volume_backed"))


def check_rebuild(inst: dict[str, Any], image_ref: str) -> None:
    """A volume-backed server is not re-imaged (Nova before 2.93)."""
    if is_volume_backed(inst):
        raise errors.Invalid(f"Image {image_ref} is unacceptable: Unable to rebuild with a different image for a "
                             "volume-backed server.")


async def _no_data() -> AsyncIterator[bytes]:
    return
    yield b""  # an async generator that yields nothing


async def _drop_snapshot(client: VolumeClient, ctx: RequestContext, snapshot_id: str, wait: float = 30.0) -> None:
    """Delete a snapshot a failed createImage made. The volume service deletes only an available or
    errored snapshot, and one made a moment ago is still `creating`: wait for its copy (bounded; a
    failure path only), else it would stay behind, counted by the quota."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    try:
        while (await client.get_snapshot(ctx, snapshot_id)).get("status") == "creating" and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await client.delete_snapshot(ctx, snapshot_id)
    except errors.CumuloError as exc:
        LOG.warning("createImage failed: its volume snapshot %s could not be deleted: %s", snapshot_id, exc)


async def snapshot_volume_backed(db: Database, client: VolumeClient | None, images: ImageService, ctx: RequestContext,
                                 inst: dict[str, Any], name: str, metadata: dict[str, str]) -> str:
    """createImage of a server booted from a volume: a snapshot of each of its volumes (forced: they
    are in use) and an image without data (raw/bare, 0 bytes, active, as Nova's force_activate)
    whose `block_device_mapping` property (JSON, bdm_v2) maps each snapshot onto a new volume at the
    same device and boot index; booting that image makes those volumes (from_image_properties).
    The snapshots may still be `creating` when the image is returned, as in Nova."""
    if client is None:
        raise errors.Conflict("This cloud has no block storage service to snapshot the server's volumes with.")
    async with db.read() as conn:
        rows = await volume_records.of_instance(conn, str(inst["uuid"]))
    base = (inst.get("request_spec") or {}).get("image") or {}
    props: dict[str, Any] = {
        **{k: v for k, v in (base.get("properties") or {}).items()
           if isinstance(v, str | int | float | bool) and k not in BDM_PROPERTIES},
        "instance_uuid": inst["uuid"], "user_id": ctx.user_id, "image_type": "snapshot",
        "base_image_ref": inst.get("image_ref") or "", **metadata,
    }
    mappings: list[dict[str, Any]] = []
    made: list[str] = []
    try:
        for row in rows:
            if row.get("destination_type") == "volume" and row.get("volume_id"):
                snap = await client.create_snapshot(ctx, str(row["volume_id"]), name=f"snapshot for {name}"[:255],
                                                    force=True)
                made.append(str(snap["id"]))
                mappings.append({"source_type": "snapshot", "destination_type": "volume", "snapshot_id": snap["id"],
                                 **{k: row.get(k) for k in _COPIED}})
            elif row.get("destination_type") == "local" and row.get("source_type") == "blank":
                mappings.append({k: row.get(k) for k in (*_COPIED, "source_type", "destination_type", "guest_format")})
        props.update(block_device_mapping=json.dumps(mappings), bdm_v2="True",
                     root_device_name=volume_records.ROOT_DEVICE)
        image = await images.create_snapshot_record(ctx, name, props, "raw", "bare")
    except BaseException:
        for snapshot_id in made:
            await _drop_snapshot(client, ctx, snapshot_id)
        raise
    await images.upload(ctx, str(image["id"]), _no_data(), 0)
    return str(image["id"])
