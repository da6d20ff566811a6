"""Request schemas of the admin server actions os-resetState, injectNetworkInfo (Nova's
admin_actions) and migrate (Nova's migrate_server)."""

from __future__ import annotations

from cumulo.compute.api.schemas._base import Schema, Versioned, derive, fqdn

reset_state: Schema = {
    "type": "object",
    "properties": {
        "os-resetState": {
            "type": "object",
            "properties": {"state": {"type": "string", "enum": ["active", "error"]}},
            "required": ["state"],
            "additionalProperties": False,
        },
    },
    "required": ["os-resetState"],
    "additionalProperties": False,
}

# Nova has no schema for these before 2.56: any argument ({"migrate": null} as well as {}).
_inject: Schema = {"type": "object", "properties": {"injectNetworkInfo": {}}, "required": ["injectNetworkInfo"],
                   "additionalProperties": False}
_migrate: Schema = {"type": "object", "properties": {"migrate": {}}, "required": ["migrate"],
                    "additionalProperties": False}

# 2.56: an optional target host (null or absent: the scheduler picks).
_host = derive(fqdn)
_host["type"] = ["string", "null"]
migrate_v256: Schema = {
    "type": "object",
    "properties": {
        "migrate": {"type": ["object", "null"], "properties": {"host": _host}, "additionalProperties": False},
    },
    "required": ["migrate"],
    "additionalProperties": False,
}

SCHEMAS: dict[str, Versioned] = {
    "os-resetState": Versioned(("2.1", None, reset_state)),
    "injectNetworkInfo": Versioned(("2.1", None, _inject)),
    "migrate": Versioned(("2.1", "2.55", _migrate), ("2.56", None, migrate_v256)),
}
