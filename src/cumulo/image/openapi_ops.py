"""The image family's OpenAPI operations (`cumulo.web.openapi` builds the document from them).

One `Op` per route; the metadata definitions catalog's come from its own module.
"""

from __future__ import annotations

from cumulo.image import _patch as image_patch
from cumulo.image import _schemas as image_s
from cumulo.image.metadefs import api as metadefs_api
from cumulo.web.openapi import OCTET_STREAM, Family, Op, Schema, op

PATCH_MEDIA = "application/openstack-images-v2.1-json-patch"

GLANCE_FAULT: Schema = {
    "description": 'Glance (WebOb) fault: {"code": "404 Not Found", "title": "Not Found", "message": "..."}',
    "type": "object",
    "properties": {
        "code": {"type": "string", "pattern": "^[1-5][0-9]{2} "},
        "title": {"type": "string"},
        "message": {"type": "string"},
    },
    "required": ["code", "title", "message"],
}


_IMAGE_PATCH: Schema = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "op": {"type": "string", "enum": list(image_patch.OPERATIONS)},
            "path": {"type": "string", "pattern": "^/"},
            "value": {},
        },
        "required": ["op", "path"],
    },
}
_IMAGE_MEMBER_ADD: Schema = {
    "type": "object",
    "properties": {"member": {"type": "string", "minLength": 1, "maxLength": 255}},
    "required": ["member"],
}
_IMAGE_MEMBER_UPDATE: Schema = {
    "type": "object",
    "properties": {"status": {"type": "string", "enum": list(image_s.MEMBER_STATUSES)}},
    "required": ["status"],
}
_BINARY: Schema = {"type": "string", "contentMediaType": OCTET_STREAM}

# Glance's list filters: the fixed parameters, plus any image property (compared as a string).
_IMAGE_LIST_QUERY = (
    "limit", "marker", "sort", "sort_key", "sort_dir", "name", "id", "status", "visibility", "member_status",
    "owner", "tag", "size_min", "size_max", "created_at", "updated_at", "protected", "os_hidden",
    "container_format", "disk_format", "checksum", "os_hash_value",
)


IMAGE_OPS: tuple[Op, ...] = (
    op("GET", "/v2/images", "List images", query=_IMAGE_LIST_QUERY),
    op("POST", "/v2/images", "Create image", body=image_s.create_body_schema(), status=201),
    op("GET", "/v2/images/{image_id}", "Show image"),
    op("PATCH", "/v2/images/{image_id}", "Update image (JSON patch)", body=_IMAGE_PATCH, media=PATCH_MEDIA),
    op("DELETE", "/v2/images/{image_id}", "Delete image", status=204),
    op("GET", "/v2/images/{image_id}/tasks", "List image tasks"),
    op("PUT", "/v2/images/{image_id}/file", "Upload image data", body=_BINARY, media=OCTET_STREAM, status=204),
    op("GET", "/v2/images/{image_id}/file", "Download image data"),
    op("PUT", "/v2/images/{image_id}/tags/{tag}", "Add image tag", status=204),
    op("DELETE", "/v2/images/{image_id}/tags/{tag}", "Delete image tag", status=204),
    op("POST", "/v2/images/{image_id}/actions/deactivate", "Deactivate image", status=204),
    op("POST", "/v2/images/{image_id}/actions/reactivate", "Reactivate image", status=204),
    op("GET", "/v2/images/{image_id}/members", "List image members"),
    op("POST", "/v2/images/{image_id}/members", "Add image member", body=_IMAGE_MEMBER_ADD),
    op("GET", "/v2/images/{image_id}/members/{member_id}", "Show image member"),
    op("PUT", "/v2/images/{image_id}/members/{member_id}", "Update image member", body=_IMAGE_MEMBER_UPDATE),
    op("DELETE", "/v2/images/{image_id}/members/{member_id}", "Delete image member", status=204),
    op("GET", "/v2/schemas/image", "Image schema"),
    op("GET", "/v2/schemas/images", "Images schema"),
    op("GET", "/v2/schemas/member", "Member schema"),
    op("GET", "/v2/schemas/members", "Members schema"),
    op("GET", "/v2/info/import", "Import methods"),
    # Glance's metadata definitions catalog (its module lists its operations).
    *(op(m, p, summary, **kw) for m, p, summary, kw in metadefs_api.OPENAPI_OPS),
)

FAMILY = Family("image", "/image", "Cumulo Image API (Glance v2)", GLANCE_FAULT, IMAGE_OPS)
