"""os-volumes and os-snapshots (Nova's deprecated proxies, below 2.36): the create bodies."""

from __future__ import annotations

from cumulo.compute.api.schemas._base import Schema, boolean

# Nova's volumes.create / snapshot_create schemas.
CREATE: Schema = {
    "type": "object",
    "properties": {
        "volume": {
            "type": "object",
            "properties": {
                "volume_type": {"type": "string"}, "metadata": {"type": "object"}, "snapshot_id": {"type": "string"},
                "size": {"type": ["integer", "string"], "pattern": "^[0-9]+$", "minimum": 1, "maxLength": 10},
                "availability_zone": {"type": "string"}, "display_name": {"type": "string"},
                "display_description": {"type": "string"},
            },
            "required": ["size"],
            "additionalProperties": False,
        },
    },
    "required": ["volume"],
    "additionalProperties": False,
}
SNAPSHOT_CREATE: Schema = {
    "type": "object",
    "properties": {
        "snapshot": {
            "type": "object",
            "properties": {
                "volume_id": {"type": "string"}, "force": boolean, "display_name": {"type": "string"},
                "display_description": {"type": "string"},
            },
            "required": ["volume_id"],
            "additionalProperties": False,
        },
    },
    "required": ["snapshot"],
    "additionalProperties": False,
}
