"""os-interface: the attach body (Nova's attach_interfaces schema)."""

from __future__ import annotations

from typing import Any

_UUID = {"type": "string", "format": "uuid"}
ATTACH: dict[str, Any] = {
    "type": "object",
    "properties": {
        "interfaceAttachment": {
            "type": "object",
            "properties": {
                "port_id": _UUID,
                "net_id": _UUID,
                "fixed_ips": {
                    "type": "array", "minItems": 1, "maxItems": 1,
                    "items": {"type": "object", "properties": {"ip_address": {"type": "string"}},
                              "required": ["ip_address"], "additionalProperties": False},
                },
                "tag": {"type": "string", "minLength": 1, "maxLength": 60},
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}
