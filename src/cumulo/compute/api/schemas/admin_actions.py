"""Request schemas of the admin server actions os-resetState, injectNetworkInfo (Nova's
admin_actions) and migrate (Nova's migrate_server)."""

from __future__ import annotations

from cumulo.compute.api.schemas._base import Schema, Versioned, admin_password, boolean, derive, fqdn

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

# os-evacuate (Nova's evacuate.py): onSharedStorage required until 2.14, force from 2.29 to 2.67.
_evac_host = derive(fqdn)


def _evacuate(props: dict[str, Schema], required: list[str]) -> Schema:
    inner: Schema = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        inner["required"] = required
    return {"type": "object", "properties": {"evacuate": inner}, "required": ["evacuate"],
            "additionalProperties": False}


evacuate_v21 = _evacuate({"host": _evac_host, "onSharedStorage": boolean, "adminPass": admin_password},
                         ["onSharedStorage"])
evacuate_v214 = _evacuate({"host": _evac_host, "adminPass": admin_password}, [])
evacuate_v229 = _evacuate({"host": _evac_host, "adminPass": admin_password, "force": boolean}, [])
evacuate_v268 = evacuate_v214

SCHEMAS: dict[str, Versioned] = {
    "os-resetState": Versioned(("2.1", None, reset_state)),
    "injectNetworkInfo": Versioned(("2.1", None, _inject)),
    "migrate": Versioned(("2.1", "2.55", _migrate), ("2.56", None, migrate_v256)),
    "evacuate": Versioned(("2.1", "2.13", evacuate_v21), ("2.14", "2.28", evacuate_v214),
                          ("2.29", "2.67", evacuate_v229), ("2.68", None, evacuate_v268)),
}
