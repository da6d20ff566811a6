"""os-server-groups request schemas per microversion (facts from the Nova API reference).

2.1: `policies`, a list of exactly one of anti-affinity, affinity; 2.15 adds soft-anti-affinity
and soft-affinity; 2.64 replaces it with `policy` (a string) and `rules` (max_server_per_host, a
positive integer, anti-affinity only). List queries: all_projects (admin), limit, offset; unknown
query parameters are rejected from 2.75.
"""

from __future__ import annotations

from typing import Any

from cumulo.compute.api.microversion import v
from cumulo.compute.api.schemas._base import derive, multi, name, non_negative_integer, positive_integer

Schema = dict[str, Any]

create: Schema = {
    "type": "object",
    "properties": {
        "server_group": {
            "type": "object",
            "properties": {
                "name": name,
                "policies": {
                    # One policy only; a string from 2.64.
                    "type": "array",
                    "prefixItems": [{"type": "string", "enum": ["anti-affinity", "affinity"]}],
                    "uniqueItems": True,
                    "minItems": 1,
                    "maxItems": 1,
                },
            },
            "required": ["name", "policies"],
            "additionalProperties": False,
        }
    },
    "required": ["server_group"],
    "additionalProperties": False,
}

create_v215 = derive(create)
create_v215["properties"]["server_group"]["properties"]["policies"]["prefixItems"][0]["enum"].extend(
    ["soft-anti-affinity", "soft-affinity"]
)

create_v264 = derive(create_v215)
_group_v264 = create_v264["properties"]["server_group"]
del _group_v264["properties"]["policies"]
_group_v264["required"] = ["name", "policy"]
_group_v264["properties"]["policy"] = {
    "type": "string",
    "enum": ["anti-affinity", "affinity", "soft-anti-affinity", "soft-affinity"],
}
_group_v264["properties"]["rules"] = {
    "type": "object",
    "properties": {"max_server_per_host": positive_integer},
    "additionalProperties": False,
}

CREATE = ((v("2.1"), create), (v("2.15"), create_v215), (v("2.64"), create_v264))

index_query: Schema = {
    "type": "object",
    "properties": {
        "all_projects": multi({"type": "string"}),
        "limit": multi(non_negative_integer),
        "offset": multi(non_negative_integer),
    },
    "additionalProperties": True,
}
index_query_v275 = derive(index_query)
index_query_v275["additionalProperties"] = False

INDEX_QUERY = ((v("2.1"), index_query), (v("2.75"), index_query_v275))
