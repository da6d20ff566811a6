"""PATCH /v2/images/{id}: Glance's JSON-patch media types, parsed and checked before touching the DB.

Two media types exist: `application/openstack-images-v2.1-json-patch` (RFC 6902 style, op/path/
value) and the deprecated v2.0 one (draft 4: {"replace": "/name", "value": ...}). Only top-level
paths are accepted (locations are not offered here).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import jsonschema

from cumulo import errors
from cumulo.image._schemas import READ_ONLY, RESERVED, RESERVED_PREFIX, image_schema

MEDIA_TYPES = {
    "application/openstack-images-v2.0-json-patch": 4,
    "application/openstack-images-v2.1-json-patch": 10,
}
OPERATIONS = ("add", "remove", "replace")

_VALIDATOR = jsonschema.Draft4Validator(image_schema())


@dataclass(frozen=True)
class Change:
    op: str
    path: str  # the single top-level attribute the change is about
    value: Any = None
    draft: int = 10


def media_version(content_type: str | None) -> int:
    """The draft version for a Content-Type, or UnsupportedMediaType as Glance answers."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype not in MEDIA_TYPES:
        allowed = ", ".join(sorted(MEDIA_TYPES))
        raise errors.UnsupportedMediaType(f"Image PATCH expects Content-Type one of: {allowed}")
    return MEDIA_TYPES[ctype]


def _decode_pointer(pointer: Any) -> list[str]:
    if not isinstance(pointer, str):
        raise errors.Invalid(f"Pointer `{pointer}` does not start with \"/\".")
    if not pointer.startswith("/"):
        raise errors.Invalid(f'Pointer `{pointer}` does not start with "/".')
    if re.search(r"/\s*?/", pointer[1:]):
        raise errors.Invalid(f'Pointer `{pointer}` contains adjacent "/".')
    if len(pointer) > 1 and pointer.endswith("/"):
        raise errors.Invalid(f'Pointer `{pointer}` end with "/".')
    if pointer[1:].strip() == "/":
        raise errors.Invalid(f"Pointer `{pointer}` does not contains valid token.")
    if re.search("~[^01]", pointer) or pointer.endswith("~"):
        raise errors.Invalid(f'Pointer `{pointer}` contains "~" not part of a recognized escape sequence.')
    return [part.replace("~1", "/").replace("~0", "~").strip() for part in pointer.lstrip("/").split("/")]


def _op_and_path(raw: dict[str, Any], draft: int) -> tuple[str, Any]:
    if draft == 10:
        op = raw.get("op")
        if op is None:
            raise errors.Invalid(
                "Unable to find `op` in JSON Schema change. "
                f"It must be one of the following: {', '.join(OPERATIONS)}."
            )
        if op not in OPERATIONS:
            raise errors.Invalid(
                f"Invalid operation: `{op}`. It must be one of the following: {', '.join(OPERATIONS)}."
            )
        if "path" not in raw:
            raise errors.Invalid("Unable to find 'path' in JSON Schema change")
        return op, raw["path"]
    present = [k for k in OPERATIONS if k in raw]
    if len(present) != 1:
        raise errors.Invalid('Operation objects must contain exactly one member named "add", "remove", or "replace".')
    return present[0], raw[present[0]]


def _validate_value(root: str, value: Any) -> None:
    error = next(iter(sorted(_VALIDATOR.iter_errors({root: value}), key=lambda e: e.path)), None)
    if error is not None:
        raise errors.Invalid(f"Provided object does not match schema 'image': {error.message}")


def parse(body: Any, draft: int) -> list[Change]:
    if not isinstance(body, list):
        raise errors.Invalid("Request body must be a JSON array of operation objects.")
    changes: list[Change] = []
    for raw in body:
        if not isinstance(raw, dict):
            raise errors.Invalid("Operations must be JSON objects.")
        op, pointer = _op_and_path(raw, draft)
        path = _decode_pointer(pointer)
        if len(path) != 1:
            raise errors.Invalid(f"Invalid JSON pointer for this resource: '/{'/'.join(path)}'")
        root = path[0]
        if op != "remove" and "value" not in raw:
            raise errors.Invalid(f'Operation "{op}" requires a member named "value".')
        if root in READ_ONLY:
            raise errors.Forbidden(f"Attribute '{root}' is read-only.")
        if root in RESERVED or root.startswith(RESERVED_PREFIX):
            raise errors.Forbidden(f"Attribute '{root}' is reserved.")
        if len(root) > 255:
            raise errors.Invalid("Custom property should not be greater than 255 characters.")
        value = raw.get("value")
        if op != "remove":
            _validate_value(root, value)
        changes.append(Change(op, root, value, draft))
    return changes
