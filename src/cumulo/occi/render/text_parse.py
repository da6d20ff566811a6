"""Parsing the OCCI text renderings (GFD.229 §4 ABNF; GFD.185 1.1 forms accepted) from a text/plain
body or text/occi headers into the neutral request shapes of `occi.model`.

Leniencies for 1.1 and real clients (the spec's ABNF is stricter): `class` may be unquoted, a
trailing `;` is accepted, a Category without class in an entity request is classified by the static
registry (a kind if known as one, else a mixin), unquoted enum tokens are strings, and obs-folded
lines continue the previous one.
"""

from __future__ import annotations

from dataclasses import dataclass

from cumulo import errors
from cumulo.occi import categories
from cumulo.occi.model import (
    Action,
    ActionRequest,
    Attribute,
    Category,
    EntityRequest,
    Kind,
    LinkRequest,
    Mixin,
    split_location,
)
from cumulo.occi.render.text_syntax import (
    ATTR_NAME_RE,
    TERM_RE,
    parse_params,
    parse_scalar,
    short,
    split_outside,
    unquote,
)

_NAMES = {"category": "Category", "link": "Link", "x-occi-attribute": "X-OCCI-Attribute",
          "x-occi-location": "X-OCCI-Location"}
MAX_ID = 2048


def _line(name: str, value: str) -> str:
    return f"{_NAMES.get(name, name)}: {value}"


def _check_uri(value: str, what: str, line: str) -> str:
    if not value or len(value) > MAX_ID or any(c.isspace() or ord(c) < 0x20 for c in value):
        raise errors.Invalid(f"malformed {what} in {short(line)}")
    return value


@dataclass
class ParsedCategory:
    category: Category
    cls: str | None  # "kind" | "mixin" | "action" | None (not given)


def parse_category(value: str) -> ParsedCategory:
    """One category-value: term; scheme="..."; class="..." [; title; rel; location; attributes; actions]."""
    line = _line("category", value)
    parts = split_outside(value, ";", line)
    term = parts[0].strip()
    if not TERM_RE.match(term) or len(term) > 256:
        raise errors.Invalid(f"malformed category term in {short(line)}")
    params = parse_params(parts[1:], line)
    scheme = params.get("scheme")
    if not scheme:
        raise errors.Invalid(f"category without scheme in {short(line)}")
    _check_uri(scheme, "scheme", line)
    cls = params.get("class")
    if cls is not None:
        cls = cls.lower()
        if cls not in ("kind", "mixin", "action"):
            raise errors.Invalid(f"unknown category class {cls!r} in {short(line)}")
    title = params.get("title", "")
    location = params.get("location")
    if location is not None:
        _check_uri(location, "location", line)
    rel = [r for r in params.get("rel", "").split() if r]
    for r in rel:
        _check_uri(r, "rel", line)
    attributes = tuple(_attribute_defs(params.get("attributes", ""), line))
    actions = tuple(_check_uri(a, "action", line) for a in params.get("actions", "").split())
    cat: Category
    if cls == "kind":
        cat = Kind(scheme, term, title, attributes, parent=rel[0] if rel else None, actions=actions, location=location)
    elif cls == "mixin":
        # GFD.229 §4.5.2: rel carries Mixin.depends (1.1 clients used it for applies too; both kept as depends).
        cat = Mixin(scheme, term, title, attributes, depends=tuple(rel), actions=actions, location=location)
    elif cls == "action":
        cat = Action(scheme, term, title, attributes)
    else:
        cat = Category(scheme, term, title, attributes)
    return ParsedCategory(cat, cls)


def _attribute_defs(text: str, line: str) -> list[Attribute]:
    out: list[Attribute] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        j = i
        while j < n and not text[j].isspace() and text[j] != "{":
            j += 1
        name = text[i:j]
        props: list[str] = []
        if j < n and text[j] == "{":
            k = text.find("}", j)
            if k < 0:
                raise errors.Invalid(f"unterminated attribute properties in {short(line)}")
            props = text[j + 1 : k].split()
            j = k + 1
        if not ATTR_NAME_RE.match(name) or any(p not in ("immutable", "required") for p in props):
            raise errors.Invalid(f"malformed attribute definition {short(name, 40)} in {short(line)}")
        out.append(Attribute(name, mutable="immutable" not in props, required="required" in props))
        if len(out) > 1000:
            raise errors.Invalid(f"too many attribute definitions in {short(line)}")
        i = j
    return out


def parse_attribute(value: str) -> tuple[str, object]:
    line = _line("x-occi-attribute", value)
    name, sep, raw = value.partition("=")
    name = name.strip()
    if not sep or not ATTR_NAME_RE.match(name) or len(name) > 256:
        raise errors.Invalid(f"malformed attribute {short(line)}")
    raw = raw.strip()
    if raw.endswith(";") and split_outside(raw, ";", line)[1:] == [""]:
        raw = raw[:-1]  # GFD.185's examples end attributes with ";" too
    if not raw.strip():
        raise errors.Invalid(f"attribute without a value in {short(line)}")
    return name, parse_scalar(raw, line)


def parse_link(value: str) -> LinkRequest | None:
    """An inline link (None for an action link, which a client may echo)."""
    line = _line("link", value)
    parts = split_outside(value, ";", line)
    target = parts[0].strip()
    if len(target) < 3 or target[0] != "<" or target[-1] != ">":
        raise errors.Invalid(f"malformed link target in {short(line)}: expected <URI>")
    uri = _check_uri(target[1:-1].strip(), "link target", line)
    link = LinkRequest(target=uri)
    for p in parts[1:]:
        if not p:
            continue
        key, sep, raw = p.partition("=")
        key = key.strip()
        if not sep or not key or not raw.strip():
            raise errors.Invalid(f"malformed link parameter {short(p, 40)} in {short(line)}")
        lkey = key.lower()
        if lkey in ("rel", "self", "category"):
            raw = raw.strip()
            text = unquote(raw, line) if raw.startswith('"') else raw
            if lkey == "rel":
                rels = text.split()
                if not rels:
                    raise errors.Invalid(f"empty rel in {short(line)}")
                if "?action=" in uri or any("/action#" in r for r in rels):
                    return None
                link.attributes["occi.core.target.kind"] = _check_uri(rels[0], "rel", line)
            elif lkey == "self":
                try:
                    link.id = split_location(_check_uri(text, "self", line))[1]
                except ValueError:
                    link.id = None
            else:
                ids = [_check_uri(c, "category", line) for c in text.split()]
                for cid in ids:
                    if cid in categories.KINDS and link.kind is None:
                        link.kind = cid
                    else:
                        link.mixins.append(cid)
        else:
            name, val = parse_attribute(p)
            if name in link.attributes:
                raise errors.Invalid(f"attribute {name} given twice in {short(line)}")
            link.attributes[name] = val
    if "?action=" in uri:
        return None
    return link


def _kind_or_mixin(pc: ParsedCategory) -> str:
    if pc.cls is not None:
        return pc.cls
    cid = pc.category.id
    if cid in categories.KINDS:
        return "kind"
    if cid in categories.ACTIONS:
        return "action"
    return "mixin"


def entity_request(fields: list[tuple[str, str]]) -> EntityRequest:
    req = EntityRequest()
    for name, value in fields:
        if name == "category":
            pc = parse_category(value)
            cls = _kind_or_mixin(pc)
            if cls == "kind":
                if req.kind is not None and req.kind != pc.category.id:
                    raise errors.Invalid(f"more than one kind in the request: {short(_line(name, value))}")
                req.kind = pc.category.id
            elif cls == "mixin":
                if pc.category.id not in req.mixins:
                    req.mixins.append(pc.category.id)
            else:
                raise errors.Invalid(f"an action category in an entity rendering: {short(_line(name, value))}")
        elif name == "x-occi-attribute":
            attr, val = parse_attribute(value)
            if attr in req.attributes:
                raise errors.Invalid(f"attribute {attr} given twice")
            req.attributes[attr] = val
        elif name == "link":
            link = parse_link(value)
            if link is not None:
                req.links.append(link)
    return req


def action_request(fields: list[tuple[str, str]]) -> ActionRequest:
    """The action category and its attributes; action "" when the client sent no category (the
    API then takes the action from ?action=)."""
    req = ActionRequest(action="")
    for name, value in fields:
        if name == "category":
            pc = parse_category(value)
            if _kind_or_mixin(pc) != "action":
                raise errors.Invalid(f"expected an action category: {short(_line(name, value))}")
            if req.action and req.action != pc.category.id:
                raise errors.Invalid("more than one action in the request")
            req.action = pc.category.id
        elif name == "x-occi-attribute":
            attr, val = parse_attribute(value)
            if attr in req.attributes:
                raise errors.Invalid(f"attribute {attr} given twice")
            req.attributes[attr] = val
    return req


def category_list(fields: list[tuple[str, str]], *, partial: bool) -> list[Category]:
    out: list[Category] = []
    for name, value in fields:
        if name != "category":
            continue
        pc = parse_category(value)
        if pc.cls is None and not partial:
            raise errors.Invalid(f"category without class in {short(_line(name, value))}")
        out.append(pc.category)
    return out


def location_list(fields: list[tuple[str, str]]) -> list[str]:
    out: list[str] = []
    for name, value in fields:
        if name == "x-occi-location":
            out.append(_check_uri(value.strip(), "location", _line(name, value)))
    return out
