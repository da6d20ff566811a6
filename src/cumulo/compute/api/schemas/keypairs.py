"""os-keypairs request schemas per microversion.

Cumulo extension: `key_algorithm` ("rsa" | "ed25519") chooses the algorithm of a generated SSH
key (Nova always generates RSA 2048). It is accepted only in the create body.
"""

from __future__ import annotations

import copy
from typing import Any

from cumulo.compute.api.microversion import v
from cumulo.compute.api.schemas import _base
from cumulo.compute.service.keypairs import ALGORITHMS, KEY_TYPES

keypair_name: dict[str, Any] = {
    "allOf": [_base.name, {"type": "string", "pattern": r"^[_\- a-zA-Z0-9]+$", "minLength": 1, "maxLength": 255}]
}

create: dict[str, Any] = {
    "type": "object",
    "properties": {
        "keypair": {
            "type": "object",
            "properties": {
                "name": keypair_name,
                "public_key": {"type": "string"},
                "key_algorithm": {"type": "string", "enum": list(ALGORITHMS)},
            },
            "required": ["name"],
            "additionalProperties": False,
        }
    },
    "required": ["keypair"],
    "additionalProperties": False,
}

# 2.2 adds the key type.
create_v22 = copy.deepcopy(create)
create_v22["properties"]["keypair"]["properties"]["type"] = {"type": "string", "enum": list(KEY_TYPES)}

# 2.10 lets admins create keypairs for other users.
create_v210 = copy.deepcopy(create_v22)
create_v210["properties"]["keypair"]["properties"]["user_id"] = {"type": "string"}

CREATE = ((v("2.1"), create), (v("2.2"), create_v22), (v("2.10"), create_v210))

# Query parameters by version (unknown ones rejected from 2.75).
INDEX_QUERY = ((v("2.1"), ()), (v("2.10"), ("user_id",)), (v("2.35"), ("user_id", "limit", "marker")))
ITEM_QUERY = ((v("2.1"), ()), (v("2.10"), ("user_id",)))
