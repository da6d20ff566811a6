"""Request schemas of Nova's image proxy (GET /images query) and image metadata bodies."""

from __future__ import annotations

from cumulo.compute.api.schemas._base import Schema, metadata, multi, positive_integer

# Nova never validated the filters themselves; only the paging parameters are checked.
index_query: Schema = {
    "type": "object",
    "properties": {
        "limit": multi(positive_integer),
        "page_size": multi(positive_integer),
        "offset": multi(positive_integer),
    },
    "additionalProperties": True,
}

_single: Schema = {**metadata, "minProperties": 1, "maxProperties": 1}

create_metadata: Schema = {
    "type": "object",
    "properties": {"metadata": metadata},
    "required": ["metadata"],
    "additionalProperties": False,
}
update_all_metadata: Schema = create_metadata

update_item: Schema = {
    "type": "object",
    "properties": {"meta": _single},
    "required": ["meta"],
    "additionalProperties": False,
}
