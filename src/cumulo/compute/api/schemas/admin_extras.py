"""Request schemas of the smaller admin APIs kept in their own modules: os-hosts updates,
os-server-external-events (per microversion), the server security group actions, and the query
parameters of os-simple-tenant-usage."""

from __future__ import annotations

from cumulo.compute.api.schemas._base import Schema, Versioned, derive

_ENABLE = ["enable", "disable", "Enable", "Disable", "ENABLE", "DISABLE"]
host_update: Schema = {
    "type": "object",
    "properties": {"status": {"type": "string", "enum": _ENABLE}, "maintenance_mode": {"type": "string", "enum": _ENABLE}},
    "anyOf": [{"required": ["status"]}, {"required": ["maintenance_mode"]}],
    "additionalProperties": False,
}

events_create: Schema = {
    "type": "object",
    "properties": {
        "events": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "name": {
                        "type": "string",
                        "enum": ["network-changed", "network-vif-plugged", "network-vif-unplugged", "network-vif-deleted"],
                    },
                    "server_uuid": {"type": "string", "format": "uuid"},
                    "status": {"type": "string", "enum": ["failed", "completed", "in-progress"]},
                    "tag": {"type": "string", "maxLength": 255},
                },
                "required": ["name", "server_uuid"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["events"],
    "additionalProperties": False,
}


def _with_event(schema: Schema, name: str) -> Schema:
    out = derive(schema)
    out["properties"]["events"]["items"]["properties"]["name"]["enum"].append(name)
    return out


events_create_v251 = _with_event(events_create, "volume-extended")
events_create_v276 = _with_event(events_create_v251, "power-update")
EVENTS = Versioned(("2.0", "2.50", events_create), ("2.51", "2.75", events_create_v251), ("2.76", None, events_create_v276))


def _action(key: str) -> Schema:
    # Nova has no schema for these: the handler parses the value (a dict with a non-blank name).
    return {"type": "object", "properties": {key: {}}, "required": [key], "additionalProperties": False}


SECURITY_GROUP_ACTIONS: dict[str, Versioned] = {
    "addSecurityGroup": Versioned(("2.1", None, _action("addSecurityGroup"))),
    "removeSecurityGroup": Versioned(("2.1", None, _action("removeSecurityGroup"))),
}

# os-simple-tenant-usage query parameters: the list's and a project's, paging from 2.40.
USAGE_LIST_QUERY = ("start", "end", "detailed")
USAGE_SHOW_QUERY = ("start", "end")
PAGING = ("limit", "marker")
