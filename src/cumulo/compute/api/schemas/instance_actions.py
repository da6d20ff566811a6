"""Query schemas for /servers/{id}/os-instance-actions (paging and time filters from 2.58)."""

from __future__ import annotations

from cumulo.compute.api.schemas._base import Schema, Versioned, derive, non_negative_integer


def _single(item: Schema) -> Schema:
    return {"type": "array", "items": item, "maxItems": 1}


index_query: Schema = {"type": "object", "properties": {}, "additionalProperties": True}

index_query_v258: Schema = {
    "type": "object",
    "properties": {
        "limit": _single(non_negative_integer),
        "marker": _single({"type": "string"}),
        "changes-since": _single({"type": "string", "format": "date-time"}),
    },
    "additionalProperties": False,
}
index_query_v266 = derive(index_query_v258)
index_query_v266["properties"]["changes-before"] = _single({"type": "string", "format": "date-time"})

INDEX_QUERY = Versioned(
    ("2.1", "2.57", index_query),
    ("2.58", "2.65", index_query_v258),
    ("2.66", None, index_query_v266),
)
