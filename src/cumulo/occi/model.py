"""OCCI's type system as plain data: categories (kinds, mixins, actions), attribute definitions, and
the neutral shapes every rendering parses into and renders from.

Nothing here knows HTTP or a rendering. `occi.render.*` turns `Entity`/`Category` into text/plain,
text/occi headers, text/uri-list or application/occi+json, and parses requests into
`EntityRequest`/`ActionRequest`; `occi.api` validates attributes against the categories before a
backend (`occi.backends.base`) sees them, so backends get typed, known attributes only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

CORE = "http://schemas.ogf.org/occi/core#"
INFRA = "http://schemas.ogf.org/occi/infrastructure#"

# The JSON rendering's attribute types; text renderings carry strings, numbers and booleans and the
# API converts them to these before validation.
AttrType = Literal["string", "number", "integer", "boolean", "enum", "array", "object"]


@dataclass(frozen=True)
class Attribute:
    """An attribute definition (Core 1.2 §4.3.2: name, type, mutable, required, default, description)."""

    name: str
    type: AttrType = "string"
    mutable: bool = True
    required: bool = False
    default: Any = None
    description: str = ""
    enum: tuple[str, ...] = ()  # the values of an "enum" attribute
    pattern: str | None = None  # a regex a "string" value must match


@dataclass(frozen=True)
class Category:
    """A category (Core §4.3.1): identified by scheme + term."""

    scheme: str
    term: str
    title: str = ""
    attributes: tuple[Attribute, ...] = ()

    @property
    def id(self) -> str:
        return self.scheme + self.term


@dataclass(frozen=True)
class Action(Category):
    """An action (Core §4.3.4); its attributes are the action's parameters (e.g. stop's `method`)."""


@dataclass(frozen=True)
class Kind(Category):
    """A kind (Core §4.3.3): `parent` is the parent kind's id; `actions` are action ids; `location`
    the collection path below the OCCI root, e.g. "/compute/"."""

    parent: str | None = None
    actions: tuple[str, ...] = ()
    location: str | None = None


@dataclass(frozen=True)
class Mixin(Category):
    """A mixin (Core §4.3.5): `depends` and `applies` are category ids; `location` the mixin's
    collection path, e.g. "/os_tpl/<image-id>/"."""

    depends: tuple[str, ...] = ()
    applies: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    location: str | None = None


@dataclass
class Entity:
    """One entity as the renderers show it. `attributes` holds every attribute with a value,
    occi.core.* included (occi.core.id is `id`); a link's occi.core.source/target are locations.
    `actions` are the action ids applicable in the entity's current state (rendered as action
    links); `links` are a resource's links, rendered inline."""

    kind: str  # kind id
    id: str
    location: str  # below the OCCI root, e.g. "/compute/<uuid>"
    mixins: list[str] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)
    links: list[Entity] = field(default_factory=list)


@dataclass
class LinkRequest:
    """An inline link of a create request (or a link entity posted on its own, then `source` is set)."""

    target: str  # a location or URL, e.g. "/storage/<uuid>" or "http://host/occi/network/<uuid>"
    kind: str | None = None
    source: str | None = None
    mixins: list[str] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass
class EntityRequest:
    """What a client sent to create or update an entity, from any rendering."""

    kind: str | None = None
    mixins: list[str] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    links: list[LinkRequest] = field(default_factory=list)


@dataclass
class ActionRequest:
    """POST ...?action=term: the action id and its attributes."""

    action: str
    attributes: dict[str, Any] = field(default_factory=dict)


def split_location(path: str) -> tuple[str, str]:
    """"/compute/<id>" (or a full URL ending so, with or without the /occi prefix) -> ("compute", id).
    Raises ValueError when it is not a `/<collection>/<id>` path."""
    p = path.split("?", 1)[0]
    if "://" in p:
        p = "/" + p.split("://", 1)[1].split("/", 1)[-1]
    parts = [x for x in p.split("/") if x]
    if parts and parts[0] == "occi":
        parts = parts[1:]
    if len(parts) != 2:
        raise ValueError(f"not an entity location: {path!r}")
    return parts[0], parts[1]
