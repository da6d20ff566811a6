"""The server list query: filters, multi-key sorting and marker (keyset) pagination in one SELECT.

GET /servers/detail?limit=1000 over 10,000 servers must stay well under half a second, so the page is
one indexed query; nothing here runs per row. Regex filters use REGEXP, which `install_sqlite_functions`
registers on SQLite connections (Python `re.search`, as Nova does on SQLite).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.compute.models import instances
from cumulo.errors import Invalid

c = instances.c

# Columns a detailed view needs (request_spec, key_data and resize flavors stay in the DB).
DETAIL_COLUMNS = (
    c.id, c.uuid, c.project_id, c.user_id, c.display_name, c.display_description, c.hostname, c.image_ref,
    c.flavor, c.key_name, c.user_data, c.metadata, c.system_metadata, c.tags, c.vm_state, c.task_state,
    c.power_state, c.locked, c.locked_by, c.locked_reason, c.host, c.node, c.availability_zone,
    c.reservation_id, c.launch_index, c.access_ip_v4, c.access_ip_v6, c.config_drive, c.progress,
    c.security_groups, c.addresses, c.launched_at, c.terminated_at, c.created_at, c.updated_at, c.deleted_at,
    c.deleted,
)
INDEX_COLUMNS = (c.id, c.uuid, c.display_name)

# API sort keys that map to a column; Nova's other valid keys have no column here and are dropped.
SORT_COLUMNS: dict[str, Any] = {
    "access_ip_v4": c.access_ip_v4, "access_ip_v6": c.access_ip_v6, "availability_zone": c.availability_zone,
    "config_drive": c.config_drive, "created_at": c.created_at, "display_description": c.display_description,
    "display_name": c.display_name, "host": c.host, "hostname": c.hostname, "image_ref": c.image_ref,
    "key_name": c.key_name, "launch_index": c.launch_index, "launched_at": c.launched_at,
    "locked_by": c.locked_by, "node": c.node, "power_state": c.power_state, "progress": c.progress,
    "project_id": c.project_id, "task_state": c.task_state, "terminated_at": c.terminated_at,
    "updated_at": c.updated_at, "user_id": c.user_id, "uuid": c.uuid, "vm_state": c.vm_state,
    "locked": c.locked, "id": c.id,
}

# Filters matched exactly (IN) and by regex, by API name.
EXACT_FILTERS: dict[str, Any] = {
    "project_id": c.project_id, "user_id": c.user_id, "image": c.image_ref, "image_ref": c.image_ref,
    "vm_state": c.vm_state, "task_state": c.task_state, "uuid": c.uuid, "host": c.host,
}
REGEX_FILTERS: dict[str, Any] = {
    "name": c.display_name, "display_name": c.display_name, "description": c.display_description,
    "display_description": c.display_description, "hostname": c.hostname, "key_name": c.key_name,
    "node": c.node, "reservation_id": c.reservation_id, "availability_zone": c.availability_zone,
    "locked_by": c.locked_by, "config_drive": c.config_drive, "access_ip_v4": c.access_ip_v4,
    "access_ip_v6": c.access_ip_v6, "launch_index": c.launch_index, "power_state": c.power_state,
    "progress": c.progress,
}


@dataclass
class ListQuery:
    project_id: str | None  # None: every project (admin all_tenants)
    deleted: bool | None = False  # None: live and deleted (changes-since/before)
    exact: dict[str, list[Any]] = field(default_factory=dict)
    regex: dict[str, str] = field(default_factory=dict)
    vm_states: list[str] | None = None
    task_states: list[str | None] | None = None
    changes_since: dt.datetime | None = None
    changes_before: dt.datetime | None = None
    flavor: str | None = None
    locked: bool | None = None
    tags: list[str] = field(default_factory=list)
    tags_any: list[str] = field(default_factory=list)
    not_tags: list[str] = field(default_factory=list)
    not_tags_any: list[str] = field(default_factory=list)
    ip: str | None = None
    ip6: str | None = None
    sort: list[tuple[str, str]] = field(default_factory=lambda: [("created_at", "desc")])
    limit: int = 1000
    marker: str | None = None
    detail: bool = True


def _regexp(pattern: str, value: Any) -> bool:
    if value is None:
        return False
    return _compiled(pattern).search(str(value)) is not None


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _ip_match(pattern: str, addresses: str | None, version: int) -> bool:
    if not addresses:
        return False
    try:
        nets = json.loads(addresses)
    except ValueError:
        return False
    rx = _compiled(pattern)
    for ips in (nets or {}).values():
        for ip in ips or []:
            if ip.get("version") == version and rx.search(str(ip.get("addr", ""))):
                return True
    return False


def install_sqlite_functions(dbapi_conn: Any, _record: Any = None) -> None:
    """Connect hook: REGEXP and the ip filter helper, implemented in Python."""
    dbapi_conn.create_function("regexp", 2, _regexp, deterministic=True)
    dbapi_conn.create_function("cumulo_ip_match", 3, _ip_match, deterministic=True)


def normalise_sort(keys: list[str], dirs: list[str]) -> list[tuple[str, str]]:
    """Nova's process_sort_params: pair keys with dirs, fill in defaults, add created_at and id."""
    for d in dirs:
        if d not in ("asc", "desc"):
            raise Invalid("Unknown sort direction, must be 'desc' or 'asc'")
    default_dir = dirs[0] if dirs else "desc"
    if len(dirs) > len(keys):
        raise Invalid("Sort direction size exceeds sort key size")
    pairs = [(k, dirs[i] if i < len(dirs) else default_dir) for i, k in enumerate(keys)]
    pairs = [(k, d) for k, d in pairs if k in SORT_COLUMNS]
    for key in ("created_at", "id"):
        if key not in [k for k, _ in pairs]:
            pairs.append((key, default_dir))
    # uuid and id are unique, so anything after them cannot change the order.
    out: list[tuple[str, str]] = []
    for k, d in pairs:
        out.append((k, d))
        if k in ("id", "uuid"):
            break
    return out


def _has_tag(dialect: str, tag: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import JSONB

        return sa.cast(c.tags, JSONB).contains([tag])
    each = sa.func.json_each(c.tags).table_valued("value")
    return sa.exists(sa.select(sa.literal(1)).select_from(each).where(each.c.value == tag))


def _regex_clause(dialect: str, col: Any, pattern: str) -> Any:
    text_col = col if isinstance(col.type, sa.String) else sa.cast(col, sa.String)
    if dialect == "postgresql":
        return text_col.op("~")(pattern)
    return text_col.op("REGEXP")(pattern)


def _ip_clause(dialect: str, pattern: str, version: int) -> Any:
    if dialect == "sqlite":
        return sa.func.cumulo_ip_match(pattern, sa.cast(c.addresses, sa.Text), version).is_(True)
    return sa.cast(c.addresses, sa.Text).op("~")(pattern)


def where_clauses(q: ListQuery, dialect: str) -> list[Any]:
    out: list[Any] = []
    if q.project_id is not None:
        out.append(c.project_id == q.project_id)
    if q.deleted is not None:
        out.append(c.deleted.is_(q.deleted))
    for name, values in q.exact.items():
        col = EXACT_FILTERS[name]
        named = [val for val in values if val is not None]
        parts = [col.in_(named)] if named else []
        if len(named) != len(values):
            parts.append(col.is_(None))
        out.append(sa.or_(*parts) if parts else sa.false())
    for name, pattern in q.regex.items():
        out.append(_regex_clause(dialect, REGEX_FILTERS[name], pattern))
    if q.vm_states is not None:
        out.append(c.vm_state.in_(q.vm_states))
    if q.task_states is not None:
        named_tasks = [t for t in q.task_states if t is not None]
        clauses = [c.task_state.in_(named_tasks)] if named_tasks else []
        if None in q.task_states:
            clauses.append(c.task_state.is_(None))
        out.append(sa.or_(*clauses) if clauses else sa.false())
    if q.changes_since is not None:
        out.append(c.updated_at >= q.changes_since)
    if q.changes_before is not None:
        out.append(c.updated_at <= q.changes_before)
    if q.flavor is not None:
        out.append(c.flavor["flavorid"].as_string() == q.flavor)
    if q.locked is not None:
        out.append(c.locked.is_(q.locked))
    if q.tags:
        out.append(sa.and_(*(_has_tag(dialect, t) for t in q.tags)))
    if q.tags_any:
        out.append(sa.or_(*(_has_tag(dialect, t) for t in q.tags_any)))
    if q.not_tags:
        out.append(sa.not_(sa.and_(*(_has_tag(dialect, t) for t in q.not_tags))))
    if q.not_tags_any:
        out.append(sa.not_(sa.or_(*(_has_tag(dialect, t) for t in q.not_tags_any))))
    if q.ip is not None:
        out.append(_ip_clause(dialect, q.ip, 4))
    if q.ip6 is not None:
        out.append(_ip_clause(dialect, q.ip6, 6))
    return out


def _order(col: Any, direction: str, explicit_nulls: bool) -> Any:
    # NULLs sort first ascending and last descending (SQLite's default, made explicit elsewhere).
    if direction == "asc":
        return col.asc().nulls_first() if explicit_nulls else col.asc()
    return col.desc().nulls_last() if explicit_nulls else col.desc()


def _after_marker(sort: list[tuple[str, str]], marker: dict[str, Any]) -> Any:
    """Rows strictly after the marker row in the given order (NULL-aware keyset condition)."""
    ors: list[Any] = []
    equal_so_far: list[Any] = []
    for key, direction in sort:
        col = SORT_COLUMNS[key]
        value = marker[key]
        if direction == "asc":
            after = col.is_not(None) if value is None else col > value
        else:
            after = sa.false() if value is None else sa.or_(col < value, col.is_(None))
        ors.append(sa.and_(*equal_so_far, after))
        equal_so_far.append(col.is_(None) if value is None else col == value)
    return sa.or_(*ors)


async def list_instances(conn: AsyncConnection, q: ListQuery) -> list[dict[str, Any]]:
    dialect = conn.dialect.name
    clauses = where_clauses(q, dialect)
    if q.limit == 0:
        return []
    if q.marker is not None:
        mq = sa.select(*(SORT_COLUMNS[k] for k, _ in q.sort)).where(c.uuid == q.marker)
        if q.project_id is not None:
            mq = mq.where(c.project_id == q.project_id)
        row = (await conn.execute(mq)).first()
        if row is None:
            raise Invalid(f"marker [{q.marker}] not found")
        clauses.append(_after_marker(q.sort, dict(zip([k for k, _ in q.sort], row, strict=True))))
    explicit = dialect != "sqlite"
    stmt = (
        sa.select(*(DETAIL_COLUMNS if q.detail else INDEX_COLUMNS))
        .where(*clauses)
        .order_by(*(_order(SORT_COLUMNS[k], d, explicit and SORT_COLUMNS[k].nullable) for k, d in q.sort))
        .limit(q.limit)
    )
    result = await conn.execute(stmt)
    return [dict(r) for r in result.mappings()]
