"""Glance (image v2) response shapes, from openstack/glance api-ref/source/v2/images-images-v2.inc
("Show image", "List images" response parameters, images-parameters.yaml), the samples, and the
image schema Glance publishes at /v2/schemas/image (types and nullability of each base property).

    schema(resource, extra_properties=()) -> JSON Schema (draft 2020-12) of the whole body

Resources: image (show / create / update response), images (list), versions (GET /image/ with 300,
GET /image/versions with 200). Glance lets users add their own string properties to an image;
name the ones a test set in `extra_properties` - any other extra field is an error.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

from ._common import (
    BOOL,
    INT,
    STR,
    TS,
    UUID,
    UUID_RE,
    Schema,
    array,
    enum,
    envelope,
    has_rels,
    link,
    nullable,
    obj,
)

_UUID_BODY = UUID_RE.strip("^$")

# images-parameters.yaml "status" + the schema's enum.
IMAGE_STATUSES = (
    "queued", "saving", "active", "killed", "deleted", "uploading", "importing", "pending_delete",
    "deactivated",
)
VISIBILITIES = ("public", "private", "shared", "community")
# Glance's default [image_format] lists; null until set. Cumulo configures container_formats with
# "oci" added (an operator setting in Glance), for OCI image-layout tarballs.
CONTAINER_FORMATS = ("ami", "ari", "aki", "bare", "ovf", "ova", "docker", "oci", "compressed")
DISK_FORMATS = ("ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop")

# "Show image" response parameters, all required; direct_url and locations are only sent when the
# operator turns show_image_direct_url / show_multiple_locations on (off by default), so they are
# not part of the default shape.
_IMAGE_PROPS: dict[str, Schema] = {
    "id": UUID,
    "name": nullable({"type": "string", "maxLength": 255}),
    "status": enum(*IMAGE_STATUSES),
    "visibility": enum(*VISIBILITIES),
    "protected": BOOL,
    "os_hidden": BOOL,
    "checksum": nullable({"type": "string", "pattern": r"^[0-9a-f]{32}$"}),  # md5
    "os_hash_algo": nullable({"type": "string", "maxLength": 64}),
    "os_hash_value": nullable({"type": "string", "maxLength": 128}),
    "owner": nullable({"type": "string", "maxLength": 255}),
    "size": nullable(INT),
    "virtual_size": nullable(INT),
    "container_format": nullable(enum(*CONTAINER_FORMATS)),
    "disk_format": nullable(enum(*DISK_FORMATS)),
    "created_at": TS,
    "updated_at": TS,
    "tags": array({"type": "string", "maxLength": 255}),
    "min_ram": INT,
    "min_disk": INT,
    # Relative URLs, as in the samples: /v2/images/<id>, /v2/images/<id>/file, /v2/schemas/image.
    "self": {"type": "string", "pattern": rf"^/v2/images/{_UUID_BODY}$"},
    "file": {"type": "string", "pattern": rf"^/v2/images/{_UUID_BODY}/file$"},
    "schema": {"const": "/v2/schemas/image"},
}


def image(extra_properties: Iterable[str] = ()) -> Schema:
    extras = [p for p in extra_properties if p not in _IMAGE_PROPS]
    # Additional image properties are strings in Glance's image schema.
    return obj({**_IMAGE_PROPS, **{p: STR for p in extras}})


def images(extra_properties: Iterable[str] = ()) -> Schema:
    """ "List images": images, first, schema; next only when there is a further page."""
    item = image(extra_properties)
    # Each item may or may not carry a given user property; only the base ones are required.
    item["required"] = [k for k in item["required"] if k in _IMAGE_PROPS]
    return obj(
        {
            "images": array(item),
            "first": {"type": "string", "pattern": r"^/v2/images"},
            "next": {"type": "string", "pattern": r"^/v2/images"},
            "schema": {"const": "/v2/schemas/images"},
        },
        optional=["next"],
    )


# [versions/versions.inc "List API versions"]: id, status, links (self).
_VERSION = obj(
    {
        "id": {"type": "string", "pattern": r"^v2\.\d+$"},
        "status": enum("CURRENT", "SUPPORTED", "DEPRECATED", "EXPERIMENTAL"),
        "links": {**array(link(), minItems=1), "allOf": has_rels("self")},
    }
)
VERSIONS = envelope("versions", array(_VERSION, minItems=1))


def schema(resource: str, extra_properties: Iterable[str] = ()) -> Schema:
    if resource == "image":
        return image(extra_properties)
    if resource == "images":
        return images(extra_properties)
    if resource == "versions":
        return copy.deepcopy(VERSIONS)
    raise KeyError(f"unknown resource {resource!r}; known: image, images, versions")
