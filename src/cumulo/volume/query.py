"""Cinder's list parameters: filters, `sort=key:dir,...` (or sort_key/sort_dir), limit, marker,
offset; shared by volumes, snapshots, backups and attachments.

Lists are filtered and sorted in Python over the caller's rows (a project holds few volumes);
a page is `limit` items after the marker's, at most MAX_LIMIT (Cinder's osapi_max_limit). Bad
values are 400s naming the parameter; an unknown marker is 404 as in Cinder (MarkerNotFound).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cumulo import errors

MAX_LIMIT = 1000

# Parameters every list takes that are not filters.
PAGING = {"limit", "marker", "offset", "sort", "sort_key", "sort_dir", "all_tenants", "with_count"}


@dataclass
class Page:
    items: list[dict[str, Any]]
    more: bool  # a next page exists (the answer carries a "next" link)
    count: int  # matches before paging (3.45 with_count)


def _int(value: str, name: str, minimum: int = 0) -> int:
    try:
        n = int(value)
    except ValueError:
        raise errors.Invalid(f"Invalid input received: {name} param must be an integer") from None
    if n < minimum:
        raise errors.Invalid(f"Invalid input received: {name} param must be positive")
    return n


SORT_ALIASES = {"display_name": "name", "display_description": "description"}


def sort_keys(params: dict[str, str], allowed: Sequence[str]) -> list[tuple[str, str]]:
    """[(key, "asc"|"desc")] from `sort=k1:d1,k2` or sort_key/sort_dir; default created_at desc, id desc."""
    out: list[tuple[str, str]] = []
    if "sort" in params:
        if "sort_key" in params or "sort_dir" in params:
            raise errors.Invalid("Invalid input received: The 'sort_key' and 'sort_dir' parameters are deprecated and cannot be used with the 'sort' parameter.")
        for part in params["sort"].split(","):
            key, _, direction = part.strip().partition(":")
            out.append((key.strip(), (direction or "desc").strip().lower()))
    elif "sort_key" in params or "sort_dir" in params:
        out.append((params.get("sort_key", "created_at"), params.get("sort_dir", "desc").lower()))
    # Cinder's database columns are display_name/display_description: it sorts by either spelling
    out = [(SORT_ALIASES.get(key, key), direction) for key, direction in out]
    for key, direction in out:
        if key not in allowed:
            raise errors.Invalid(f"Invalid input received: Invalid sort key: {key[:64]}")
        if direction not in ("asc", "desc"):
            raise errors.Invalid(f"Invalid input received: Unknown sort direction, must be 'desc' or 'asc': {direction[:16]}")
    keys = [k for k, _ in out]
    for key in ("created_at", "id"):
        if key not in keys:
            out.append((key, out[-1][1] if out else "desc"))
    return out


def _sortable(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    if isinstance(value, dt.datetime):
        return (1, value.isoformat())
    if isinstance(value, bool):
        return (1, int(value))
    return (1, value)


def apply(
    items: list[dict[str, Any]],
    params: dict[str, str],
    *,
    allowed_sort: Sequence[str],
    filters: dict[str, Callable[[dict[str, Any], str], bool]],
) -> Page:
    """Filter (every known filter parameter must match), sort, then page `items`."""
    for name, value in params.items():
        if "\x00" in name or "\x00" in value:
            raise errors.Invalid("Invalid input received: a NUL character is not allowed in the query")
    for name, value in params.items():
        if name in PAGING:
            continue
        match = filters.get(name)
        if match is None:
            continue  # Cinder ignores filters it does not know unless resource filters are configured
        items = [i for i in items if match(i, value)]
    for key, direction in reversed(sort_keys(params, allowed_sort)):
        items = sorted(items, key=lambda i: _sortable(i.get(key)), reverse=direction == "desc")
    count = len(items)
    if "marker" in params:
        marker = params["marker"]
        idx = next((n for n, i in enumerate(items) if i["id"] == marker), None)
        if idx is None:
            raise errors.NotFound(f"Marker {marker[:64]} could not be found.")
        items = items[idx + 1:]
    if "offset" in params:
        items = items[_int(params["offset"], "offset"):]
    limit = MAX_LIMIT
    if "limit" in params:
        limit = min(_int(params["limit"], "limit"), MAX_LIMIT)
    # Cinder links a next page whenever this one is full (_get_collection_links), even if it is the last
    more = limit > 0 and len(items) >= limit
    return Page(items[:limit], more, count)


def metadata_filter(field: str) -> Callable[[dict[str, Any], str], bool]:
    """`metadata={"k": "v"}` (JSON, or Python's dict repr that cinderclient sends)."""

    def match(item: dict[str, Any], value: str) -> bool:
        try:
            wanted = json.loads(value)
        except ValueError:
            try:
                wanted = json.loads(value.replace("'", '"'))
            except ValueError:
                raise errors.Invalid(f"Invalid input received: Invalid filter {field}: {value[:64]}") from None
        if not isinstance(wanted, dict):
            raise errors.Invalid(f"Invalid input received: Invalid filter {field}: {value[:64]}")
        have = item.get(field) or {}
        return all(have.get(str(k)) == str(v) for k, v in wanted.items())

    return match


def equals(field: str) -> Callable[[dict[str, Any], str], bool]:
    def match(item: dict[str, Any], value: str) -> bool:
        have = item.get(field)
        if isinstance(have, bool):
            return have == (value.strip().lower() in ("true", "1", "yes", "t"))
        return str(have) == value if have is not None else value in ("", "None", "null")

    return match
