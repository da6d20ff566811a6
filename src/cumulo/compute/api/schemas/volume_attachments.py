"""os-volume_attachments: the attach and update bodies (Nova's volume_attachment schemas).

By microversion: tag from 2.49, delete_on_termination from 2.79, the 2.85 update's extra fields."""

from __future__ import annotations

from cumulo.compute.api.schemas._base import Schema, Versioned, boolean, derive, tag

_UUID: Schema = {"type": "string", "format": "uuid"}
# Nova's match_device() pattern.
_DEVICE: Schema = {"type": ["string", "null"], "pattern": "(^/dev/x{0,1}[a-z]{0,1}d{0,1})([a-z]+)[0-9]*$"}

create: Schema = {
    "type": "object",
    "properties": {
        "volumeAttachment": {
            "type": "object",
            "properties": {"volumeId": _UUID, "device": _DEVICE},
            "required": ["volumeId"],
            "additionalProperties": False,
        },
    },
    "required": ["volumeAttachment"],
    "additionalProperties": False,
}
create_v249 = derive(create)
create_v249["properties"]["volumeAttachment"]["properties"]["tag"] = tag
create_v279 = derive(create_v249)
create_v279["properties"]["volumeAttachment"]["properties"]["delete_on_termination"] = boolean

update: Schema = {
    "type": "object",
    "properties": {
        "volumeAttachment": {
            "type": "object",
            "properties": {"volumeId": _UUID},
            "required": ["volumeId"],
            "additionalProperties": False,
        },
    },
    "required": ["volumeAttachment"],
    "additionalProperties": False,
}
update_v285 = derive(update)
update_v285["properties"]["volumeAttachment"]["properties"].update(
    {"device": _DEVICE, "tag": tag, "delete_on_termination": boolean, "serverId": _UUID, "id": _UUID})

CREATE = Versioned(("2.1", "2.48", create), ("2.49", "2.78", create_v249), ("2.79", None, create_v279))
UPDATE = Versioned(("2.1", "2.84", update), ("2.85", None, update_v285))
