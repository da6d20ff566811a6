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

from cumulo.compute import netinfo
from cumulo.compute.drivers.base import FlavorSpec, ImageSpec, InstanceSpec
from cumulo.compute.models import instance_actions
from cumulo.scheduler.placement import Resources, resources_from_flavor

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


def flavor_columns(flavor: Mapping[str, Any] | None) -> dict[str, int]:
    """The instances columns that mirror the current flavor."""
    n = flavor_numbers(flavor)
    return {k: n[k] for k in ("vcpus", "memory_mb", "root_gb", "ephemeral_gb")}


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


async def image_spec(images: ImageBackend | None, image_ref: str | None) -> ImageSpec | None:
    """The image for a driver, or None when there is none (boot-from-nothing on the fake driver)."""
    if not image_ref or images is None:
        return None
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
    return ImageSpec(
        id=image_ref,
        path=path,
        disk_format=str(image.get("disk_format") or ""),
        container_format=str(image.get("container_format") or ""),
        properties=image_properties(image),
    )


async def instance_spec(
    inst: Mapping[str, Any],
    images: ImageBackend | None,
    *,
    flavor: Mapping[str, Any] | None = None,
    image_ref: str | None = None,
) -> InstanceSpec:
    """InstanceSpec from the DB row; `flavor`/`image_ref` override (resize, rebuild)."""
    ref = image_ref if image_ref is not None else inst.get("image_ref")
    image = await image_spec(images, ref)
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
        network_info=netinfo.vifs_for(inst),
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
