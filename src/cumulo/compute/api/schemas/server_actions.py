"""Request schemas for POST /servers/{id}/action, one per action, by microversion."""

from __future__ import annotations

from cumulo.compute.api.schemas._base import (
    Schema,
    Versioned,
    access_ipv4,
    access_ipv6,
    admin_password,
    boolean,
    derive,
    description,
    disk_config,
    flavor_ref,
    metadata,
    name,
    name_or_none,
    personality,
    trusted_certs,
    uuid_type,
)


def _wrapper(action: str, inner: Schema) -> Schema:
    return {"type": "object", "properties": {action: inner}, "required": [action], "additionalProperties": False}


def _any_body(action: str) -> Schema:
    # Nova accepts any value (null, {}) for the argument-less actions.
    return _wrapper(action, {})


rebuild: Schema = _wrapper(
    "rebuild",
    {
        "type": "object",
        "properties": {
            "name": name,
            "imageRef": uuid_type,
            "adminPass": admin_password,
            "metadata": metadata,
            "preserve_ephemeral": boolean,
            "OS-DCF:diskConfig": disk_config,
            "accessIPv4": access_ipv4,
            "accessIPv6": access_ipv6,
            "personality": personality,
        },
        "required": ["imageRef"],
        "additionalProperties": False,
    },
)
rebuild_v219 = derive(rebuild)
rebuild_v219["properties"]["rebuild"]["properties"]["description"] = description
rebuild_v254 = derive(rebuild_v219)
rebuild_v254["properties"]["rebuild"]["properties"]["key_name"] = name_or_none
rebuild_v257 = derive(rebuild_v254)
rebuild_v257["properties"]["rebuild"]["properties"].pop("personality")
rebuild_v257["properties"]["rebuild"]["properties"]["user_data"] = {
    "type": ["string", "null"],
    "format": "base64",
    "maxLength": 65535,
}
rebuild_v263 = derive(rebuild_v257)
rebuild_v263["properties"]["rebuild"]["properties"]["trusted_image_certificates"] = trusted_certs

resize: Schema = _wrapper(
    "resize",
    {
        "type": "object",
        "properties": {"flavorRef": flavor_ref, "OS-DCF:diskConfig": disk_config},
        "required": ["flavorRef"],
        "additionalProperties": False,
    },
)

create_image: Schema = _wrapper(
    "createImage",
    {
        "type": "object",
        "properties": {"name": name, "metadata": metadata},
        "required": ["name"],
        "additionalProperties": False,
    },
)

reboot: Schema = _wrapper(
    "reboot",
    {
        "type": "object",
        "properties": {"type": {"type": "string", "enum": ["HARD", "Hard", "hard", "SOFT", "Soft", "soft"]}},
        "required": ["type"],
        "additionalProperties": False,
    },
)

lock_v273: Schema = _wrapper(
    "lock",
    {
        "type": ["object", "null"],
        "properties": {"locked_reason": {"type": "string", "minLength": 1, "maxLength": 255}},
        "additionalProperties": False,
    },
)

console_output: Schema = _wrapper(
    "os-getConsoleOutput",
    {
        "type": "object",
        "properties": {
            # -1 (or null) means everything.
            "length": {"type": ["integer", "string", "null"], "pattern": "^-?[0-9]+$", "minimum": -1},
        },
        "additionalProperties": False,
    },
)

SCHEMAS: dict[str, Versioned] = {
    "os-start": Versioned(("2.1", None, _any_body("os-start"))),
    "os-stop": Versioned(("2.1", None, _any_body("os-stop"))),
    "pause": Versioned(("2.1", None, _any_body("pause"))),
    "unpause": Versioned(("2.1", None, _any_body("unpause"))),
    "suspend": Versioned(("2.1", None, _any_body("suspend"))),
    "resume": Versioned(("2.1", None, _any_body("resume"))),
    "unlock": Versioned(("2.1", None, _any_body("unlock"))),
    "confirmResize": Versioned(("2.1", None, _any_body("confirmResize"))),
    "revertResize": Versioned(("2.1", None, _any_body("revertResize"))),
    "lock": Versioned(("2.1", "2.72", _any_body("lock")), ("2.73", None, lock_v273)),
    "reboot": Versioned(("2.1", None, reboot)),
    "resize": Versioned(("2.1", None, resize)),
    "createImage": Versioned(("2.1", None, create_image)),
    "os-getConsoleOutput": Versioned(("2.1", None, console_output)),
    "rebuild": Versioned(
        ("2.1", "2.18", rebuild),
        ("2.19", "2.53", rebuild_v219),
        ("2.54", "2.56", rebuild_v254),
        ("2.57", "2.62", rebuild_v257),
        ("2.63", None, rebuild_v263),
    ),
}
