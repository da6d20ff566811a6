"""text/uri-list (RFC 2483; GFD.229 §7): locations only, one absolute URI per CRLF-ended line.

It renders collections (and the locations of categories on the query interface); anything else is a
400, which `negotiate(..., listing=False)` already raises before a renderer is made. As a request
body it carries mixin-collection membership (lines starting with "#" are comments).
"""

from __future__ import annotations

from collections.abc import Sequence

from cumulo import errors
from cumulo.occi.model import ActionRequest, Category, Entity, EntityRequest, Kind, Mixin
from cumulo.occi.render.base import URI_LIST, HeaderList, Rendered
from cumulo.occi.render.text import absolute
from cumulo.occi.render.text_syntax import MAX_FIELDS, body_text, short

_ONLY = "text/uri-list renders only collections"


class UriListRenderer:
    media_type = URI_LIST

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def _lines(self, uris: Sequence[str]) -> Rendered:
        return Rendered("".join(f"{absolute(self.base_url, u)}\r\n" for u in uris).encode("utf-8"), URI_LIST)

    def entity(self, entity: Entity) -> Rendered:
        raise errors.Invalid(_ONLY)

    def collection(self, entities: Sequence[Entity]) -> Rendered:
        return self._lines([e.location for e in entities])

    def locations(self, locations: Sequence[str]) -> Rendered:
        return self._lines(list(locations))

    def categories(self, categories: Sequence[Category]) -> Rendered:
        return self._lines([c.location for c in categories if isinstance(c, Kind | Mixin) and c.location])

    def message(self, message: str) -> Rendered:
        # Errors are not URIs: a comment line (RFC 2483 §5) keeps the body a valid uri-list.
        text = message.replace("\r", " ").replace("\n", " ")
        return Rendered(f"# {text}\r\n".encode(), URI_LIST)


class UriListParser:
    media_type = URI_LIST

    def entity(self, body: bytes, headers: HeaderList) -> EntityRequest:
        raise errors.Invalid("a text/uri-list body carries only locations")

    def action(self, body: bytes, headers: HeaderList) -> ActionRequest:
        raise errors.Invalid("a text/uri-list body carries only locations")

    def categories(self, body: bytes, headers: HeaderList, *, partial: bool = False) -> list[Category]:
        raise errors.Invalid("a text/uri-list body carries only locations")

    def locations(self, body: bytes, headers: HeaderList) -> list[str]:
        text = body_text(body, "uri-list")
        out: list[str] = []
        for raw in text.split("\n"):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if any(c.isspace() or ord(c) < 0x20 for c in line) or len(line) > 2048:
                raise errors.Invalid(f"malformed URI line {short(line)}")
            out.append(line)
            if len(out) > MAX_FIELDS:
                raise errors.Invalid(f"more than {MAX_FIELDS} locations")
        return out
