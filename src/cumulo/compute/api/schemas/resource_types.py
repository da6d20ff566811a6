"""Shared pieces of the compute resource APIs (flavors, keypairs, quotas, admin): parameter types,
validation (the server APIs' validator, for one wording of errors), versioned field tables, links
and pagination.

Version differences stay declarative: a response is a table of `Field`s, each with the
microversion range it appears in, and request schemas are picked with `by_version`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode

from starlette.requests import Request

from cumulo.compute.api.microversion import MAX_VERSION, MIN_VERSION, Version, request_version
from cumulo.compute.api.schemas import _base as _common_schemas
from cumulo.errors import Invalid
from cumulo.web.http import base_url

T = TypeVar("T")

# CONF.api.max_limit in Nova: the largest page any list returns.
MAX_LIMIT = 1000
MAX_INT = 0x7FFFFFFF


# --- parameter types (facts from the Nova API reference) ----------------------------------------

# Shared with the server APIs: one validator, one set of formats, one wording of errors.
validate = _common_schemas.validate
name = _common_schemas.name
boolean = _common_schemas.boolean

NAME_ERROR = "An invalid 'name' value was provided. The name must be: " + _common_schemas.NAME_REASON

positive_int: dict[str, Any] = {"type": ["integer", "string"], "pattern": "^[0-9]+$", "minimum": 1, "maximum": MAX_INT}
non_negative_int: dict[str, Any] = {"type": ["integer", "string"], "pattern": "^[0-9]+$", "minimum": 0, "maximum": MAX_INT}
quota_value: dict[str, Any] = {"type": ["integer", "string"], "pattern": "^-?[0-9]+$", "minimum": -1, "maximum": MAX_INT}
# Metadata-style maps (flavor extra specs).
metadata_key = "^[a-zA-Z0-9-_:. ]{1,255}$"

TRUE_STRINGS = {"1", "t", "true", "on", "y", "yes"}
FALSE_STRINGS = {"0", "f", "false", "off", "n", "no"}


def to_bool(value: Any, *, strict: bool = True) -> bool:
    """oslo's bool_from_string: accepted spellings only, else Invalid when strict."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_STRINGS:
        return True
    if text in FALSE_STRINGS or not strict:
        return False
    raise Invalid(f"Unrecognized value '{value}', acceptable values are: '0', '1', 'f', 'false', 'n', 'no', 'off', 'on', 't', 'true', 'y', 'yes'")


# --- validation ---------------------------------------------------------------------------------

def check_query(request: Request, allowed: Sequence[str], *, strict: bool) -> None:
    """Nova ignores unknown query parameters until 2.75, then rejects them."""
    if not strict:
        return
    unknown = sorted({k for k in request.query_params.keys() if k not in allowed})
    if unknown:
        listed = ", ".join(repr(u) for u in unknown)
        verb = "were" if len(unknown) > 1 else "was"
        raise Invalid(f"Additional properties are not allowed ({listed} {verb} unexpected)")


# --- versioned views ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Field:
    """One response key, its value, and the microversions that carry it."""

    key: str
    value: Callable[[Mapping[str, Any]], Any]
    min: Version = MIN_VERSION
    max: Version = MAX_VERSION

    def applies(self, version: Version) -> bool:
        return self.min <= version <= self.max


def render(fields: Sequence[Field], obj: Mapping[str, Any], version: Version) -> dict[str, Any]:
    return {f.key: f.value(obj) for f in fields if f.applies(version)}


def keys_for(fields: Sequence[Field], version: Version) -> list[str]:
    return [f.key for f in fields if f.applies(version)]


def by_version(table: Sequence[tuple[Version, T]], version: Version) -> T:
    """The entry of the newest version not above `version` (table sorted by version)."""
    chosen = table[0][1]
    for since, item in table:
        if since <= version:
            chosen = item
    return chosen


def version_of(request: Request) -> Version:
    return request_version(request)


# --- links and pagination -----------------------------------------------------------------------

def self_links(request: Request, collection: str, ident: str) -> list[dict[str, str]]:
    base = base_url(request)
    return [
        {"rel": "self", "href": f"{base}/v2.1/{collection}/{ident}"},
        {"rel": "bookmark", "href": f"{base}/{collection}/{ident}"},
    ]


def collection_links(request: Request, count: int, collection: str, last_id: str | None) -> list[dict[str, str]]:
    """A 'next' link when the page is full, as Nova's _get_collection_links decides."""
    raw = request.query_params.get("limit")
    try:
        max_items = min(int(raw), MAX_LIMIT) if raw is not None else MAX_LIMIT
    except ValueError:
        max_items = MAX_LIMIT
    if not max_items or max_items != count or last_id is None:
        return []
    params = dict(sorted((k, v) for k, v in request.query_params.items()))
    params["marker"] = last_id
    href = f"{base_url(request)}/v2.1/{collection}?{urlencode(params)}"
    return [{"rel": "next", "href": href}]


def limit_and_marker(request: Request) -> tuple[int, str | None]:
    """Nova's get_limit_and_marker: limit defaults to and is capped by MAX_LIMIT."""
    q = request.query_params
    limit = MAX_LIMIT
    if "limit" in q:
        try:
            asked = int(q["limit"])
        except ValueError:
            raise Invalid("limit param must be an integer") from None
        if asked < 0:
            raise Invalid("limit param must be positive")
        limit = min(MAX_LIMIT, asked)
    marker = q.get("marker")
    return limit, marker
