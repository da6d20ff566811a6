"""os-services request schemas: the legacy action bodies (host + binary) and the 2.53 update."""

from __future__ import annotations

import copy
from typing import Any

from cumulo.compute.api.schemas import _base

_host: dict[str, Any] = {"type": "string", "pattern": "^[a-zA-Z0-9-._]*$", "minLength": 1, "maxLength": 255}
_text: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 255}

update: dict[str, Any] = {
    "type": "object",
    "properties": {"host": _host, "binary": _text, "disabled_reason": _text},
    "required": ["host", "binary"],
    "additionalProperties": False,
}

# 2.11 adds force-down.
update_v211 = copy.deepcopy(update)
update_v211["properties"]["forced_down"] = _base.boolean

# 2.53: the service is named by its uuid in the path; nothing is required in the body.
update_v253: dict[str, Any] = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["enabled", "disabled"]},
        "disabled_reason": _text,
        "forced_down": _base.boolean,
    },
    "additionalProperties": False,
}
