"""Request schemas for /servers/{id}/metadata."""

from __future__ import annotations

from cumulo.compute.api.schemas._base import Schema, derive, metadata

create: Schema = {
    "type": "object",
    "properties": {"metadata": metadata},
    "required": ["metadata"],
    "additionalProperties": False,
}

update_all = derive(create)

_one_item = derive(metadata)
_one_item.update({"minProperties": 1, "maxProperties": 1})

update: Schema = {
    "type": "object",
    "properties": {"meta": _one_item},
    "required": ["meta"],
    "additionalProperties": False,
}
