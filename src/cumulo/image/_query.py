"""GET /v2/images: parsing Glance's query language and turning it into SQL.

Filters follow Glance's DB API: `in:`/`eq:` on name, id, status and the formats; gt/gte/eq/neq/
lt/lte on created_at/updated_at; size_min/size_max; repeated `tag` (all must match); unknown keys
compare extra properties. Pagination is keyset on the sort keys plus created_at and id, with
NULL ordered as the smallest value on every database.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.image._schemas import SORT_KEYS
from cumulo.image.models import image_members, image_properties, image_tags, images

DEFAULT_LIMIT = 25  # Glance's limit_param_default
MAX_LIMIT = 1000  # Glance's api_limit_max

_LIST_OPERATORS = ("name", "id", "status", "container_format", "disk_format")
_TIME_OPERATORS = ("gt", "gte", "eq", "neq", "lt", "lte")
_INT_COLUMNS = ("min_ram", "min_disk", "size", "virtual_size")
_STR_COLUMNS = ("owner", "checksum", "os_hash_value", "os_hash_algo")


@dataclass
class ListQuery:
    filters: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    member_status: str = "accepted"
    marker: str | None = None
    limit: int = DEFAULT_LIMIT
    sort: list[tuple[str, str]] = field(default_factory=lambda: [("created_at", "desc")])


def _sort_key(key: str) -> str:
    if key not in SORT_KEYS:
        raise errors.Invalid(f"Invalid sort key: {key}. It must be one of the following: {', '.join(SORT_KEYS)}.")
    return key


def _sort_dir(direction: str) -> str:
    if direction not in ("asc", "desc"):
        raise errors.Invalid(f"Invalid sort direction: {direction}")
    return direction


def parse(params: Sequence[tuple[str, str]]) -> ListQuery:
    """Glance's RequestDeserializer.index over the (repeatable) query parameters."""
    q = ListQuery()
    sort_keys: list[str] = []
    sort_dirs: list[str] = []
    new_sort: str | None = None
    for key, value in params:
        if key == "limit":
            try:
                limit = int(value)
            except ValueError:
                raise errors.Invalid("limit param must be an integer") from None
            if limit < 0:
                raise errors.Invalid("limit param must be positive")
            q.limit = min(limit, MAX_LIMIT)
        elif key == "marker":
            q.marker = value
        elif key == "member_status":
            if value not in ("pending", "accepted", "rejected", "all"):
                raise errors.Invalid(f"Invalid status: {value}")
            q.member_status = value
        elif key == "tag":
            q.tags.append(value.strip())
        elif key == "sort":
            new_sort = value
        elif key == "sort_key":
            sort_keys.append(_sort_key(value.strip()))
        elif key == "sort_dir":
            sort_dirs.append(_sort_dir(value.strip()))
        else:
            q.filters[key] = value
    if new_sort is not None:
        if sort_keys or sort_dirs:
            raise errors.Invalid("Old and new sorting syntax cannot be combined")
        q.sort = []
        for part in new_sort.strip().split(","):
            k, _sep, d = part.partition(":")
            q.sort.append((_sort_key(k.strip()), _sort_dir(d.strip() or "desc")))
    elif sort_keys:
        if len(sort_dirs) > 1 and len(sort_dirs) != len(sort_keys):
            raise errors.Invalid("Number of sort dirs does not match the number of sort keys")
        dirs = sort_dirs if len(sort_dirs) > 1 else [sort_dirs[0] if sort_dirs else "desc"] * len(sort_keys)
        q.sort = list(zip(sort_keys, dirs, strict=True))
    elif sort_dirs:
        q.sort = [("created_at", sort_dirs[0])]
    visibility = q.filters.get("visibility")
    if visibility is not None and visibility not in ("community", "public", "private", "shared", "all"):
        raise errors.Invalid(f"Invalid visibility value: {visibility}")
    if "changes-since" in q.filters:
        raise errors.Invalid('The "changes-since" filter is no longer available on v2.')
    for flag in ("os_hidden", "protected"):
        if flag in q.filters and q.filters[flag].lower() not in ("true", "false"):
            raise errors.Invalid(
                f"Invalid value '{q.filters[flag]}' for '{flag}' filter. Valid values are 'true' or 'false'."
            )
    return q


def _split_op(expression: str, *, times: bool = False) -> tuple[str, str]:
    """Glance's split_filter_op: 'op:value', or 'eq' when there is no operator (or a bare time)."""
    left, sep, right = expression.partition(":")
    if not sep:
        return "eq", expression
    if times and _parse_time(expression, quiet=True) is not None:
        return "eq", expression
    return left, right


def _split_quoted(value: str) -> list[str]:
    """Comma-separated values where a value may be double-quoted to contain commas."""
    out: list[str] = []
    cur, quoted, i = "", False, 0
    while i < len(value):
        ch = value[i]
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            out.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    if quoted:
        raise errors.Invalid(f"Invalid filter value {value}. The quote is not closed.")
    out.append(cur)
    return out


def _parse_time(text: str, *, quiet: bool = False) -> dt.datetime | None:
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        if quiet:
            return None
        raise errors.Invalid(f'Bad "{text}" query filter format. Use ISO 8601 DateTime notation.') from None
    if value.tzinfo is not None:
        try:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        except OverflowError:
            raise errors.Invalid(f'Bad "{text}" query filter: the date is out of range.') from None
    return value


def _compare(col: Any, op: str, value: Any) -> Any:
    ops = {
        "gt": col > value, "gte": col >= value, "eq": col == value,
        "neq": col != value, "lt": col < value, "lte": col <= value,
    }
    return ops[op]


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise errors.Invalid("Unable to filter on a range with a non-numeric value.") from None


def visible_clause(ctx: RequestContext, member_status: str = "accepted") -> Any:
    """Images `ctx` may see in a listing before the visibility filter (Glance's _select_images_query)."""
    if ctx.is_admin:
        return sa.true()
    project = ctx.project_id
    member_q = sa.select(image_members.c.image_id).where(image_members.c.member == project)
    if member_status != "all":
        member_q = member_q.where(image_members.c.status == member_status)
    return sa.or_(
        images.c.visibility.in_(("public", "community")),
        images.c.owner == project,
        sa.and_(images.c.visibility == "shared", images.c.id.in_(member_q)),
    )


def where_clauses(ctx: RequestContext, q: ListQuery) -> list[Any]:
    f = dict(q.filters)
    conds: list[Any] = [
        images.c.deleted.is_(False),
        images.c.status != "killed",
        visible_clause(ctx, q.member_status),
        images.c.os_hidden.is_(f.pop("os_hidden", "false").lower() == "true"),
    ]
    visibility = f.pop("visibility", None)
    if visibility is not None:
        if visibility != "all":
            conds.append(images.c.visibility == visibility)
    else:
        # Community images of other projects appear only when asked for by visibility.
        conds.append(sa.or_(images.c.owner == ctx.project_id, images.c.visibility != "community"))
    if "protected" in f:
        conds.append(images.c.protected.is_(f.pop("protected").lower() == "true"))
    for key in ("size_min", "size_max"):
        if key in f:
            n = _int(f.pop(key))
            conds.append(images.c.size >= n if key == "size_min" else images.c.size <= n)
    for key in ("created_at", "updated_at"):
        if key in f:
            op, text = _split_op(f.pop(key), times=True)
            if op not in _TIME_OPERATORS:
                raise errors.Invalid(f"Invalid operator {op} for {key} filter.")
            stamp = _parse_time(text)
            conds.append(_compare(images.c[key], op, stamp))
    for key in _LIST_OPERATORS:
        if key in f:
            op, value = _split_op(f.pop(key))
            if op == "in":
                conds.append(images.c[key].in_(_split_quoted(value)))
            elif op == "eq":
                conds.append(images.c[key] == value)
            else:
                raise errors.Invalid(f"Unable to filter by unknown operator '{op}'.")
    for tag in q.tags:
        conds.append(images.c.id.in_(sa.select(image_tags.c.image_id).where(image_tags.c.value == tag)))
    for key, value in f.items():
        if key in _INT_COLUMNS:
            conds.append(images.c[key] == _int(value))
        elif key in _STR_COLUMNS:
            conds.append(images.c[key] == value)
        else:
            prop = sa.select(image_properties.c.image_id).where(
                image_properties.c.name == key, image_properties.c.value == value
            )
            conds.append(images.c.id.in_(prop))
    return conds


def full_sort(q: ListQuery) -> list[tuple[str, str]]:
    """The requested sort plus created_at and id as tie-breakers (Glance appends both)."""
    sort = list(q.sort)
    default_dir = sort[0][1] if len({d for _k, d in sort}) == 1 else "desc"
    for key in ("created_at", "id"):
        if key not in [k for k, _d in sort]:
            sort.append((key, default_dir))
    return sort


def order_by(sort: list[tuple[str, str]]) -> list[Any]:
    out = []
    for key, direction in sort:
        col = images.c[key]
        out.append(col.asc().nulls_first() if direction == "asc" else col.desc().nulls_last())
    return out


def after_marker(sort: list[tuple[str, str]], marker: dict[str, Any]) -> Any:
    """Rows strictly after `marker` in `sort` order, with NULL as the smallest value."""

    def beyond(col: Any, value: Any, direction: str) -> Any:
        if direction == "asc":
            return col.is_not(None) if value is None else col > value
        return sa.false() if value is None else sa.or_(col < value, col.is_(None))

    def equal(col: Any, value: Any) -> Any:
        return col.is_(None) if value is None else col == value

    ors = []
    for i, (key, direction) in enumerate(sort):
        ands = [equal(images.c[k], marker[k]) for k, _d in sort[:i]]
        ands.append(beyond(images.c[key], marker[key], direction))
        ors.append(sa.and_(*ands))
    return sa.or_(*ors)
