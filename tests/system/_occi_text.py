"""The text renderings of OCCI 1.2 (GFD.229), for the test-side client (_occi_client.py): the
Category, Link, X-OCCI-Attribute and X-OCCI-Location field values, split, parsed and rendered per
the ABNF of GFD.229 §4, from a text/plain body or text/occi headers. Written from the
specification, never from cumulo.occi.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

TEXT_FIELDS = ("Category", "Link", "X-OCCI-Attribute", "X-OCCI-Location")


def split_id(type_id: str) -> tuple[str, str]:
    """A type identifier (scheme + term) split after its '#'."""
    i = type_id.rindex("#") + 1
    return type_id[:i], type_id[i:]


def split_list(value: str, sep: str = ",") -> list[str]:
    """Split an RFC 7230 list on `sep`, outside quoted strings and <...> URIs; items stripped."""
    out: list[str] = []
    buf: list[str] = []
    quoted = angle = escaped = False
    for ch in value:
        if escaped:
            buf.append(ch)
            escaped = False
            continue
        if quoted and ch == "\\":
            buf.append(ch)
            escaped = True
            continue
        if ch == '"' and not angle:
            quoted = not quoted
        elif ch == "<" and not quoted:
            angle = True
        elif ch == ">" and not quoted:
            angle = False
        if ch == sep and not quoted and not angle:
            out.append("".join(buf).strip())
            buf = []
            continue
        buf.append(ch)
    if quoted:
        raise ValueError(f"unterminated quoted string in {value!r}")
    tail = "".join(buf).strip()
    if tail:
        out.append(tail)
    return [x for x in out if x]


def unquote(value: str) -> str:
    """A quoted-string's content (backslash escapes undone); anything else as is."""
    v = value.strip()
    if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
        return re.sub(r"\\(.)", r"\1", v[1:-1])
    return v


def quote(value: str) -> str:
    if "\r" in value or "\n" in value:  # a text field is one line (RFC 7230 quoted-string)
        raise ValueError(f"a line break cannot travel in a text rendering: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_value(raw: str) -> Any:
    """An attribute value (GFD.229 Attribute ABNF): a quoted string, a number, or true/false."""
    v = raw.strip()
    if v.startswith('"'):
        return unquote(v)
    if v in ("true", "false"):
        return v == "true"
    if re.fullmatch(r"[+-]?\d+", v):
        return int(v)
    if re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?", v):
        return float(v)
    raise ValueError(f"not an OCCI attribute value: {raw!r}")


def render_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (dict, list)):
        return quote(json.dumps(value))
    return quote(str(value))


def _params(parts: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in parts:
        if not p:
            continue
        name, eq, val = p.partition("=")
        if not eq:
            raise ValueError(f"parameter without '=': {p!r}")
        out[name.strip()] = val.strip()
    return out


@dataclass
class Category:
    """A Category field value (kind, mixin or action), or a JSON category object."""

    term: str
    scheme: str
    cls: str = ""
    title: str = ""
    rel: list[str] = field(default_factory=list)  # text: the rel; JSON: parent or depends
    applies: list[str] = field(default_factory=list)
    location: str | None = None
    # name -> properties: text gives {"immutable", "required"} flags; JSON gives the description object
    attributes: dict[str, Any] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.scheme + self.term


def parse_category(value: str) -> Category:
    """One category-value: `term; scheme="…"; class="kind"[; title=…][; rel=…][; location=…]
    [; attributes="a b{immutable required}"][; actions="…"]`."""
    parts = split_list(value, ";")
    if not parts:
        raise ValueError("empty category")
    term = parts[0].strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", term):
        raise ValueError(f"bad term {term!r}")
    params = _params(parts[1:])
    if "scheme" not in params or "class" not in params:
        raise ValueError(f"category without scheme or class: {value!r}")
    cat = Category(term=term, scheme=unquote(params["scheme"]), cls=unquote(params["class"]),
                   title=unquote(params.get("title", '""')))
    if "rel" in params:
        cat.rel = unquote(params["rel"]).split()
    if "location" in params:
        cat.location = unquote(params["location"])
    if "attributes" in params:
        for m in re.finditer(r"([A-Za-z0-9][A-Za-z0-9_.\-]*)(\{([^}]*)\})?", unquote(params["attributes"])):
            cat.attributes[m.group(1)] = set((m.group(3) or "").split())
    if "actions" in params:
        cat.actions = unquote(params["actions"]).split()
    return cat


def render_category(type_id: str, cls: str, **extra: str) -> str:
    scheme, term = split_id(type_id)
    out = f'{term}; scheme="{scheme}"; class="{cls}"'
    for k, v in extra.items():
        out += f"; {k}={quote(v)}"
    return out


@dataclass
class LinkValue:
    """A Link field value: a link to a resource (with its link's category, self and attributes) or an
    action link (`<…?action=term>; rel="<action id>"`)."""

    target: str
    rel: list[str]
    self_: str | None = None
    category: list[str] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def is_action(self) -> bool:
        return "?action=" in self.target


def parse_link(value: str) -> LinkValue:
    parts = split_list(value, ";")
    if not parts or not (parts[0].startswith("<") and parts[0].endswith(">")):
        raise ValueError(f"link value without <URI>: {value!r}")
    params = _params(parts[1:])
    if "rel" not in params:
        raise ValueError(f"link without rel: {value!r}")
    link = LinkValue(target=parts[0][1:-1], rel=unquote(params.pop("rel")).split())
    if "self" in params:
        link.self_ = unquote(params.pop("self"))
    if "category" in params:
        link.category = unquote(params.pop("category")).split()
    link.attributes = {k: parse_value(v) for k, v in params.items()}
    return link


def parse_attribute(value: str) -> tuple[str, Any]:
    name, eq, raw = value.partition("=")
    if not eq or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", name.strip()):
        raise ValueError(f"bad attribute {value!r}")
    return name.strip(), parse_value(raw)


def text_fields(body: str) -> dict[str, list[str]]:
    """The field values of a text/plain body by field name (a value list on one line is split;
    a backslash at a line's end continues it, as the spec's examples are printed)."""
    body = re.sub(r"\\\r?\n\s*", " ", body)
    out: dict[str, list[str]] = {f: [] for f in TEXT_FIELDS}
    for line in body.splitlines():
        line = line.strip()
        if not line or line == "OK":
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise ValueError(f"text/plain line without a field name: {line!r}")
        key = next((f for f in TEXT_FIELDS if f.lower() == name.strip().lower()), None)
        if key is None:
            raise ValueError(f"unknown OCCI field {name!r}")
        out[key] += split_list(value)
    return out


def header_fields(headers: httpx.Headers) -> dict[str, list[str]]:
    """The same from a text/occi response's headers (repeated and comma-joined forms)."""
    out: dict[str, list[str]] = {}
    for f in TEXT_FIELDS:
        vals: list[str] = []
        for v in headers.get_list(f):
            vals += split_list(v)
        out[f] = vals
    return out


