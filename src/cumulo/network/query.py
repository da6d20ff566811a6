"""Neutron's list queries over rendered resources: field filters, tags filters, sorting, paging, fields.

    GET /v2.0/networks?name=a&name=b&shared=false&tags=x,y&sort_key=name&sort_dir=desc&limit=2&marker=<id>&fields=id

- a filter on an attribute matches its rendered value (booleans as true/false, case-insensitive);
  repeating a key matches any of its values; unknown keys are ignored, as Neutron did before
  filter validation; `fixed_ips=ip_address=...` / `fixed_ips=subnet_id=...` filter ports;
- `tags` (all of), `tags-any`, `not-tags`, `not-tags-any` take comma lists;
- `sort_key`/`sort_dir` pairs (asc by default; the id breaks ties); an unknown key is 400;
- `limit` and `marker` page; the answer's `<collection>_links` carries `next` (and `previous` when a
  marker was given), as Neutron's pagination does; `page_reverse=true` pages backwards;
- `fields` keeps only the named attributes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from cumulo.network import faults

CONTROL = {"fields", "sort_key", "sort_dir", "limit", "marker", "page_reverse", "tags", "tags-any", "not-tags",
           "not-tags-any", "fixed_ips"}


@dataclass
class Page:
    items: list[dict[str, Any]]
    links: list[dict[str, str]] = field(default_factory=list)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def _matches(item: dict[str, Any], key: str, wanted: list[str]) -> bool:
    if key not in item:
        return True  # an attribute this resource does not have (or the caller may not see) filters nothing
    value = item[key]
    if isinstance(value, bool):
        return any(w.lower() in (_text(value), "1" if value else "0") for w in wanted)
    if isinstance(value, list):
        return any(w in [_text(v) for v in value] for w in wanted)
    return _text(value) in wanted


def _fixed_ip_filter(item: dict[str, Any], values: list[str]) -> bool:
    ips = item.get("fixed_ips") or []
    for raw in values:
        key, _, value = raw.partition("=")
        if key not in ("ip_address", "subnet_id", "ip_address_substr"):
            raise faults.HTTPBadRequest(msg=f"Invalid fixed_ips filter '{raw}'")
        if key == "ip_address_substr":
            if not any(value in ip["ip_address"] for ip in ips):
                return False
        elif not any(ip.get(key) == value for ip in ips):
            return False
    return True


def _tags_ok(tags: list[str], params: dict[str, list[str]]) -> bool:
    def sets(key: str) -> list[set[str]]:
        return [set(v.split(",")) for v in params.get(key, [])]

    have = set(tags)
    if any(not s <= have for s in sets("tags")):
        return False
    if any(not (s & have) for s in sets("tags-any")):
        return False
    if any(s <= have for s in sets("not-tags")):
        return False
    return not any(s & have for s in sets("not-tags-any"))


def _bool_param(value: str, name: str) -> bool:
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise faults.HTTPBadRequest(msg=f"Invalid value for {name}: '{value}' is not a boolean")


def apply(
    items: list[dict[str, Any]], params: Sequence[tuple[str, str]], collection: str, url: str,
) -> Page:
    """Filter, sort, page and trim `items` as `params` ask; `url` is the collection's URL for links."""
    multi: dict[str, list[str]] = {}
    for k, v in params:
        multi.setdefault(k, []).append(v)
    out = [i for i in items if all(_matches(i, k, v) for k, v in multi.items() if k not in CONTROL)]
    if "fixed_ips" in multi:
        out = [i for i in out if _fixed_ip_filter(i, multi["fixed_ips"])]
    if any(k in multi for k in ("tags", "tags-any", "not-tags", "not-tags-any")):
        out = [i for i in out if _tags_ok(i.get("tags", []), multi)]
    out = _sort(out, multi.get("sort_key", []), multi.get("sort_dir", []))
    page = _page(out, multi, collection, url, params)
    fields = [f for v in multi.get("fields", []) for f in v.split(",") if f]
    if fields:
        page.items = [{k: v for k, v in i.items() if k in fields} for i in page.items]
    return page


def _sort(items: list[dict[str, Any]], keys: list[str], dirs: list[str]) -> list[dict[str, Any]]:
    if not keys:
        if dirs:
            raise faults.HTTPBadRequest(msg="The number of sort_keys and sort_dirs must be same")
        return items
    if dirs and len(dirs) != len(keys):
        raise faults.HTTPBadRequest(msg="The number of sort_keys and sort_dirs must be same")
    dirs = dirs or ["asc"] * len(keys)
    for d in dirs:
        if d not in ("asc", "desc"):
            raise faults.HTTPBadRequest(msg=f"{d} is invalid value for sort_dir, valid value is 'asc' and 'desc'")
    if items:
        for k in keys:
            if k not in items[0]:
                raise faults.HTTPBadRequest(msg=f"{k} is invalid attribute for sort_key")
    out = sorted(items, key=lambda i: _text(i.get("id")))
    for k, d in reversed(list(zip(keys, dirs, strict=True))):
        out.sort(key=_by(k), reverse=d == "desc")
    return out


def _by(key: str) -> Any:
    return lambda item: _sort_value(item.get(key))


def _sort_value(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    if isinstance(value, bool | int | float):
        return (1, value)
    return (2, _text(value))


def _page(items: list[dict[str, Any]], multi: dict[str, list[str]], collection: str, url: str,
          params: Sequence[tuple[str, str]]) -> Page:
    limit_raw: str | None = (multi.get("limit") or [None])[-1]  # type: ignore[list-item]
    marker: str | None = (multi.get("marker") or [None])[-1]  # type: ignore[list-item]
    reverse = _bool_param(multi["page_reverse"][-1], "page_reverse") if "page_reverse" in multi else False
    limit = 0
    if limit_raw is not None:
        if not limit_raw.lstrip("-").isdigit():
            raise faults.HTTPBadRequest(msg=f"Limit must be an integer 0 or greater and not '{limit_raw}'")
        limit = int(limit_raw)
        if limit < 0:
            raise faults.HTTPBadRequest(msg=f"Limit must be an integer 0 or greater and not '{limit_raw}'")
    if marker is not None:
        ids = [i.get("id") for i in items]
        if marker not in ids:
            raise faults.HTTPNotFound(msg=f"Marker {marker} could not be found.")
        at = ids.index(marker)
        before, after = items[:at], items[at + 1:]
    else:
        before, after = [], items
    if not limit:
        return Page(list(before if reverse and marker is not None else after))
    if reverse:
        window = before[-limit:] if marker is not None else items[-limit:]
        more_before = len(before if marker is not None else items) > limit
        more_after = marker is not None
    else:
        window = after[:limit]
        more_after = len(after) > limit
        more_before = marker is not None
    base = [(k, v) for k, v in params if k not in ("marker", "page_reverse", "limit")]
    links: list[dict[str, str]] = []
    if window and more_after:
        links.append({"rel": "next", "href": f"{url}?{urlencode([*base, ('limit', str(limit)), ('marker', window[-1]['id'])])}"})
    if window and more_before:
        q = [*base, ("limit", str(limit)), ("marker", window[0]["id"]), ("page_reverse", "True")]
        links.append({"rel": "previous", "href": f"{url}?{urlencode(q)}"})
    return Page(list(window), links)
