"""Glance v2 wire facts: the image JSON schema (served at /v2/schemas/* and used to validate),
the attribute classes that decide what a PATCH may touch, and the versions document."""

from __future__ import annotations

import copy
from typing import Any

# Glance's default [image_format] lists. Keep in step with formats the drivers can use.
DISK_FORMATS = ("ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop")
CONTAINER_FORMATS = ("ami", "ari", "aki", "bare", "ovf", "ova", "docker", "oci", "compressed")
STATUSES = ("queued", "saving", "active", "killed", "deleted", "uploading", "importing", "pending_delete", "deactivated")
VISIBILITIES = ("community", "public", "private", "shared")
MEMBER_STATUSES = ("pending", "accepted", "rejected")

HASH_ALGO = "sha512"  # Glance's default [DEFAULT] hashing_algorithm
MAX_INT32 = 2**31 - 1
UUID_PATTERN = "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$"

# What Glance's request deserializer refuses (403) or reserves.
DISALLOWED_ON_CREATE = ("direct_url", "self", "file", "schema", "stores", "locations")
READ_ONLY = (
    "created_at", "updated_at", "status", "checksum", "size", "virtual_size", "direct_url",
    "self", "file", "schema", "id", "os_hash_algo", "os_hash_value", "stores", "locations",
)
RESERVED = ("location", "deleted", "deleted_at")
RESERVED_PREFIX = "os_glance"
# Core attributes a PATCH can set (owner only by admin). Anything else is an extra property.
WRITABLE_CORE = (
    "name", "visibility", "protected", "os_hidden", "container_format", "disk_format",
    "min_ram", "min_disk", "tags", "owner",
)
# Core attributes in every image body, in Glance's order; extra properties join them at the top level.
CORE_FIELDS = (
    "id", "name", "status", "visibility", "protected", "os_hidden", "checksum", "os_hash_algo",
    "os_hash_value", "owner", "size", "virtual_size", "container_format", "disk_format",
    "created_at", "updated_at", "tags", "min_ram", "min_disk", "self", "file", "schema",
)
SORT_KEYS = ("name", "status", "container_format", "disk_format", "size", "id", "created_at", "updated_at")


def _base_properties() -> dict[str, Any]:
    def ro(kind: Any, desc: str, **extra: Any) -> dict[str, Any]:
        return {"type": kind, "readOnly": True, "description": desc, **extra}

    return {
        "id": {"type": "string", "description": "An identifier for the image", "pattern": UUID_PATTERN},
        "name": {"type": ["null", "string"], "description": "Descriptive name for the image", "maxLength": 255},
        "status": ro("string", "Status of the image", enum=list(STATUSES)),
        "visibility": {"type": "string", "description": "Scope of image accessibility", "enum": list(VISIBILITIES)},
        "protected": {"type": "boolean", "description": "If true, image will not be deletable."},
        "os_hidden": {"type": "boolean", "description": "If true, image will not appear in default image list response."},
        "checksum": ro(["null", "string"], "md5 hash of image contents.", maxLength=32),
        "os_hash_algo": ro(["null", "string"], "Algorithm to calculate the os_hash_value", maxLength=64),
        "os_hash_value": ro(
            ["null", "string"],
            "Hexdigest of the image contents using the algorithm specified by the os_hash_algo",
            maxLength=128,
        ),
        "owner": {"type": ["null", "string"], "description": "Owner of the image", "maxLength": 255},
        "size": ro(["null", "integer"], "Size of image file in bytes"),
        "virtual_size": ro(["null", "integer"], "Virtual size of image in bytes"),
        "container_format": {
            "type": ["null", "string"],
            "description": "Format of the container",
            "enum": [None, *CONTAINER_FORMATS],
        },
        "disk_format": {"type": ["null", "string"], "description": "Format of the disk", "enum": [None, *DISK_FORMATS]},
        "created_at": ro("string", "Date and time of image registration"),
        "updated_at": ro("string", "Date and time of the last image modification"),
        "tags": {
            "type": "array",
            "description": "List of strings related to the image",
            "items": {"type": "string", "maxLength": 255},
        },
        "direct_url": ro("string", "URL to access the image file kept in external store"),
        "min_ram": {
            "type": "integer",
            "description": "Amount of ram (in MB) required to boot image.",
            "minimum": 0,
            "maximum": MAX_INT32,
        },
        "min_disk": {
            "type": "integer",
            "description": "Amount of disk space (in GB) required to boot image.",
            "minimum": 0,
            "maximum": MAX_INT32,
        },
        "self": ro("string", "An image self url"),
        "file": ro("string", "An image file url"),
        "stores": ro("string", "Store in which image data resides."),
        "schema": ro("string", "An image schema url"),
        "locations": {
            "type": "array",
            "items": {"type": "object"},
            "description": "A set of URLs to access the image file kept in external store",
        },
    }


def image_schema() -> dict[str, Any]:
    """GET /v2/schemas/image. Extra properties are strings (Glance's PermissiveSchema)."""
    return {
        "name": "image",
        "properties": _base_properties(),
        "additionalProperties": {"type": "string"},
        "links": [
            {"rel": "self", "href": "{self}"},
            {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


def images_schema() -> dict[str, Any]:
    return {
        "name": "images",
        "properties": {
            "images": {"type": "array", "items": image_schema()},
            "first": {"type": "string"},
            "next": {"type": "string"},
            "schema": {"type": "string"},
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


def member_schema() -> dict[str, Any]:
    return {
        "name": "member",
        "properties": {
            "created_at": {"type": "string", "description": "Date and time of image member creation"},
            "image_id": {"type": "string", "description": "An identifier for the image", "pattern": UUID_PATTERN},
            "member_id": {"type": "string", "description": "An identifier for the image member (tenantId)"},
            "status": {"type": "string", "description": "The status of this image member", "enum": list(MEMBER_STATUSES)},
            "updated_at": {"type": "string", "description": "Date and time of last modification of image member"},
            "schema": {"readOnly": True, "type": "string"},
        },
    }


def members_schema() -> dict[str, Any]:
    return {
        "name": "members",
        "properties": {
            "members": {"type": "array", "items": member_schema()},
            "schema": {"type": "string"},
        },
        "links": [{"rel": "describedby", "href": "{schema}"}],
    }


def create_body_schema() -> dict[str, Any]:
    """What POST /v2/images accepts: the image schema minus read-only attributes."""
    schema = copy.deepcopy(image_schema())
    schema.pop("links")
    schema["type"] = "object"
    for key in READ_ONLY:
        if key != "id":
            schema["properties"].pop(key, None)
    return schema


# Image API versions, listed as Glance lists them when neither an image cache nor multiple
# stores are configured (the features of 2.8-2.14/2.16 are not offered here).
_VERSIONS = (
    ("2.15", "SUPPORTED"), ("2.9", "SUPPORTED"), ("2.17", "CURRENT"), ("2.7", "SUPPORTED"),
    ("2.6", "SUPPORTED"), ("2.5", "SUPPORTED"), ("2.4", "SUPPORTED"), ("2.3", "SUPPORTED"),
    ("2.2", "SUPPORTED"), ("2.1", "SUPPORTED"), ("2.0", "SUPPORTED"),
)


def versions_document(root_url: str) -> dict[str, Any]:
    href = root_url.rstrip("/") + "/v2/"
    return {
        "versions": [
            {"id": f"v{v}", "status": status, "links": [{"rel": "self", "href": href}]} for v, status in _VERSIONS
        ]
    }
