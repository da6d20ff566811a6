"""Request schemas of the Keystone v3 subset, and validation into Keystone's 400 wording.

Keystone stores unknown attributes of projects and users as "extra" and returns them as top-level
fields; Cumulo does the same (clients such as Tempest rely on it), while the known fields keep their
schemas and the extras are capped (EXTRA_MAX_KEYS names, EXTRA_MAX_BYTES of JSON, names that would
shadow a rendered field refused). Every other body refuses unknown fields.
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from cumulo import errors

_ID = {"type": "string", "minLength": 1, "maxLength": 64}
_NAME = {"type": "string", "minLength": 1, "maxLength": 255}
# Keystone's project names are at most 64 characters (its column width).
_PROJECT_NAME = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": r"\S"}
_DESCRIPTION = {"type": ["string", "null"], "maxLength": 65535}
_PASSWORD = {"type": "string", "maxLength": 4096}
_TAG = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[^,/]*$"}

_DOMAIN_REF = {
    "type": "object",
    "properties": {"id": _ID, "name": _NAME},
    "anyOf": [{"required": ["id"]}, {"required": ["name"]}],
    "additionalProperties": False,
}

_PASSWORD_METHOD = {
    "type": "object",
    "properties": {
        "user": {
            "type": "object",
            "properties": {"id": _ID, "name": _NAME, "password": _PASSWORD, "domain": _DOMAIN_REF},
            "required": ["password"],
            "anyOf": [{"required": ["id"]}, {"required": ["name", "domain"]}],
            "additionalProperties": False,
        }
    },
    "required": ["user"],
    "additionalProperties": False,
}

_TOKEN_METHOD = {
    "type": "object",
    "properties": {"id": {"type": "string", "minLength": 1, "maxLength": 1024}},
    "required": ["id"],
    "additionalProperties": False,
}

_SCOPE = {
    "oneOf": [
        {"type": "string", "enum": ["unscoped"]},
        {
            "type": "object",
            "properties": {
                "project": {
                    "type": "object",
                    "properties": {"id": _ID, "name": _NAME, "domain": _DOMAIN_REF},
                    "anyOf": [{"required": ["id"]}, {"required": ["name", "domain"]}],
                    "additionalProperties": False,
                },
                "domain": _DOMAIN_REF,
                "system": {"type": "object"},
                "OS-TRUST:trust": {"type": "object"},
            },
            "minProperties": 1,
            "maxProperties": 1,
            "additionalProperties": False,
        },
    ]
}

_SECRET = {"type": "string", "minLength": 1, "maxLength": 4096}

_APP_CRED_METHOD = {
    "type": "object",
    "properties": {
        "id": _ID,
        "name": _NAME,
        "secret": _SECRET,
        "user": {
            "type": "object",
            "properties": {"id": _ID, "name": _NAME, "domain": _DOMAIN_REF},
            "anyOf": [{"required": ["id"]}, {"required": ["name", "domain"]}],
            "additionalProperties": False,
        },
    },
    "required": ["secret"],
    "anyOf": [{"required": ["id"]}, {"required": ["name", "user"]}],
    "additionalProperties": False,
}

TOKEN_ISSUE = {
    "type": "object",
    "properties": {
        "auth": {
            "type": "object",
            "properties": {
                "identity": {
                    "type": "object",
                    "properties": {
                        "methods": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                        "password": _PASSWORD_METHOD,
                        "token": _TOKEN_METHOD,
                        "application_credential": _APP_CRED_METHOD,
                    },
                    "required": ["methods"],
                    # Other plugins' sections (totp, oauth1...) are well-formed but
                    # unsupported: the service answers 401 for them, as Keystone does.
                    "additionalProperties": {"type": "object"},
                },
                "scope": _SCOPE,
            },
            "required": ["identity"],
            "additionalProperties": False,
        }
    },
    "required": ["auth"],
    "additionalProperties": False,
}

_OPTIONS = {
    "type": "object",
    "properties": {"immutable": {"type": ["boolean", "null"]}},
    "additionalProperties": False,
}

_PROJECT_PROPS: dict[str, Any] = {
    "name": _PROJECT_NAME,
    "description": _DESCRIPTION,
    "domain_id": {"type": ["string", "null"], "maxLength": 64},
    "enabled": {"type": "boolean"},
    "is_domain": {"type": "boolean", "const": False},
    "parent_id": {"type": ["string", "null"], "maxLength": 64},
    "tags": {"type": "array", "items": _TAG, "maxItems": 80, "uniqueItems": True},
    "options": _OPTIONS,
}

_USER_OPTIONS = {
    "type": "object",
    "additionalProperties": {"type": ["boolean", "array", "null"]},
    "maxProperties": 16,
}

_USER_PROPS: dict[str, Any] = {
    "name": _NAME,
    "password": {"type": ["string", "null"], "maxLength": 4096},
    "domain_id": {"type": ["string", "null"], "maxLength": 64},
    "default_project_id": {"type": ["string", "null"], "maxLength": 64},
    "description": _DESCRIPTION,
    "email": {"type": ["string", "null"], "maxLength": 255},
    "enabled": {"type": "boolean"},
    "options": _USER_OPTIONS,
}

_ROLE_PROPS: dict[str, Any] = {
    "name": _NAME,
    "description": {"type": ["string", "null"], "maxLength": 255},
    "domain_id": {"type": "null"},
    "options": _OPTIONS,
}


EXTRA_MAX_KEYS = 32
EXTRA_MAX_BYTES = 16384
# Rendered by the views whatever the body says: an extra of that name would be shadowed or clash.
EXTRA_RESERVED = frozenset({"id", "links", "password_expires_at", "is_domain", "parent_id", "options"})


def _wrapped(key: str, props: dict[str, Any], *, create: bool, extras: bool = False) -> dict[str, Any]:
    inner: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if extras:
        inner["additionalProperties"] = True
        inner["propertyNames"] = {"minLength": 1, "maxLength": 64}
        inner["maxProperties"] = len(props) + EXTRA_MAX_KEYS
    if create:
        inner["required"] = ["name"]
    else:
        inner["minProperties"] = 1
    return {"type": "object", "properties": {key: inner}, "required": [key], "additionalProperties": False}


PROJECT_CREATE = _wrapped("project", _PROJECT_PROPS, create=True, extras=True)
PROJECT_UPDATE = _wrapped(
    "project",
    {k: v for k, v in _PROJECT_PROPS.items() if k not in ("domain_id", "parent_id")},
    create=False,
    extras=True,
)
USER_CREATE = _wrapped("user", _USER_PROPS, create=True, extras=True)
USER_UPDATE = _wrapped(
    "user", {k: v for k, v in _USER_PROPS.items() if k != "domain_id"}, create=False, extras=True
)
PROJECT_KNOWN = frozenset(_PROJECT_PROPS)
USER_KNOWN = frozenset(_USER_PROPS)
# Set at creation only: on PATCH these are refused, never taken for extras.
PROJECT_FIXED = frozenset({"domain_id", "parent_id"})
USER_FIXED = frozenset({"domain_id"})


def split_extras(
    kind: str, fields: dict[str, Any], known: frozenset[str], fixed: frozenset[str] = frozenset()
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(known fields, extra attributes) of a validated user or project body; Invalid if the extras
    name a reserved or `fixed` field or are too large. A value may be any JSON, null included (as in
    Keystone)."""
    for name in sorted(fixed & fields.keys()):
        raise errors.Invalid(f"Invalid input for field '{kind}/{name}': '{name}' cannot be changed.")
    extra = {k: v for k, v in fields.items() if k not in known}
    for name in sorted(extra):
        if name in EXTRA_RESERVED:
            raise errors.Invalid(f"Invalid input for field '{kind}/{name}': '{name}' cannot be set.")
    check_extra_size(kind, extra)
    return {k: v for k, v in fields.items() if k in known}, extra


def check_extra_size(kind: str, extra: dict[str, Any]) -> None:
    if len(extra) > EXTRA_MAX_KEYS:
        raise errors.Invalid(
            f"Invalid input for field '{kind}': at most {EXTRA_MAX_KEYS} extra attributes are allowed."
        )
    if len(json.dumps(extra, ensure_ascii=False).encode("utf-8", "surrogatepass")) > EXTRA_MAX_BYTES:
        raise errors.Invalid(
            f"Invalid input for field '{kind}': extra attributes exceed {EXTRA_MAX_BYTES} bytes of JSON."
        )
ROLE_CREATE = _wrapped("role", _ROLE_PROPS, create=True)
ROLE_UPDATE = _wrapped("role", {k: v for k, v in _ROLE_PROPS.items() if k != "domain_id"}, create=False)
PASSWORD_CHANGE = {
    "type": "object",
    "properties": {
        "user": {
            "type": "object",
            "properties": {"password": _PASSWORD, "original_password": _PASSWORD},
            "required": ["password", "original_password"],
            "additionalProperties": False,
        }
    },
    "required": ["user"],
    "additionalProperties": False,
}

_ROLE_REF = {
    "type": "object",
    "properties": {"id": _ID, "name": _NAME},
    "minProperties": 1,
    "maxProperties": 1,
    "additionalProperties": False,
}

APP_CRED_CREATE = {
    "type": "object",
    "properties": {
        "application_credential": {
            "type": "object",
            "properties": {
                "name": _NAME,
                "description": {"type": ["string", "null"], "maxLength": 65535},
                "secret": {"type": ["string", "null"], "minLength": 1, "maxLength": 4096},
                "expires_at": {"type": ["string", "null"], "maxLength": 64},
                "roles": {"type": "array", "items": _ROLE_REF, "maxItems": 64},
                "unrestricted": {"type": ["boolean", "null"]},
                # Access rules are not implemented: any rule is refused (an empty list is fine).
                "access_rules": {"type": "array", "maxItems": 0},
            },
            "required": ["name"],
            "additionalProperties": False,
        }
    },
    "required": ["application_credential"],
    "additionalProperties": False,
}

EC2_CREATE = {
    "type": "object",
    "properties": {"tenant_id": _ID},
    "required": ["tenant_id"],
    "additionalProperties": False,
}

_VALIDATORS: dict[int, Draft202012Validator] = {}
# Validators whose messages name keys, not values.
_SAFE_MESSAGES = ("required", "additionalProperties", "minProperties", "maxProperties")


def validate(schema: dict[str, Any], body: Any) -> dict[str, Any]:
    """Return `body` if it matches `schema`, else raise Invalid in Keystone's wording."""
    validator = _VALIDATORS.get(id(schema))
    if validator is None:
        validator = _VALIDATORS[id(schema)] = Draft202012Validator(schema)
    error = best_match(validator.iter_errors(body))
    if error is not None:
        field = "/".join(str(p) for p in error.absolute_path) or "body"
        message = error.message
        if error.validator == "type":
            message = f"the value is not of type {error.validator_value!r}"
        elif "password" in field or "secret" in field or (
            isinstance(error.instance, dict | list) and error.validator not in _SAFE_MESSAGES
        ):
            # These messages would quote the value, which may hold a password.
            message = f"the value does not satisfy '{error.validator}'"
        elif len(message) > 300:
            message = message[:300] + "..."
        raise errors.Invalid(f"Invalid input for field '{field}': {message}")
    assert isinstance(body, dict)
    return body
