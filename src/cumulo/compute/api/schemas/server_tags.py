"""Request schemas for /servers/{id}/tags (2.26+)."""

from __future__ import annotations

from cumulo.compute.api.schemas._base import MAX_TAG_COUNT, Schema, tag

update_all: Schema = {
    "type": "object",
    "properties": {"tags": {"type": "array", "items": tag, "maxItems": MAX_TAG_COUNT}},
    "required": ["tags"],
    "additionalProperties": False,
}

# A single tag travels in the URL; it is checked against the same rule.
one_tag: Schema = tag
