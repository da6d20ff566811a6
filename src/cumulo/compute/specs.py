"""Turning instance rows into what drivers and placement need (InstanceSpec, FlavorSpec, resources).

Shared by the conductor and the compute agent so both count an instance's resources the same way.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Mapping
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.compute.drivers.base import FlavorSpec, ImageSpec, InstanceSpec
from cumulo.compute.models import instance_actions
from cumulo.context import RequestContext
from cumulo.errors import CumuloError, InvalidState, NotFound
from cumulo.placement.inventory import Resources
from cumulo.placement.service import resources_from_flavor

LOG = logging.getLogger(__name__)

# Glance's own fields; everything else in an image dict is an extra property.
_GLANCE_CORE = {
    "id", "name", "status", "visibility", "protected", "checksum", "os_hash_algo", "os_hash_value", "owner",
    "size", "virtual_size", "min_ram", "min_disk", "created_at", "updated_at", "tags", "self", "file", "schema",
    "disk_format", "container_format", "direct_url", "locations", "os_hidden", "stores", "properties",
}


class ImageBackend(Protocol):
    """The part of ImageService the agent uses (see the brief's images interface)."""

    async def get_internal(self, image_id: str) -> dict[str, Any] | None: ...

    async def local_path(self, image_id: str) -> str: ...

    async def describe_snapshot(
        self, image_id: str, disk_format: str, container_format: str, properties: dict[str, Any]
    ) -> None: ...

    async def upload_from_path(self, image_id: str, path: str) -> None: ...

    async def mark_failed(self, image_id: str) -> None: ...


def flavor_numbers(flavor: Mapping[str, Any] | None) -> dict[str, Any]:
    """The numbers of a stored flavor snapshot, accepting Nova's DB names and its API names."""
    f = flavor or {}
    return {
        "vcpus": int(f.get("vcpus", 0) or 0),
        "memory_mb": int(f.get("memory_mb", f.get("ram", 0)) or 0),
        "root_gb": int(f.get("root_gb", f.get("disk", 0)) or 0),
        "ephemeral_gb": int(f.get("ephemeral_gb", f.get("ephemeral", 0)) or 0),
        "swap": int(f.get("swap", 0) or 0) if str(f.get("swap", 0) or 0).isdigit() else 0,
        "extra_specs": {str(k): str(v) for k, v in (f.get("extra_specs") or {}).items()},
    }


def flavor_spec(flavor: Mapping[str, Any] | None) -> FlavorSpec:
    n = flavor_numbers(flavor)
    return FlavorSpec(
        vcpus=n["vcpus"], memory_mb=n["memory_mb"], root_gb=n["root_gb"], ephemeral_gb=n["ephemeral_gb"],
        swap=n["swap"], extra_specs=n["extra_specs"],
    )


def flavor_columns(flavor: Mapping[str, Any] | None, *, volume_backed: bool = False) -> dict[str, int]:
    """The instances columns that mirror the current flavor (root_gb 0 for a server booted from a
    volume: it holds no local root disk, so placement claims none)."""
    n = flavor_numbers(flavor)
    out = {k: n[k] for k in ("vcpus", "memory_mb", "root_gb", "ephemeral_gb")}
    if volume_backed:
        out["root_gb"] = 0
    return out


def volume_backed(inst: Mapping[str, Any]) -> bool:
    """Whether the server boots from a volume (its request_spec image is the volume's metadata)."""
    image = (inst.get("request_spec") or {}).get("image") or {}
    return not inst.get("image_ref") and bool(image.get("volume_backed"))


def claimed_flavor(inst: Mapping[str, Any], flavor: Mapping[str, Any]) -> dict[str, Any]:
    """What placement claims for `flavor` on this server: no local root disk when volume-backed."""
    return {**flavor, "root_gb": 0} if volume_backed(inst) else dict(flavor)


def instance_resources(inst: Mapping[str, Any]) -> Resources:
    """What an instance holds in placement: its columns (the current flavor) plus the flavor's swap."""
    swap = flavor_numbers(inst.get("flavor"))["swap"]
    return resources_from_flavor(
        {
            "vcpus": inst.get("vcpus", 0),
            "memory_mb": inst.get("memory_mb", 0),
            "root_gb": inst.get("root_gb", 0),
            "ephemeral_gb": inst.get("ephemeral_gb", 0),
            "swap": swap,
        }
    )


def decode_user_data(raw: str | None) -> bytes | None:
    """Nova keeps user_data base64-encoded; tolerate plain text."""
    if not raw:
        return None
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return raw.encode()


def hostname_of(inst: Mapping[str, Any]) -> str:
    name = inst.get("hostname") or inst.get("display_name") or inst["uuid"]
    clean = re.sub(r"[^a-z0-9-]+", "-", str(name).lower()).strip("-")
    return (clean or "server")[:63]


def image_properties(image: Mapping[str, Any]) -> dict[str, Any]:
    props = {k: v for k, v in image.items() if k not in _GLANCE_CORE}
    nested = image.get("properties")
    if isinstance(nested, Mapping):
        props.update(nested)
    return props


BOOT_FILE_PROPERTIES = (("kernel_id", "kernel"), ("ramdisk_id", "ramdisk"))


async def _visible_to(images: ImageBackend, image: Mapping[str, Any], project_id: str) -> bool:
    """Glance's rule for the instance's project: public, community, its own, or shared with it."""
    visibility = str(image.get("visibility") or "")
    if visibility in ("public", "community") or (project_id and image.get("owner") == project_id):
        return True
    get = getattr(images, "get", None)  # ImageService.get knows the members of shared images
    if visibility != "shared" or get is None or not project_id:
        return False
    ctx = RequestContext(user_id=None, project_id=project_id, roles=frozenset({"member", "reader"}))
    try:
        await get(ctx, str(image["id"]))
    except CumuloError:
        return False
    return True


async def boot_file(
    images: ImageBackend, image_id: str, prop: str, what: str, root_id: str, project_id: str
) -> str:
    """The local file of the image a kernel_id/ramdisk_id property names, as the instance's
    project may see it; NotFound/InvalidState with a message fit for the instance fault."""
    where = f"the {what} image {image_id} ({prop} of image {root_id})"
    image = await images.get_internal(image_id)
    if image is None or not await _visible_to(images, image, project_id):
        raise NotFound(f"Image {image_id} could not be found: {where} does not exist or is not visible "
                       f"to project {project_id}.")
    if image.get("status") not in (None, "active"):
        raise InvalidState(f"Cannot boot: {where} is {image.get('status')}, not active.")
    try:
        return await images.local_path(image_id)
    except CumuloError as exc:
        raise InvalidState(f"Cannot boot: {where} has no data: {exc.message}") from exc


async def _boot_files(
    images: ImageBackend, props: Mapping[str, Any], image_ref: str, project_id: str, strict: bool
) -> dict[str, str]:
    """"kernel"/"ramdisk" -> the local files the kernel_id/ramdisk_id properties name."""
    files: dict[str, str] = {}
    for prop, what in BOOT_FILE_PROPERTIES:
        ref = str(props.get(prop) or "").strip()
        if not ref:
            continue
        try:
            files[what] = await boot_file(images, ref, prop, what, image_ref, project_id)
        except CumuloError as exc:
            if strict:
                raise
            LOG.info("image %s: %s", image_ref, exc.message)
    return files


async def volume_image_spec(
    images: ImageBackend | None, summary: Mapping[str, Any] | None, *, project_id: str = "", strict: bool = False
) -> ImageSpec | None:
    """The image of a server booted from a volume: the request_spec's image (the volume's image
    metadata, compute.service.boot_volumes), without a file (path ""), with its kernel and
    ramdisk resolved as an image's; None when the server is not volume-backed."""
    if not summary or not summary.get("volume_backed"):
        return None
    props = {str(k): v for k, v in (summary.get("properties") or {}).items()}
    image_id = str(summary.get("id") or "")
    files = await _boot_files(images, props, image_id or "of the volume", project_id, strict) if images else {}
    return ImageSpec(
        id=image_id, path="", disk_format=str(summary.get("disk_format") or "raw"),
        container_format=str(summary.get("container_format") or "bare"), properties=props,
        kernel_path=files.get("kernel", ""), ramdisk_path=files.get("ramdisk", ""),
    )


def _summary_of(image_meta: Mapping[str, Any] | None, image_ref: str) -> Mapping[str, Any] | None:
    """The request_spec's image (compute.service.boot.image_summary) when it describes `image_ref`."""
    if not image_meta or str(image_meta.get("id") or "") != image_ref or image_meta.get("volume_backed"):
        return None
    if not isinstance(image_meta.get("properties"), Mapping):
        return None
    return image_meta


async def image_spec(
    images: ImageBackend | None, image_ref: str | None, *, project_id: str = "", strict: bool = False,
    image_meta: Mapping[str, Any] | None = None,
) -> ImageSpec | None:
    """The image for a driver, or None when there is none (boot-from-nothing on the fake driver).

    The kernel_id/ramdisk_id properties are resolved to local files (ImageSpec.kernel_path,
    ramdisk_path). `strict` (build, rebuild): a named kernel or ramdisk that is missing, not
    visible to the project or without data fails the operation. Otherwise (power operations of a
    running server, whose driver keeps its own copies) it is logged and left empty.

    `image_meta` (a build): the image as the API read it at the create (the request_spec's
    image_summary: formats and properties, as Nova's compute takes instance.image_meta), so the
    image's row and its properties and tags are not read again; the bytes still come by the id
    (`local_path`: the backend checks the image there). An image that is gone by then takes the
    path it took before (read afresh: no image, or a build that fails on its own)."""
    if not image_ref or images is None:
        return None
    summary = _summary_of(image_meta, image_ref)
    if summary is not None:
        try:
            path = await images.local_path(image_ref)
        except Exception as exc:  # gone, or without data: read it afresh, as without image_meta
            LOG.info("image %s: %s; reading it afresh", image_ref, exc)
        else:
            props = {str(k): v for k, v in (summary.get("properties") or {}).items()}
            files = await _boot_files(images, props, image_ref, project_id, strict)
            return ImageSpec(
                id=image_ref, path=path, disk_format=str(summary.get("disk_format") or ""),
                container_format=str(summary.get("container_format") or ""), properties=props,
                kernel_path=files.get("kernel", ""), ramdisk_path=files.get("ramdisk", ""),
            )
    try:
        image = await images.get_internal(image_ref)
    except Exception as exc:  # the image may be gone; drivers that need bytes fail on their own
        LOG.warning("image %s unavailable: %s", image_ref, exc)
        image = None
    if image is None:
        return None
    try:
        path = await images.local_path(image_ref)
    except Exception as exc:
        LOG.info("image %s has no local data: %s", image_ref, exc)
        path = ""
    props = image_properties(image)
    files = await _boot_files(images, props, image_ref, project_id, strict)
    return ImageSpec(
        id=image_ref,
        path=path,
        disk_format=str(image.get("disk_format") or ""),
        container_format=str(image.get("container_format") or ""),
        properties=props,
        kernel_path=files.get("kernel", ""),
        ramdisk_path=files.get("ramdisk", ""),
    )


async def instance_spec(
    inst: Mapping[str, Any],
    images: ImageBackend | None,
    *,
    flavor: Mapping[str, Any] | None = None,
    image_ref: str | None = None,
    strict: bool = False,
    spec_image: bool = False,
) -> InstanceSpec:
    """InstanceSpec from the DB row; `flavor`/`image_ref` override (resize, rebuild); `strict`
    (build, rebuild): the image's kernel and ramdisk must resolve (see image_spec); `spec_image`
    (a build): the image's formats and properties from the request_spec (image_spec's image_meta)."""
    ref = image_ref if image_ref is not None else inst.get("image_ref")
    meta = (inst.get("request_spec") or {}).get("image") if spec_image and image_ref is None else None
    image = await image_spec(images, ref, project_id=str(inst.get("project_id") or ""), strict=strict,
                             image_meta=meta)
    if image is None and not ref:  # booted from a volume: the volume's image metadata
        image = await volume_image_spec(images, (inst.get("request_spec") or {}).get("image"),
                                        project_id=str(inst.get("project_id") or ""), strict=strict)
    metadata = {str(k): str(v) for k, v in (inst.get("metadata") or {}).items()}
    hostname = hostname_of(inst)
    meta_data: dict[str, Any] = {
        "uuid": inst["uuid"],
        "name": inst.get("display_name"),
        "hostname": hostname,
        "launch_index": inst.get("launch_index", 0),
        "availability_zone": inst.get("availability_zone"),
        "project_id": inst.get("project_id"),
        "meta": metadata,
    }
    if inst.get("key_name") and inst.get("key_data"):
        meta_data["public_keys"] = {inst["key_name"]: inst["key_data"]}
    return InstanceSpec(
        uuid=inst["uuid"],
        name=str(inst.get("display_name") or inst["uuid"]),
        hostname=hostname,
        project_id=str(inst.get("project_id") or ""),
        flavor=flavor_spec(flavor if flavor is not None else inst.get("flavor")),
        image=image,
        user_data=decode_user_data(inst.get("user_data")),
        key_data=inst.get("key_data"),
        metadata=metadata,
        meta_data=meta_data,
        config_drive=str(inst.get("config_drive") or "").strip().lower() in ("true", "1", "yes"),
    )


async def action_request_id(conn: AsyncConnection, instance_uuid: str, action: str) -> str:
    """The request id of the instance's newest action of this kind ("" if none: events are skipped)."""
    row = (
        await conn.execute(
            sa.select(instance_actions.c.request_id)
            .where(instance_actions.c.instance_uuid == instance_uuid, instance_actions.c.action == action)
            .order_by(instance_actions.c.id.desc())
            .limit(1)
        )
    ).first()
    return str(row[0]) if row else ""
