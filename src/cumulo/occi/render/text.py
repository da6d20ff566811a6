"""The OCCI text renderings (GFD.229): text/plain (and its alias text/occi+plain) in the body, and
text/occi in the headers with the body "OK" (§6). Rendering here; parsing in `text_parse`.

Lines end in CRLF (the ABNF's). In text/occi each field is one comma-joined header (the form
GFD.229 §6 recommends), split over repeated headers only when a value would exceed
`HEADER_CHUNK` characters, so that no client truncates it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cumulo.occi import categories
from cumulo.occi.model import CORE, Action, ActionRequest, Category, Entity, EntityRequest, Kind, Mixin
from cumulo.occi.render.base import TEXT_OCCI, TEXT_PLAIN, HeaderList, Rendered
from cumulo.occi.render.text_parse import action_request, category_list, entity_request, location_list
from cumulo.occi.render.text_syntax import fields_from_body, fields_from_headers, quote, render_value

HEADER_CHUNK = 7000
LOCATION_ATTRIBUTES = ("occi.core.source", "occi.core.target")
# Attributes a text Link carries in its <target> and rel instead of as link attributes.
_LINK_IMPLIED = ("occi.core.source", "occi.core.target", "occi.core.target.kind", "occi.core.source.kind")


def absolute(base_url: str, location: str) -> str:
    """A location made absolute against the OCCI root URL (absolute URLs pass through)."""
    if location.startswith("/"):
        return base_url.rstrip("/") + location
    return location


def _cls(category: Category) -> str:
    if isinstance(category, Kind):
        return "kind"
    if isinstance(category, Mixin):
        return "mixin"
    if isinstance(category, Action):
        return "action"
    return "mixin"


def _split_id(category_id: str) -> tuple[str, str]:
    """(scheme, term) of a category id: the term follows the last "#" (OCCI schemes end so), else the
    last "/"."""
    for sep in ("#", "/"):
        scheme, found, term = category_id.rpartition(sep)
        if found and term:
            return scheme + found, term
    return "", category_id


def category_ref(category_id: str, cls: str) -> str:
    """The short Category value naming a category in an entity rendering."""
    scheme, term = _split_id(category_id)
    return f"{term}; scheme={quote(scheme)}; class={quote(cls)}"


def category_value(category: Category, base_url: str) -> str:
    """A full Category value for the query interface (GFD.229 §4.1)."""
    parts = [category.term, f"scheme={quote(category.scheme)}", f"class={quote(_cls(category))}"]
    if category.title:
        parts.append(f"title={quote(category.title)}")
    attributes = list(category.attributes)
    actions: tuple[str, ...] = ()
    location: str | None = None
    if isinstance(category, Kind):
        if category.parent:
            parts.append(f"rel={quote(category.parent)}")
        attributes = list(categories.attributes_of(category.id).values()) or attributes
        actions, location = category.actions, category.location
    elif isinstance(category, Mixin):
        if category.depends:  # GFD.229 §4.5.2: only the first of Mixin.depends
            parts.append(f"rel={quote(category.depends[0])}")
        actions, location = category.actions, category.location
    if location:
        parts.append(f"location={quote(absolute(base_url, location))}")
    if attributes:
        defs = []
        for a in attributes:
            props = [p for p, on in (("immutable", not a.mutable), ("required", a.required)) if on]
            defs.append(a.name + ("{" + " ".join(props) + "}" if props else ""))
        parts.append(f"attributes={quote(' '.join(defs))}")
    if actions:
        parts.append(f"actions={quote(' '.join(actions))}")
    return "; ".join(parts)


def _attr(name: str, value: Any, base_url: str) -> str:
    if name in LOCATION_ATTRIBUTES and isinstance(value, str):
        value = absolute(base_url, value)
    return f"{name}={render_value(value)}"


def end_kind(link: Entity, end: str = "target") -> str | None:
    """The kind of a link's source or target: occi.core.<end>.kind, else the kind whose collection
    the location is in ("/storage/<id>" -> storage), else None."""
    k = link.attributes.get(f"occi.core.{end}.kind")
    if isinstance(k, str) and k:
        return k
    loc = link.attributes.get(f"occi.core.{end}", "")
    if isinstance(loc, str):
        parts = [p for p in loc.split("?", 1)[0].split("/") if p]
        if len(parts) >= 2:
            kind = categories.kind_by_term(parts[-2])
            if kind is not None:
                return kind.id
    return None


def link_value(link: Entity, base_url: str) -> str:
    """An inline link of a resource (GFD.229 §4.2 Link ABNF)."""
    target = str(link.attributes.get("occi.core.target", ""))
    parts = [f"<{absolute(base_url, target)}>", f"rel={quote(end_kind(link) or CORE + 'resource')}",
             f"self={quote(absolute(base_url, link.location))}",
             f"category={quote(' '.join([link.kind, *link.mixins]))}"]
    attrs = dict(link.attributes)
    attrs.setdefault("occi.core.id", link.id)
    for name, value in attrs.items():
        if name not in _LINK_IMPLIED and value is not None:
            parts.append(_attr(name, value, base_url))
    return "; ".join(parts)


def action_link_value(entity: Entity, action_id: str, base_url: str) -> str:
    _, term = _split_id(action_id)
    return f"<{absolute(base_url, entity.location)}?action={term}>; rel={quote(action_id)}"


def entity_fields(entity: Entity, base_url: str) -> list[tuple[str, str]]:
    """(field name, value) of an entity rendering (GFD.229 §5.1): categories, links (a resource's
    links, then action links), attributes (occi.core.id first)."""
    out = [("Category", category_ref(entity.kind, "kind"))]
    out += [("Category", category_ref(m, "mixin")) for m in entity.mixins]
    out += [("Link", link_value(link, base_url)) for link in entity.links]
    out += [("Link", action_link_value(entity, a, base_url)) for a in entity.actions]
    attrs: dict[str, Any] = {"occi.core.id": entity.id}
    attrs.update(entity.attributes)
    out += [("X-OCCI-Attribute", _attr(n, v, base_url)) for n, v in attrs.items() if v is not None]
    return out


def _one_line(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ").replace("\x00", " ")


class TextRenderer:
    """text/plain (body) or text/occi (headers)."""

    def __init__(self, media_type: str, base_url: str) -> None:
        self.media_type = media_type
        self.base_url = base_url.rstrip("/")
        self.in_headers = media_type == TEXT_OCCI

    def _render(self, fields: list[tuple[str, str]]) -> Rendered:
        # Quoted values are escaped already; this guards the unquoted parts (ids, locations) too.
        fields = [(n, _one_line(v)) for n, v in fields]
        if not self.in_headers:
            body = "".join(f"{n}: {v}\r\n" for n, v in fields)
            return Rendered(body.encode("utf-8", "replace"), self.media_type)
        headers: list[tuple[str, str]] = []
        order: list[str] = []
        grouped: dict[str, list[str]] = {}
        for n, v in fields:
            if n not in grouped:
                order.append(n)
                grouped[n] = []
            grouped[n].append(v)
        for n in order:
            chunk: list[str] = []
            size = 0
            for v in grouped[n]:
                if chunk and size + len(v) + 2 > HEADER_CHUNK:
                    headers.append((n, ", ".join(chunk)))
                    chunk, size = [], 0
                chunk.append(v)
                size += len(v) + 2
            if chunk:
                headers.append((n, ", ".join(chunk)))
        return Rendered(b"OK", TEXT_OCCI, headers)

    def entity(self, entity: Entity) -> Rendered:
        return self._render(entity_fields(entity, self.base_url))

    def collection(self, entities: Sequence[Entity]) -> Rendered:
        return self.locations([e.location for e in entities])

    def locations(self, locations: Sequence[str]) -> Rendered:
        return self._render([("X-OCCI-Location", absolute(self.base_url, loc)) for loc in locations])

    def categories(self, categories: Sequence[Category]) -> Rendered:
        return self._render([("Category", category_value(c, self.base_url)) for c in categories])

    def message(self, message: str) -> Rendered:
        text = message.replace("\r", " ").replace("\n", " ")
        return Rendered((text + ("\n" if not self.in_headers else "")).encode("utf-8", "replace"),
                        TEXT_OCCI if self.in_headers else self.media_type)


class TextParser:
    """text/plain and text/occi requests. Both read the body and the headers: text/occi clients put
    the rendering in headers, text/plain ones in the body, and some of either send the other."""

    def __init__(self, media_type: str = TEXT_PLAIN) -> None:
        self.media_type = media_type

    def _fields(self, body: bytes, headers: HeaderList) -> list[tuple[str, str]]:
        fields = fields_from_headers(headers)
        if body.strip() and body.strip() != b"OK":
            fields += fields_from_body(body)
        return fields

    def entity(self, body: bytes, headers: HeaderList) -> EntityRequest:
        return entity_request(self._fields(body, headers))

    def action(self, body: bytes, headers: HeaderList) -> ActionRequest:
        return action_request(self._fields(body, headers))

    def categories(self, body: bytes, headers: HeaderList, *, partial: bool = False) -> list[Category]:
        return category_list(self._fields(body, headers), partial=partial)

    def locations(self, body: bytes, headers: HeaderList) -> list[str]:
        return location_list(self._fields(body, headers))
