"""The contract of every OCCI rendering, and content negotiation (GFD.223 §3, GFD.229, JSON 1.2).

A `Renderer` turns model objects into a `Rendered` (body bytes, extra headers, content type); the
HTTP status is the API's business. A `Parser` turns a request (body bytes + the raw header list)
into the neutral request shapes of `occi.model`. Both raise only `cumulo.errors` (Invalid 400,
PayloadTooLarge 413, UnsupportedMediaType 415, NotAcceptable 406).

`renderer_for`/`parser_for` (in `occi.render.select`) build the concrete ones; `negotiate` picks the
media type from the Accept header(s).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cumulo import errors
from cumulo.occi.model import ActionRequest, Category, Entity, EntityRequest

TEXT_PLAIN = "text/plain"
TEXT_OCCI_PLAIN = "text/occi+plain"  # GFD.229 §5: a second name of the text/plain rendering
TEXT_OCCI = "text/occi"
URI_LIST = "text/uri-list"
OCCI_JSON = "application/occi+json"
JSON = "application/json"  # accepted as a name of the JSON rendering

# What a client may ask for, in our order of preference when q-values tie.
MEDIA_TYPES: tuple[str, ...] = (TEXT_PLAIN, TEXT_OCCI, OCCI_JSON, TEXT_OCCI_PLAIN, JSON, URI_LIST)

# Raw request headers as the ASGI server gives them (names case-insensitive; a name may repeat).
HeaderList = Iterable[tuple[bytes | str, bytes | str]]


@dataclass(frozen=True)
class Rendered:
    """A rendering: `body`, the extra `headers` (text/occi puts the whole rendering there; names may
    repeat, values never contain CR/LF), and the `content_type` to send."""

    body: bytes
    content_type: str
    headers: list[tuple[str, str]] = field(default_factory=list)

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """`headers` as ASGI raw header pairs (UTF-8 values; repeats kept), Content-Type excluded."""
        return [(k.lower().encode("ascii"), v.encode("utf-8", "replace")) for k, v in self.headers]


class Renderer(Protocol):
    """One response rendering, bound to the base URL that locations are made absolute against
    (e.g. "http://127.0.0.1:8774/occi"). Locations in the model are below the OCCI root
    ("/compute/<id>"); absolute URLs are passed through unchanged."""

    media_type: str

    def entity(self, entity: Entity) -> Rendered:
        """One resource or link: kind, mixins, attributes, action links (`entity.actions`) and, for
        a resource, its links inline."""
        ...

    def collection(self, entities: Sequence[Entity]) -> Rendered:
        """An entity collection (GET on a kind, a mixin or the root path). Text renderings list the
        locations (GFD.229 §4.2); JSON renders {"resources": [...], "links": [...]}."""
        ...

    def locations(self, locations: Sequence[str]) -> Rendered:
        """A list of locations (e.g. the answer to a create, mixin-collection membership)."""
        ...

    def categories(self, categories: Sequence[Category]) -> Rendered:
        """The query interface: every Kind, Mixin and Action given (the caller passes the actions
        too, JSON renders them in "actions")."""
        ...

    def message(self, message: str) -> Rendered:
        """A short status message: an error, or "OK" (text/occi's success body)."""
        ...


class Parser(Protocol):
    """One request rendering (from Content-Type). Text parsers read the body and the headers."""

    media_type: str

    def entity(self, body: bytes, headers: HeaderList) -> EntityRequest:
        """A create/update/filter request: kind (may be absent for a partial update or a filter),
        mixins, attributes (text values already typed as string/number/boolean; the API coerces them
        with occi.validate), inline links. A link posted on its own comes back as an EntityRequest
        whose attributes hold occi.core.source / occi.core.target."""
        ...

    def action(self, body: bytes, headers: HeaderList) -> ActionRequest:
        """An action invocation: the action id and its attributes."""
        ...

    def categories(self, body: bytes, headers: HeaderList, *, partial: bool = False) -> list[Category]:
        """Category renderings: user mixin definitions POSTed to the query interface (Mixin objects;
        `location` as sent, possibly relative), or with `partial=True` a filter (class optional:
        plain Category objects when no class is given)."""
        ...

    def locations(self, body: bytes, headers: HeaderList) -> list[str]:
        """Entity locations (mixin-collection membership), as sent (absolute or root-relative)."""
        ...


def media_ranges(accept: str | Sequence[str] | None) -> list[tuple[str, float, int]]:
    """(media range, q, position) from one Accept value or several (repeated headers)."""
    values = [accept] if isinstance(accept, str) else list(accept or [])
    out: list[tuple[str, float, int]] = []
    pos = 0
    for value in values:
        if len(value) > 8192:
            raise errors.Invalid("Accept header too long")
        for item in value.split(","):
            parts = [p.strip() for p in item.split(";")]
            media = parts[0].lower()
            if not media:
                continue
            q = 1.0
            for p in parts[1:]:
                k, sep, v = p.partition("=")
                if sep and k.strip().lower() == "q":
                    try:
                        q = float(v.strip())
                    except ValueError:
                        q = 0.0  # RFC 7231: a malformed weight; treat as not acceptable
                    if not 0.0 <= q <= 1.0:
                        q = 0.0
            out.append((media, q, pos))
            pos += 1
    return out


def _matches(media_range: str, media_type: str) -> int:
    """Specificity of the match (2 exact, 1 type/*, 0 */*), -1 when it does not match."""
    if media_range == media_type:
        return 2
    if media_range == "*/*":
        return 0
    if media_range.endswith("/*") and media_type.split("/", 1)[0] == media_range[:-2]:
        return 1
    return -1


def negotiate(accept: str | Sequence[str] | None, *, listing: bool = False) -> str:
    """The media type of the response for the Accept header value(s).

    `accept` is one header value or the list of all (repeated headers); comma-joined forms and
    q-values are understood. No Accept, an empty one, or */* -> text/plain. text/uri-list is offered
    only when `listing` (a collection GET): chosen otherwise it is a 400 (GFD.229 §7). Nothing
    acceptable -> NotAcceptable (406). Returns one of MEDIA_TYPES (application/json and
    text/occi+plain are returned as asked, so the response carries the name the client wanted)."""
    ranges = media_ranges(accept)
    if not ranges:
        return TEXT_PLAIN
    best: tuple[float, int, int, int] | None = None  # (q, specificity, -position, -preference)
    chosen = ""
    for i, media_type in enumerate(MEDIA_TYPES):
        # The q of a media type is the one of its most specific matching range (RFC 7231 §5.3.2).
        spec, q, position = -1, 0.0, 0
        for rng, rq, rpos in ranges:
            s = _matches(rng, media_type)
            if s > spec:
                spec, q, position = s, rq, rpos
        if spec < 0 or q <= 0.0:
            continue
        if spec < 2 and media_type in (TEXT_OCCI_PLAIN, JSON, URI_LIST):
            continue  # wildcards pick the canonical names; uri-list only when asked by name
        key = (q, spec, -position, -i)
        if best is None or key > best:
            best, chosen = key, media_type
    if not chosen:
        raise errors.NotAcceptable(
            "none of the OCCI renderings is acceptable (text/plain, text/occi, text/uri-list, "
            "application/occi+json)"
        )
    if chosen == URI_LIST and not listing:
        raise errors.Invalid("text/uri-list renders only collections")
    return chosen


def media_type_of(content_type: str | None) -> str:
    """The bare, lower-cased media type of a Content-Type value ("" when absent)."""
    return (content_type or "").split(";", 1)[0].strip().lower()
