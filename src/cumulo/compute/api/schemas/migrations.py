"""Query schemas for GET /os-migrations (Nova's migrations schema: paging and time filters from 2.59)."""

from __future__ import annotations

from cumulo.compute.api.schemas._base import Schema, Versioned, derive, non_negative_integer


def _single(item: Schema) -> Schema:
    return {"type": "array", "items": item, "maxItems": 1}


_ANY: Schema = {"type": "array", "items": {"type": "string"}}

index_query: Schema = {
    "type": "object",
    "properties": {
        "hidden": _ANY, "host": _ANY, "instance_uuid": _ANY, "source_compute": _ANY, "status": _ANY,
        "migration_type": _ANY,
    },
    "additionalProperties": True,  # Nova ignores unknown parameters before 2.59
}
index_query_v259 = derive(index_query)
index_query_v259["properties"].update(
    {
        "limit": _single(non_negative_integer),
        "marker": _single({"type": "string"}),
        "changes-since": _single({"type": "string", "format": "date-time"}),
    }
)
index_query_v259["additionalProperties"] = False
index_query_v266 = derive(index_query_v259)
index_query_v266["properties"]["changes-before"] = _single({"type": "string", "format": "date-time"})

INDEX_QUERY = Versioned(
    ("2.1", "2.58", index_query),
    ("2.59", "2.65", index_query_v259),
    ("2.66", None, index_query_v266),
)
