"""Content negotiation (GFD.223 §3.1 Accept, GFD.229 §7 text/uri-list only for listings)."""

from __future__ import annotations

import pytest

from cumulo import errors
from cumulo.occi.render.base import JSON, OCCI_JSON, TEXT_OCCI, TEXT_PLAIN, URI_LIST, Rendered, negotiate


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, TEXT_PLAIN),
        ("", TEXT_PLAIN),
        ("*/*", TEXT_PLAIN),
        ("text/*", TEXT_PLAIN),
        ("text/occi", TEXT_OCCI),
        ("application/occi+json", OCCI_JSON),
        ("application/json", JSON),
        ("application/*", OCCI_JSON),
        ("TEXT/OCCI", TEXT_OCCI),
        ("text/occi;q=0.5, application/occi+json", OCCI_JSON),
        ("text/plain;q=0.1,text/occi;q=0.9", TEXT_OCCI),
        ("application/occi+json, text/plain", OCCI_JSON),  # equal q: the client's first
        ("image/png, text/plain;q=0.2", TEXT_PLAIN),
        ("text/plain;q=0, */*", TEXT_OCCI),  # q=0 excludes text/plain; */* picks the next
        (["text/html", "text/occi"], TEXT_OCCI),  # repeated Accept headers
        (["application/occi+json;q=0.4", "text/plain;q=0.3"], OCCI_JSON),
        ("text/plain; charset=utf-8", TEXT_PLAIN),
        ("text/occi;q=abc, text/plain", TEXT_PLAIN),  # a malformed weight counts as q=0
    ],
)
def test_negotiate(accept: str | list[str] | None, expected: str) -> None:
    assert negotiate(accept) == expected


def test_uri_list_only_for_listings() -> None:
    assert negotiate("text/uri-list", listing=True) == URI_LIST
    with pytest.raises(errors.Invalid):
        negotiate("text/uri-list")
    # a non-listing may still pick another type the client accepts
    assert negotiate("text/uri-list;q=0.5, text/plain") == TEXT_PLAIN
    # wildcards never select uri-list
    assert negotiate("*/*", listing=True) == TEXT_PLAIN


@pytest.mark.parametrize("accept", ["image/png", "text/html, application/xml", "text/plain;q=0", ["a/b", "c/d"]])
def test_not_acceptable(accept: str | list[str]) -> None:
    with pytest.raises(errors.NotAcceptable):
        negotiate(accept)


def test_huge_accept_is_a_400() -> None:
    with pytest.raises(errors.Invalid):
        negotiate("text/plain," * 5000)


def test_raw_headers_are_utf8_pairs() -> None:
    r = Rendered(b"OK", TEXT_OCCI, [("X-OCCI-Attribute", 'occi.core.title="é"'), ("X-OCCI-Attribute", "a=1")])
    assert r.raw_headers() == [(b"x-occi-attribute", 'occi.core.title="é"'.encode()), (b"x-occi-attribute", b"a=1")]
