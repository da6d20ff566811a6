"""Flavor request schemas (os-flavor-manage, os-flavor-extra-specs, os-flavor-access), per microversion."""

from __future__ import annotations

import copy
from typing import Any

from cumulo.compute.api.microversion import v
from cumulo.compute.api.schemas import _base

_flavor_props: dict[str, Any] = {
    "name": _base.name,
    # No leading/trailing spaces; letters, digits, '.', ' ', '_' and '-'.
    "id": {"type": ["string", "number", "null"], "minLength": 1, "maxLength": 255, "pattern": "^(?! )[a-zA-Z0-9. _-]+(?<! )$"},
    "ram": _base.positive_int,
    "vcpus": _base.positive_int,
    "disk": _base.non_negative_int,
    "OS-FLV-EXT-DATA:ephemeral": _base.non_negative_int,
    "swap": _base.non_negative_int,
    "rxtx_factor": {"type": ["number", "string"], "pattern": r"^[0-9]+(\.[0-9]+)?$", "exclusiveMinimum": 0, "maximum": 3.40282e38},
    "os-flavor-access:is_public": _base.boolean,
}

create: dict[str, Any] = {
    "type": "object",
    "properties": {
        "flavor": {
            "type": "object",
            "properties": _flavor_props,
            "required": ["name", "ram", "vcpus", "disk"],
            "additionalProperties": False,
        }
    },
    "required": ["flavor"],
    "additionalProperties": False,
}

_description: dict[str, Any] = {"type": ["string", "null"], "minLength": 0, "maxLength": 65535, "format": "printable"}

# 2.55 adds the description.
create_v255 = copy.deepcopy(create)
create_v255["properties"]["flavor"]["properties"]["description"] = _description

CREATE = ((v("2.1"), create), (v("2.55"), create_v255))

update: dict[str, Any] = {
    "type": "object",
    "properties": {
        "flavor": {
            "type": "object",
            "properties": {"description": _description},
            "required": ["description"],
            "additionalProperties": False,
        }
    },
    "required": ["flavor"],
    "additionalProperties": False,
}

_spec_map: dict[str, Any] = {
    "type": "object",
    "patternProperties": {_base.metadata_key: {"type": ["string", "number"], "minLength": 0, "maxLength": 255}},
    "additionalProperties": False,
}

extra_specs_create: dict[str, Any] = {
    "type": "object",
    "properties": {"extra_specs": _spec_map},
    "required": ["extra_specs"],
    "additionalProperties": False,
}

extra_spec_update: dict[str, Any] = {**copy.deepcopy(_spec_map), "minProperties": 1, "maxProperties": 1}

_tenant: dict[str, Any] = {
    "type": "object",
    "properties": {"tenant": {"type": "string", "minLength": 1, "maxLength": 255}},
    "required": ["tenant"],
    "additionalProperties": False,
}

add_tenant_access: dict[str, Any] = {
    "type": "object",
    "properties": {"addTenantAccess": _tenant},
    "required": ["addTenantAccess"],
    "additionalProperties": False,
}

remove_tenant_access: dict[str, Any] = {
    "type": "object",
    "properties": {"removeTenantAccess": _tenant},
    "required": ["removeTenantAccess"],
    "additionalProperties": False,
}

# Query parameters each list accepts (unknown ones are rejected from 2.75).
LIST_QUERY = ("limit", "marker", "is_public", "minRam", "minDisk", "sort_key", "sort_dir")
SORT_DIRS = ("asc", "desc")
