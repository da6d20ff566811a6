"""os-aggregates request schemas (Nova's schemas/aggregates.py facts: name 1..255, a zone without
':', hosts as in the services table, metadata values that may be null to delete a key)."""

from __future__ import annotations

from cumulo.compute.api.schemas._base import (
    FORMAT_CHECKER,
    InvalidName,
    Schema,
    _edge_ok,
    _printable,
    derive,
    fqdn,
    metadata,
    name,
)

# Nova's wording (sic: no space after the period).
AZ_REASON = "printable characters except :.Can not start or end with whitespace."


def _check_az_name(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    if instance and all(_printable(c) and c != ":" for c in instance) and _edge_ok(instance[0]) and _edge_ok(instance[-1]):
        return True
    raise InvalidName(AZ_REASON)


FORMAT_CHECKER.checks("az_name", raises=InvalidName)(_check_az_name)

az_name: Schema = {"type": "string", "format": "az_name", "minLength": 1, "maxLength": 255}
_zone: Schema = {"oneOf": [az_name, {"type": "null"}]}
_name_spaces: Schema = {"type": "string", "format": "name_with_leading_trailing_spaces", "minLength": 1, "maxLength": 255}

create: Schema = {
    "type": "object",
    "properties": {
        "aggregate": {
            "type": "object",
            "properties": {"name": name, "availability_zone": _zone},
            "required": ["name"],
            "additionalProperties": False,
        },
    },
    "required": ["aggregate"],
    "additionalProperties": False,
}

update: Schema = {
    "type": "object",
    "properties": {
        "aggregate": {
            "type": "object",
            "properties": {"name": _name_spaces, "availability_zone": _zone},
            "additionalProperties": False,
            "anyOf": [{"required": ["name"]}, {"required": ["availability_zone"]}],
        },
    },
    "required": ["aggregate"],
    "additionalProperties": False,
}


def _host_action(key: str) -> Schema:
    return {
        "type": "object",
        "properties": {
            key: {"type": "object", "properties": {"host": fqdn}, "required": ["host"], "additionalProperties": False},
        },
        "required": [key],
        "additionalProperties": False,
    }


add_host = _host_action("add_host")
remove_host = _host_action("remove_host")

_metadata_with_null = derive(metadata)
_metadata_with_null["patternProperties"]["^[a-zA-Z0-9-_:. ]{1,255}$"]["type"] = ["string", "null"]

set_metadata: Schema = {
    "type": "object",
    "properties": {
        "set_metadata": {
            "type": "object",
            "properties": {"metadata": _metadata_with_null},
            "required": ["metadata"],
            "additionalProperties": False,
        },
    },
    "required": ["set_metadata"],
    "additionalProperties": False,
}

ACTIONS: dict[str, Schema] = {"add_host": add_host, "remove_host": remove_host, "set_metadata": set_metadata}
