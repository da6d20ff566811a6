"""Concrete renderers and parsers by media type, and the GET filters (GFD.223 §6)."""

from __future__ import annotations

from cumulo import errors
from cumulo.occi.model import Category, EntityRequest
from cumulo.occi.render.base import (
    JSON,
    OCCI_JSON,
    TEXT_OCCI,
    TEXT_OCCI_PLAIN,
    TEXT_PLAIN,
    URI_LIST,
    HeaderList,
    Parser,
    Renderer,
    media_type_of,
)
from cumulo.occi.render.json import JsonParser, JsonRenderer
from cumulo.occi.render.text import TextParser, TextRenderer
from cumulo.occi.render.urilist import UriListParser, UriListRenderer


def renderer_for(media_type: str, base_url: str) -> Renderer:
    """The renderer for a media type `negotiate` returned; `base_url` is the OCCI root
    (e.g. "http://127.0.0.1:8774/occi") locations are made absolute against."""
    if media_type in (TEXT_PLAIN, TEXT_OCCI_PLAIN, TEXT_OCCI):
        return TextRenderer(media_type, base_url)
    if media_type in (OCCI_JSON, JSON):
        return JsonRenderer(media_type, base_url)
    if media_type == URI_LIST:
        return UriListRenderer(base_url)
    raise errors.NotAcceptable(f"no OCCI rendering for {media_type!r}")


def parser_for(content_type: str | None) -> Parser:
    """The parser for a request's Content-Type; none (or empty) is text/plain, whose parser also
    reads text/occi headers. Others -> UnsupportedMediaType (415)."""
    mt = media_type_of(content_type)
    if mt in ("", TEXT_PLAIN, TEXT_OCCI_PLAIN, TEXT_OCCI):
        return TextParser(mt or TEXT_PLAIN)
    if mt in (OCCI_JSON, JSON):
        return JsonParser(mt)
    if mt == URI_LIST:
        return UriListParser()
    raise errors.UnsupportedMediaType(
        f"unsupported Content-Type {mt[:80]!r}: use text/plain, text/occi, text/uri-list or application/occi+json"
    )


def filter_entity(headers: HeaderList) -> EntityRequest:
    """The filter of a GET on a collection: an entity rendering in the request headers (kind and
    mixins optional; attributes to match)."""
    return TextParser(TEXT_OCCI).entity(b"", headers)


def filter_categories(headers: HeaderList) -> list[Category]:
    """The filter of a GET on the query interface: Category renderings in the request headers
    (class optional)."""
    return TextParser(TEXT_OCCI).categories(b"", headers, partial=True)
