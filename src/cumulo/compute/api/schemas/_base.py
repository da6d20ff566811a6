"""The compute schemas' shared helpers: parameter types, format checks, validate and Versioned.

Nova's parameter types and error wording, `validate` / `validate_query`, and `Versioned` (schemas
by microversion range).
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime as dt
import ipaddress
import re
import unicodedata
import uuid
from collections.abc import Iterator
from typing import Any

import jsonschema
from jsonschema import exceptions as js_exc

from cumulo.compute.api.microversion import Version, v
from cumulo.errors import Invalid

Schema = dict[str, Any]

FORMAT_CHECKER = jsonschema.FormatChecker()

NAME_REASON = "printable characters. Can not start or end with whitespace."
NAME_WITH_SPACES_REASON = "printable characters with at least one non space character"


class InvalidName(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"An invalid 'name' value was provided. The name must be: {reason}")


def _printable(ch: str) -> bool:
    # Nova's rule: not a control/format character, and the only separators allowed are spaces.
    cat = unicodedata.category(ch)
    return not cat.startswith("C") and (not cat.startswith("Z") or cat == "Zs")


def _edge_ok(ch: str) -> bool:
    return _printable(ch) and unicodedata.category(ch) != "Zs"


def _check_name(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    if instance and all(_printable(c) for c in instance) and _edge_ok(instance[0]) and _edge_ok(instance[-1]):
        return True
    raise InvalidName(NAME_REASON)


def _check_name_spaces(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    if all(_printable(c) for c in instance) and any(_edge_ok(c) for c in instance):
        return True
    raise InvalidName(NAME_WITH_SPACES_REASON)


def _check_printable(instance: object) -> bool:
    return not isinstance(instance, str) or all(_printable(c) for c in instance)


def _check_uuid(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    return is_uuid_like(instance)


def _check_base64(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    return b64decode_strict(instance) is not None


def b64decode_strict(text: str) -> bytes | None:
    """Base64 (whitespace allowed, as in wrapped output), or None when it is not base64 at all."""
    try:
        return base64.b64decode("".join(text.split()).encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None


def _check_ipv4(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    try:
        ipaddress.IPv4Address(instance)
    except ValueError:
        return False
    return True


def _check_ipv6(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    try:
        ipaddress.IPv6Address(instance)
    except ValueError:
        return False
    return True


def _check_datetime(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    try:
        parse_isotime(instance)
    except (ValueError, OverflowError):
        return False
    return True


def _check_regex(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    if not instance:
        return False
    try:
        re.compile(instance)
    except re.error:
        return False
    return True


# Registered by call rather than decorator: jsonschema's decorator is untyped.
FORMAT_CHECKER.checks("name", raises=InvalidName)(_check_name)
FORMAT_CHECKER.checks("name_with_leading_trailing_spaces", raises=InvalidName)(_check_name_spaces)
FORMAT_CHECKER.checks("printable")(_check_printable)
FORMAT_CHECKER.checks("uuid")(_check_uuid)
FORMAT_CHECKER.checks("base64")(_check_base64)
FORMAT_CHECKER.checks("ipv4")(_check_ipv4)
FORMAT_CHECKER.checks("ipv6")(_check_ipv6)
FORMAT_CHECKER.checks("date-time")(_check_datetime)
FORMAT_CHECKER.checks("regex")(_check_regex)


def is_uuid_like(value: str) -> bool:
    """Like oslo's is_uuid_like: any accepted uuid spelling that round-trips (ignoring dashes/case)."""
    try:
        return str(uuid.UUID(value)).replace("-", "") == value.replace("-", "").lower()
    except (TypeError, ValueError, AttributeError):
        return False


_ISO_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6})\d*)?)?)?"
    r"\s*(Z|[+-]\d{2}(?::?\d{2})?)?$",
    re.IGNORECASE,
)


def parse_isotime(text: str) -> dt.datetime:
    """ISO 8601 into a naive UTC datetime (what the DB stores). Raises ValueError."""
    m = _ISO_RE.match(text.strip())
    if not m:
        raise ValueError(text)
    y, mo, d, h, mi, s, frac, tz = m.groups()
    value = dt.datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), int((frac or "0").ljust(6, "0")))
    if tz and tz.upper() != "Z":
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        offset = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
        try:
            value -= sign * offset
        except OverflowError:
            raise ValueError(f"{text} is out of range") from None
    return value


def _number_from_str(instance: Any) -> int | float | None:
    if isinstance(instance, bool):
        return None
    if isinstance(instance, int | float):
        return instance
    try:
        return int(instance)
    except (TypeError, ValueError):
        try:
            return float(instance)
        except (TypeError, ValueError):
            return None


def _minimum(validator: Any, minimum: Any, instance: Any, schema: Schema) -> Iterator[js_exc.ValidationError]:
    # Nova compares numeric strings ("0") against minimum/maximum too.
    value = _number_from_str(instance)
    if value is not None and value < minimum:
        yield js_exc.ValidationError(f"{instance!r} is less than the minimum of {minimum!r}")


def _maximum(validator: Any, maximum: Any, instance: Any, schema: Schema) -> Iterator[js_exc.ValidationError]:
    value = _number_from_str(instance)
    if value is not None and value > maximum:
        yield js_exc.ValidationError(f"{instance!r} is greater than the maximum of {maximum!r}")


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, {"minimum": _minimum, "maximum": _maximum}
)
_CACHE: dict[int, Any] = {}


def _validator_for(schema: Schema) -> Any:
    key = id(schema)
    cached = _CACHE.get(key)
    if cached is None or cached.schema is not schema:
        cached = _Validator(schema, format_checker=FORMAT_CHECKER)
        _CACHE[key] = cached
    return cached


def validate(schema: Schema, data: Any) -> None:
    """Validate a request body; raise Invalid worded as Nova words it."""
    _raise_first(schema, data, "Invalid input for field/attribute {path}. Value: {value}. {message}", last=True)


def validate_query(schema: Schema, params: dict[str, list[str]]) -> None:
    _raise_first(schema, params, "Invalid input for query parameters {path}. Value: {value}. {message}", last=False)


def _raise_first(schema: Schema, data: Any, template: str, *, last: bool) -> None:
    validator = _validator_for(schema)
    try:
        errors = validator.iter_errors(data)
        err = next(errors, None)
    except TypeError as exc:  # e.g. patternProperties on a non-string key
        raise Invalid(str(exc)) from None
    if err is None:
        return
    if isinstance(err.cause, InvalidName):
        raise Invalid(str(err.cause))
    if err.path:
        path = err.path[-1] if last else err.path[0]
        raise Invalid(template.format(path=path, value=err.instance, message=err.message))
    raise Invalid(err.message)


class Versioned:
    """Schemas by microversion range: [(min, max or None, schema)]."""

    def __init__(self, *entries: tuple[str, str | None, Schema]) -> None:
        self.entries = [(v(lo), v(hi) if hi else None, schema) for lo, hi, schema in entries]

    def for_version(self, version: Version) -> Schema | None:
        for lo, hi, schema in self.entries:
            if lo <= version and (hi is None or version <= hi):
                return schema
        return None

    def validate(self, version: Version, data: Any) -> None:
        schema = self.for_version(version)
        if schema is not None:
            validate(schema, data)


def derive(schema: Schema) -> Schema:
    return copy.deepcopy(schema)


def bool_from_string(value: Any, *, strict: bool = False, default: bool = False) -> bool:
    """oslo.utils strutils.bool_from_string."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "t", "true", "on", "y", "yes"):
        return True
    if text in ("0", "f", "false", "off", "n", "no"):
        return False
    if strict:
        raise Invalid(
            f"Unrecognized value '{value}', acceptable values are: '0', '1', 'f', 'false', 'n', 'no', "
            "'off', 'on', 't', 'true', 'y', 'yes'"
        )
    return default


# --- Nova's parameter types (facts from the API reference; our own definitions) ---

boolean: Schema = {
    "type": ["boolean", "string"],
    "enum": [
        True, "True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes",
        False, "False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No", "no",
    ],
}
positive_integer: Schema = {"type": ["integer", "string"], "pattern": "^[0-9]*$", "minimum": 1, "minLength": 1}
non_negative_integer: Schema = {"type": ["integer", "string"], "pattern": "^[0-9]*$", "minimum": 0, "minLength": 1}
name: Schema = {"type": "string", "format": "name", "minLength": 1, "maxLength": 255}
name_or_none: Schema = {"oneOf": [{"type": "string", "minLength": 1, "maxLength": 255}, {"type": "null"}]}
# printable characters, spaces allowed anywhere
description: Schema = {"type": ["string", "null"], "format": "printable", "minLength": 0, "maxLength": 255}
uuid_type: Schema = {"type": "string", "format": "uuid"}
image_id_or_empty: Schema = {"oneOf": [{"type": "string", "format": "uuid"}, {"type": "string", "maxLength": 0}]}
flavor_ref: Schema = {"type": ["string", "integer"], "minLength": 1}
admin_password: Schema = {"type": "string"}
metadata: Schema = {
    "type": "object",
    "patternProperties": {"^[a-zA-Z0-9-_:. ]{1,255}$": {"type": "string", "maxLength": 255}},
    "additionalProperties": False,
}
ip_address: Schema = {"type": "string", "oneOf": [{"format": "ipv4"}, {"format": "ipv6"}]}
access_ipv4: Schema = {"type": "string", "format": "ipv4"}
access_ipv6: Schema = {"type": "string", "format": "ipv6"}
disk_config: Schema = {"type": "string", "enum": ["AUTO", "MANUAL"]}
MAX_TAG_LENGTH = 60
MAX_TAG_COUNT = 50
tag: Schema = {"type": "string", "pattern": "^[^,/]*$", "minLength": 1, "maxLength": MAX_TAG_LENGTH}
fqdn: Schema = {"type": "string", "pattern": "^[a-zA-Z0-9-._]*$", "minLength": 1, "maxLength": 255}
trusted_certs: Schema = {
    "type": ["array", "null"],
    "minItems": 1,
    "maxItems": 50,
    "uniqueItems": True,
    "items": {"type": "string", "minLength": 1},
}
user_data: Schema = {"type": "string", "format": "base64", "maxLength": 65535}
personality: Schema = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"path": {"type": "string"}, "contents": {"type": "string", "format": "base64"}},
        "additionalProperties": False,
    },
}

# The resource APIs' (flavors, keypairs, quotas, services) integer and key types.
MAX_INT = 0x7FFFFFFF
positive_int: Schema = {"type": ["integer", "string"], "pattern": "^[0-9]+$", "minimum": 1, "maximum": MAX_INT}
non_negative_int: Schema = {"type": ["integer", "string"], "pattern": "^[0-9]+$", "minimum": 0, "maximum": MAX_INT}
quota_value: Schema = {"type": ["integer", "string"], "pattern": "^-?[0-9]+$", "minimum": -1, "maximum": MAX_INT}
# Metadata-style maps (flavor extra specs).
metadata_key = "^[a-zA-Z0-9-_:. ]{1,255}$"
NAME_ERROR = "An invalid 'name' value was provided. The name must be: " + NAME_REASON


def multi(item: Schema) -> Schema:
    """A query parameter that may repeat (values arrive as a list)."""
    return {"type": "array", "items": item}


query_param = multi({"type": "string"})
query_regex_param = multi({"type": "string", "format": "regex"})
