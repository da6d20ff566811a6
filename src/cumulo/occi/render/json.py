"""application/occi+json (OCCI JSON Rendering 1.2, GFD-R-P.225): rendering and parsing.

Output validates against the specification's JSON schema (tests/reference/occi/). Choices where
the document is silent: locations are absolute; attribute types the JSON rendering lacks are
rendered as its nearest type plus a JSON-Schema `pattern` ("integer" -> "number" with
{"type": "integer"}; "enum" -> "string" with {"enum": [...]}); a resource's occi.core.id/title/
summary and a link's source/target are the top-level members, not repeated in "attributes"; a list of
bare locations (not an OCCI object in this rendering) is {"locations": [...]}; an error is
{"message": "..."}.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from cumulo.occi import categories
from cumulo.occi.model import (
    Action,
    ActionRequest,
    Attribute,
    AttrType,
    Category,
    Entity,
    EntityRequest,
    Kind,
    Mixin,
)
from cumulo.occi.render.base import HeaderList, Rendered
from cumulo.occi.render.json_parse import parse_action, parse_categories, parse_entity, parse_locations
from cumulo.occi.render.text import absolute, end_kind

DRAFT4 = "http://json-schema.org/draft-04/schema#"
_TOP_LEVEL = {"occi.core.id", "occi.core.title", "occi.core.summary", "occi.core.source", "occi.core.target",
              "occi.core.source.kind", "occi.core.target.kind"}


def _value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v)
    return v


def attribute_description(a: Attribute) -> dict[str, Any]:
    """One attribute description (JSON Rendering §3.4.1)."""
    jtype: dict[AttrType, str] = {"string": "string", "number": "number", "integer": "number", "boolean": "boolean",
                                  "enum": "string", "array": "array", "object": "object"}
    d: dict[str, Any] = {"mutable": a.mutable, "required": a.required, "type": jtype[a.type]}
    pattern: dict[str, Any] = {}
    if a.type == "integer":
        pattern = {"type": "integer"}
        lo_hi = categories.RANGES.get(a.name)
        if lo_hi:
            pattern.update(minimum=lo_hi[0], maximum=lo_hi[1])
    elif a.type == "enum" and a.enum:
        pattern = {"type": "string", "enum": list(a.enum)}
    elif a.pattern:
        pattern = {"type": "string", "pattern": a.pattern}
    if pattern:
        d["pattern"] = {"$schema": DRAFT4, **pattern}
    if isinstance(a.default, bool | int | float | str) and a.default is not None:
        d["default"] = _value(a.default)
    if a.description:
        d["description"] = a.description
    return d


def _descriptions(attrs: Sequence[Attribute]) -> dict[str, Any]:
    return {a.name: attribute_description(a) for a in attrs}


def category_object(c: Category, base_url: str) -> dict[str, Any]:
    d: dict[str, Any] = {"term": c.term, "scheme": c.scheme}
    if c.title:
        d["title"] = c.title
    if isinstance(c, Kind):
        d["attributes"] = _descriptions(list(categories.attributes_of(c.id).values()) or list(c.attributes))
        d["actions"] = list(c.actions)
        if c.parent:
            d["parent"] = c.parent
        if c.location:
            d["location"] = absolute(base_url, c.location)
    elif isinstance(c, Mixin):
        d["attributes"] = _descriptions(c.attributes)
        d["actions"] = list(c.actions)
        d["depends"] = list(c.depends)
        d["applies"] = list(c.applies)
        d["location"] = absolute(base_url, c.location or f"/{c.term}/")
    else:
        d["attributes"] = _descriptions(c.attributes)
    return d


def _kinded(location: Any, kind: Any, base_url: str) -> dict[str, Any]:
    d: dict[str, Any] = {"location": absolute(base_url, str(location or ""))}
    if isinstance(kind, str) and kind:
        d["kind"] = kind
    return d


def entity_object(e: Entity, base_url: str) -> dict[str, Any]:
    """A resource (with its links inline) or a link instance (JSON Rendering §3.1)."""
    d: dict[str, Any] = {
        "kind": e.kind,
        "mixins": list(e.mixins),
        "attributes": {k: _value(v) for k, v in e.attributes.items() if k not in _TOP_LEVEL and v is not None},
        "actions": list(e.actions),
        "id": str(e.attributes.get("occi.core.id") or e.id),
    }
    a = e.attributes
    if categories.is_link_kind(e.kind):
        d["source"] = _kinded(a.get("occi.core.source"), end_kind(e, "source"), base_url)
        d["target"] = _kinded(a.get("occi.core.target"), end_kind(e, "target"), base_url)
    else:
        d["links"] = [entity_object(link, base_url) for link in e.links]
        if isinstance(a.get("occi.core.summary"), str):
            d["summary"] = a["occi.core.summary"]
    if isinstance(a.get("occi.core.title"), str):
        d["title"] = a["occi.core.title"]
    return d


def _dump(obj: Any) -> bytes:
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate in stored data: JSON's \ud800 escape is still valid JSON
        return json.dumps(obj, ensure_ascii=True, separators=(",", ":"), default=str).encode("ascii")


class JsonRenderer:
    def __init__(self, media_type: str, base_url: str) -> None:
        self.media_type = media_type
        self.base_url = base_url.rstrip("/")

    def _r(self, obj: Any) -> Rendered:
        return Rendered(_dump(obj), self.media_type)

    def entity(self, entity: Entity) -> Rendered:
        return self._r(entity_object(entity, self.base_url))

    def collection(self, entities: Sequence[Entity]) -> Rendered:
        resources = [entity_object(e, self.base_url) for e in entities if not categories.is_link_kind(e.kind)]
        links = [entity_object(e, self.base_url) for e in entities if categories.is_link_kind(e.kind)]
        out: dict[str, Any] = {}
        if resources or not links:
            out["resources"] = resources
        if links:
            out["links"] = links
        return self._r(out)

    def locations(self, locations: Sequence[str]) -> Rendered:
        return self._r({"locations": [absolute(self.base_url, loc) for loc in locations]})

    def categories(self, categories: Sequence[Category]) -> Rendered:
        return self._r({
            "kinds": [category_object(c, self.base_url) for c in categories if isinstance(c, Kind)],
            "mixins": [category_object(c, self.base_url) for c in categories if isinstance(c, Mixin)],
            "actions": [category_object(c, self.base_url) for c in categories if isinstance(c, Action)],
        })

    def message(self, message: str) -> Rendered:
        return self._r({"message": message})


class JsonParser:
    def __init__(self, media_type: str) -> None:
        self.media_type = media_type

    def entity(self, body: bytes, headers: HeaderList) -> EntityRequest:
        return parse_entity(body)

    def action(self, body: bytes, headers: HeaderList) -> ActionRequest:
        return parse_action(body)

    def categories(self, body: bytes, headers: HeaderList, *, partial: bool = False) -> list[Category]:
        return parse_categories(body, partial=partial)

    def locations(self, body: bytes, headers: HeaderList) -> list[str]:
        return parse_locations(body)


__all__ = ["JsonParser", "JsonRenderer", "attribute_description", "category_object", "entity_object"]
