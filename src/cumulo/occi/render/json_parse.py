"""Parsing application/occi+json requests (OCCI JSON Rendering 1.2) into `occi.model` shapes.

Strict about shapes (unknown members, wrong JSON types, duplicate keys, NaN, deep nesting are 400s
naming the member), lenient where clients differ: an entity may come alone or as the only member of
a "resources"/"links" collection; occi.core.* may be top-level members or attributes.
"""

from __future__ import annotations

import json
from typing import Any

from cumulo import errors
from cumulo.occi import categories
from cumulo.occi.model import (
    Action,
    ActionRequest,
    Attribute,
    AttrType,
    Category,
    EntityRequest,
    Kind,
    LinkRequest,
    Mixin,
)
from cumulo.occi.render.text_syntax import ATTR_NAME_RE, MAX_FIELDS, TERM_RE, body_text

MAX_DEPTH = 32
_ENTITY_KEYS = {"kind", "mixins", "attributes", "actions", "id", "links", "summary", "title", "source", "target", "rel"}
_CATEGORY_KEYS = {"term", "scheme", "title", "attributes", "actions", "parent", "location", "depends", "applies",
                  "related"}  # "related": OCCI 1.1 (rOCCI) for depends / parent
_DESC_KEYS = {"mutable", "required", "type", "default", "description", "pattern"}


def _no_dupes(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise errors.Invalid(f"JSON member {k[:80]!r} given twice")
        out[k] = v
    return out


def _reject_constant(name: str) -> Any:
    raise errors.Invalid(f"{name} is not a JSON number")


def load(body: bytes) -> Any:
    """The JSON document of a request body, bounded."""
    text = body_text(body, "JSON")
    if not text.strip():
        raise errors.Invalid("empty JSON body")
    try:
        doc = json.loads(text, object_pairs_hook=_no_dupes, parse_constant=_reject_constant)
    except errors.CumuloError:
        raise
    except (ValueError, RecursionError) as e:
        raise errors.Invalid(f"malformed JSON: {str(e)[:120]}") from e
    _check_depth(doc)
    return doc


def _check_depth(doc: Any) -> None:
    stack: list[tuple[Any, int]] = [(doc, 0)]
    seen = 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if depth > MAX_DEPTH or seen > 100_000:
            raise errors.Invalid("JSON document nested too deep or too large")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
            for k in node:
                _check_text(k, "a member name")
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
        elif isinstance(node, str):
            _check_text(node, "a string")


def _check_text(s: str, what: str) -> None:
    # json.loads lets "\ud800" through as a lone surrogate; it cannot be stored or re-encoded.
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        raise errors.Invalid(f"{what} holds a lone surrogate") from e
    if "\x00" in s:
        raise errors.Invalid(f"{what} holds a NUL character")


def _str(obj: dict[str, Any], key: str, where: str, *, required: bool = False) -> str | None:
    v = obj.get(key)
    if v is None:
        if required:
            raise errors.Invalid(f"{where}: member {key!r} is required")
        return None
    if not isinstance(v, str) or not v or len(v) > 2048:
        raise errors.Invalid(f"{where}: member {key!r} must be a non-empty string")
    return v


def _str_list(obj: dict[str, Any], key: str, where: str) -> list[str]:
    v = obj.get(key, [])
    if not isinstance(v, list) or len(v) > MAX_FIELDS or not all(isinstance(x, str) and 0 < len(x) <= 2048 for x in v):
        raise errors.Invalid(f"{where}: member {key!r} must be an array of strings")
    return list(v)


def _flatten(attrs: dict[str, Any]) -> dict[str, Any]:
    """OCCI 1.1 JSON (rOCCI) nests attribute names: {"occi": {"compute": {"cores": 2}}}. A top-level
    name without a dot whose value is an object is such a namespace (1.2 names always carry a prefix,
    GFD.221 §4.3.2); it is flattened to "occi.compute.cores"."""
    out: dict[str, Any] = {}
    stack: list[tuple[str, Any]] = list(attrs.items())
    while stack:
        name, value = stack.pop(0)
        if isinstance(value, dict) and (("." not in name) or name.startswith("occi.")) and value and \
                all(isinstance(k, str) and "." not in k for k in value) and name.count(".") < 8 and \
                not _is_leaf_namespace(name):
            stack.extend((f"{name}.{k}", v) for k, v in value.items())
            continue
        if name in out:
            raise errors.Invalid(f"attribute {name[:120]} given twice")
        out[name] = value
        if len(out) > MAX_FIELDS:
            raise errors.Invalid("too many attributes")
    return out


def _is_leaf_namespace(name: str) -> bool:
    # a known attribute whose value is an object stays an object
    return any(name in categories.attributes_of(k) for k in categories.KINDS) or any(
        a.name == name for m in categories.MIXINS.values() for a in m.attributes)


def _attributes(obj: dict[str, Any], where: str) -> dict[str, Any]:
    v = obj.get("attributes", {})
    if not isinstance(v, dict):
        raise errors.Invalid(f"{where}: member 'attributes' must be an object")
    if len(v) > MAX_FIELDS:
        raise errors.Invalid(f"{where}: too many attributes")
    v = _flatten(v)
    for name, value in v.items():
        if not ATTR_NAME_RE.match(name) or len(name) > 256:
            raise errors.Invalid(f"{where}: malformed attribute name {name[:80]!r}")
        if value is None:
            raise errors.Invalid(f"attribute {name}: null is not a value")
    return v


def _object(doc: Any, where: str, keys: set[str]) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise errors.Invalid(f"{where} must be a JSON object")
    unknown = sorted(set(doc) - keys)
    if unknown:
        raise errors.Invalid(f"{where}: unknown member {unknown[0][:80]!r}")
    return doc


def _kinded(obj: dict[str, Any], key: str, where: str) -> tuple[str | None, str | None]:
    v = obj.get(key)
    if v is None:
        return None, None
    if isinstance(v, str):  # lenient: a bare location
        return _str(obj, key, where), None
    o = _object(v, f"{where}.{key}", {"location", "kind"})
    return _str(o, "location", f"{where}.{key}", required=True), _str(o, "kind", f"{where}.{key}")


def _set_core(attrs: dict[str, Any], name: str, value: Any) -> None:
    if value is None:
        return
    if name in attrs and attrs[name] != value:
        raise errors.Invalid(f"attribute {name} given twice with different values")
    attrs[name] = value


def _entity(doc: Any, where: str) -> EntityRequest:
    obj = _object(doc, where, _ENTITY_KEYS)
    req = EntityRequest(kind=_str(obj, "kind", where), mixins=_str_list(obj, "mixins", where),
                        attributes=_attributes(obj, where))
    a = req.attributes
    _set_core(a, "occi.core.id", _str(obj, "id", where))
    for key in ("title", "summary"):
        v = obj.get(key)
        if v is not None and not isinstance(v, str):
            raise errors.Invalid(f"{where}: member {key!r} must be a string")
        _set_core(a, f"occi.core.{key}", v)
    for end in ("source", "target"):
        loc, kind = _kinded(obj, end, where)
        _set_core(a, f"occi.core.{end}", loc)
        _set_core(a, f"occi.core.{end}.kind", kind)
    links = obj.get("links", [])
    if not isinstance(links, list) or len(links) > 256:
        raise errors.Invalid(f"{where}: member 'links' must be an array")
    for i, ldoc in enumerate(links):
        lreq = _entity(ldoc, f"{where}.links[{i}]")
        target = lreq.attributes.pop("occi.core.target", None)
        if not isinstance(target, str):
            raise errors.Invalid(f"{where}.links[{i}]: member 'target' is required")
        lid = lreq.attributes.pop("occi.core.id", None)
        src = lreq.attributes.pop("occi.core.source", None)
        req.links.append(LinkRequest(target=target, kind=lreq.kind, source=src if isinstance(src, str) else None,
                                     mixins=lreq.mixins, attributes=lreq.attributes,
                                     id=lid if isinstance(lid, str) else None))
    return req


def parse_entity(body: bytes) -> EntityRequest:
    doc = load(body)
    if isinstance(doc, dict) and set(doc) <= {"resources", "links"} and doc:
        items = [x for k in ("resources", "links") for x in (doc.get(k) or [])]
        if len(items) != 1:
            raise errors.Invalid("exactly one entity per request")
        return _entity(items[0], "entity")
    return _entity(doc, "entity")


def parse_action(body: bytes) -> ActionRequest:
    obj = _object(load(body), "action invocation", {"action", "attributes"})
    action = _str(obj, "action", "action invocation", required=True)
    assert action is not None
    return ActionRequest(action=action, attributes=_attributes(obj, "action invocation"))


def _attribute_defs(obj: dict[str, Any], where: str) -> tuple[Attribute, ...]:
    v = obj.get("attributes", {})
    if not isinstance(v, dict) or len(v) > 1000:
        raise errors.Invalid(f"{where}: member 'attributes' must be an object of attribute descriptions")
    out: list[Attribute] = []
    for name, desc in v.items():
        if not ATTR_NAME_RE.match(name) or len(name) > 256:
            raise errors.Invalid(f"{where}: malformed attribute name {name[:80]!r}")
        d = _object(desc, f"{where}: attribute {name}", _DESC_KEYS)
        for flag in ("mutable", "required"):
            if flag in d and not isinstance(d[flag], bool):
                raise errors.Invalid(f"{where}: attribute {name}: {flag!r} must be a boolean")
        jtype = d.get("type", "string")
        types: dict[str, AttrType] = {"string": "string", "number": "number", "boolean": "boolean", "array": "array",
                                      "object": "object", "integer": "integer"}
        if jtype not in types:
            raise errors.Invalid(f"{where}: attribute {name}: unknown type {str(jtype)[:40]!r}")
        desc_text = d.get("description", "")
        if not isinstance(desc_text, str):
            raise errors.Invalid(f"{where}: attribute {name}: 'description' must be a string")
        default = d.get("default")
        if isinstance(default, dict | list):
            raise errors.Invalid(f"{where}: attribute {name}: 'default' must be a number, string or boolean")
        atype: AttrType = types[jtype]
        enum: tuple[str, ...] = ()
        pattern = d.get("pattern")
        if pattern is not None and not isinstance(pattern, dict):
            raise errors.Invalid(f"{where}: attribute {name}: 'pattern' must be a JSON Schema object")
        if pattern:
            values = pattern.get("enum")
            if atype == "string" and isinstance(values, list) and values and all(isinstance(v, str) for v in values):
                atype, enum = "enum", tuple(values)
            if pattern.get("type") == "integer" and atype == "number":
                atype = "integer"
            # A client's regex is not kept: matching tenant-supplied patterns would invite ReDoS.
        out.append(Attribute(name, atype, mutable=bool(d.get("mutable", False)),
                             required=bool(d.get("required", False)), default=default, description=desc_text,
                             enum=enum))
    return tuple(out)


def _category(doc: Any, cls: str, where: str) -> Category:
    obj = _object(doc, where, _CATEGORY_KEYS)
    term = _str(obj, "term", where, required=True)
    scheme = _str(obj, "scheme", where, required=True)
    assert term is not None and scheme is not None
    if not TERM_RE.match(term) or len(term) > 256:
        raise errors.Invalid(f"{where}: malformed term {term[:80]!r}")
    title = obj.get("title", "")
    if not isinstance(title, str):
        raise errors.Invalid(f"{where}: member 'title' must be a string")
    attrs = _attribute_defs(obj, where)
    if cls == "kinds":
        related = _str_list(obj, "related", where)
        return Kind(scheme, term, title, attrs, parent=_str(obj, "parent", where) or (related[0] if related else None),
                    actions=tuple(_str_list(obj, "actions", where)), location=_str(obj, "location", where))
    if cls == "actions":
        return Action(scheme, term, title, attrs)
    depends = _str_list(obj, "depends", where) or _str_list(obj, "related", where)
    return Mixin(scheme, term, title, attrs, depends=tuple(depends),
                 applies=tuple(_str_list(obj, "applies", where)), actions=tuple(_str_list(obj, "actions", where)),
                 location=_str(obj, "location", where))


def parse_categories(body: bytes, *, partial: bool) -> list[Category]:
    """{"mixins": [...]} (also "kinds"/"actions" when `partial`), or one bare mixin object."""
    doc = load(body)
    if isinstance(doc, dict) and "term" in doc:
        return [_category(doc, "mixins", "mixin")]
    allowed = {"kinds", "mixins", "actions"} if partial else {"mixins"}
    obj = _object(doc, "category collection", allowed)
    out: list[Category] = []
    for cls in ("kinds", "mixins", "actions"):
        items = obj.get(cls, [])
        if not isinstance(items, list) or len(items) > 1000:
            raise errors.Invalid(f"member {cls!r} must be an array")
        out += [_category(x, cls, f"{cls}[{i}]") for i, x in enumerate(items)]
    return out


def parse_locations(body: bytes) -> list[str]:
    """Mixin-collection membership: an entity collection ({"resources"/"links": [{"kind", "id"} or
    {"location"}]}), {"locations": [...]} or a bare array of location strings."""
    doc = load(body)
    if isinstance(doc, list):
        doc = {"locations": doc}
    obj = _object(doc, "location list", {"locations", "resources", "links"})
    out = _str_list(obj, "locations", "location list")
    for key in ("resources", "links"):
        items = obj.get(key, [])
        if not isinstance(items, list) or len(items) > MAX_FIELDS:
            raise errors.Invalid(f"member {key!r} must be an array")
        for i, item in enumerate(items):
            where = f"{key}[{i}]"
            if not isinstance(item, dict):
                raise errors.Invalid(f"{where} must be an object")
            loc = _str(item, "location", where) if "location" in item else None
            if loc is None:
                ident = _str(item, "id", where, required=True)
                assert ident is not None
                if "/" in ident:
                    loc = ident
                else:
                    kind_id = _str(item, "kind", where, required=True)
                    kind = categories.KINDS.get(kind_id or "")
                    if kind is None or not kind.location:
                        raise errors.Invalid(f"{where}: unknown kind {str(kind_id)[:80]!r}")
                    loc = kind.location + ident
            out.append(loc)
    return out
