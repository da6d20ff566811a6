"""Request attribute checks, Neutron's way: unknown attributes, types and lengths are 400 HTTPBadRequest.

Each resource names the attributes a create or an update may carry; `check_body` refuses any other
("Unrecognized attribute(s) 'x'") and read-only ones ("Cannot update read-only attribute x").
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from cumulo.network import faults

NAME_MAX = 255
DESCRIPTION_MAX = 255


def check_body(body: Any, resource: str, allowed: Iterable[str], read_only: Iterable[str] = ()) -> dict[str, Any]:
    """The body's resource object ({"network": {...}} -> {...}), its attributes checked by name."""
    if not isinstance(body, dict) or set(body) != {resource}:
        raise faults.HTTPBadRequest(msg=f"Resource body required: expected an object with one key '{resource}'.")
    item = body[resource]
    if not isinstance(item, dict):
        raise faults.HTTPBadRequest(msg=f"Resource body '{resource}' must be an object.")
    return check_attrs(item, allowed, read_only)


def check_attrs(item: dict[str, Any], allowed: Iterable[str], read_only: Iterable[str] = ()) -> dict[str, Any]:
    ro = set(read_only) & set(item)
    if ro:
        name = sorted(ro)[0]
        raise faults.HTTPBadRequest(msg=f"Cannot update read-only attribute {name}")
    unknown = sorted(set(item) - set(allowed))
    if unknown:
        raise faults.HTTPBadRequest(msg=f"Unrecognized attribute(s) '{', '.join(unknown)}'")
    return item


def string(item: dict[str, Any], key: str, default: str | None = None, max_len: int = NAME_MAX) -> str | None:
    if key not in item:
        return default
    value = item[key]
    if value is None and default is None:
        return None
    if not isinstance(value, str):
        raise faults.HTTPBadRequest(msg=f"Invalid input for {key}. Reason: '{value}' is not a valid string.")
    if len(value) > max_len:
        raise faults.HTTPBadRequest(
            msg=f"Invalid input for {key}. Reason: '{value[:40]}...' exceeds maximum length of {max_len}."
        )
    if "\x00" in value:
        raise faults.HTTPBadRequest(msg=f"Invalid input for {key}. Reason: a NUL character is not allowed.")
    return value


def boolean(item: dict[str, Any], key: str, default: bool | None = None) -> bool | None:
    """Neutron's convert_to_boolean: true/false, or their strings ("True", "false", "1", "0")."""
    if key not in item:
        return default
    value = item[key]
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise faults.HTTPBadRequest(msg=f"Invalid input for {key}. Reason: '{value}' cannot be converted to boolean.")


def integer(item: dict[str, Any], key: str, default: int | None = None, *, lo: int = 0, hi: int = 2**31 - 1) -> int | None:
    if key not in item:
        return default
    value = item[key]
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise faults.HTTPBadRequest(msg=f"Invalid input for {key}. Reason: '{value}' is not an integer.")
    if not lo <= value <= hi:
        raise faults.HTTPBadRequest(msg=f"Invalid input for {key}. Reason: '{value}' is not in range {lo} through {hi}.")
    return value


def uuid_value(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise faults.HTTPBadRequest(msg=f"Invalid input for {key}. Reason: '{value}' is not a valid UUID.")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise faults.HTTPBadRequest(msg=f"Invalid input for {key}. Reason: '{value}' is not a valid UUID.") from None


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def list_of(item: dict[str, Any], key: str, max_items: int | None = None) -> list[Any] | None:
    if key not in item:
        return None
    value = item[key]
    if value is None:
        return []
    if not isinstance(value, list):
        raise faults.HTTPBadRequest(msg=f"Invalid input for {key}. Reason: '{value}' is not a list.")
    if max_items is not None and len(value) > max_items:
        raise faults.HTTPBadRequest(msg=f"Invalid input for {key}. Reason: '{len(value)}' exceeds maximum of {max_items}.")
    return value


def project_of(ctx_project: str | None, is_admin: bool, item: dict[str, Any]) -> str:
    """The owning project: the caller's, or (admins only) the one `tenant_id`/`project_id` names."""
    wanted = {v for k, v in item.items() if k in ("tenant_id", "project_id")}
    if len(wanted) > 1:
        raise faults.HTTPBadRequest(msg="'project_id' and 'tenant_id' do not match")
    if wanted:
        value = wanted.pop()
        if not isinstance(value, str) or not value or len(value) > 255:
            raise faults.HTTPBadRequest(msg=f"Invalid input for project_id. Reason: '{value}' is not a valid string.")
        if value != ctx_project and not is_admin:
            raise faults.HTTPBadRequest(msg="Specifying 'project_id' or 'tenant_id' other than the authenticated "
                                            "project in request requires admin privileges")
        return value
    if not ctx_project:
        raise faults.HTTPBadRequest(msg="Running without a project: specify the project_id")
    return ctx_project
