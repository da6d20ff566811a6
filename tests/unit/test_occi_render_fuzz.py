"""Hostile input for the OCCI parsers and the validator: random bytes, mutated valid requests, odd
unicode, lone surrogates, CRLF/NUL injection, huge and deeply nested values. The only exceptions
allowed out are cumulo.errors (a 4xx for the API), and whatever parses renders back safely."""

from __future__ import annotations

import random

import pytest

from cumulo import errors
from cumulo.occi import categories as C
from cumulo.occi.model import Entity
from cumulo.occi.render.base import negotiate
from cumulo.occi.render.select import filter_categories, filter_entity, parser_for, renderer_for
from cumulo.occi.validate import check_action, check_entity

INFRA = "http://schemas.ogf.org/occi/infrastructure#"
SEEDS_TEXT = [
    f'Category: compute; scheme="{INFRA}"; class="kind"\n'
    'Category: user_data; scheme="http://schemas.ogf.org/occi/infrastructure/compute#"; class="mixin"\n'
    f'Link: </occi/storage/1>; rel="{INFRA}storage"; category="{INFRA}storagelink"; occi.storagelink.deviceid="vdb"\n'
    'X-OCCI-Attribute: occi.core.title="a \\"b\\", c", occi.compute.cores=2, occi.compute.memory=1.5\n'
    'X-OCCI-Attribute: occi.compute.userdata="#!/bin/sh\\necho"\n'
    "X-OCCI-Location: /occi/compute/1\n",
    'Category: stop; scheme="http://schemas.ogf.org/occi/infrastructure/compute/action#"; class="action"\n'
    'X-OCCI-Attribute: method="poweroff"\n',
    'Category: my; scheme="http://e/#"; class="mixin"; location="/my/"; attributes="a.b{immutable required} c"; '
    'actions="http://e/a#x"; rel="http://e/#p"; title="T"\n',
]
SEEDS_JSON = [
    '{"kind":"' + INFRA + 'compute","mixins":["http://x#y"],"attributes":{"occi.compute.cores":2,'
    '"occi.core.title":"t"},"links":[{"kind":"' + INFRA + 'storagelink","id":"l","source":{"location":"/c/1"},'
    '"target":{"location":"/storage/1","kind":"' + INFRA + 'storage"}}]}',
    '{"action":"http://schemas.ogf.org/occi/infrastructure/compute/action#stop","attributes":{"method":"graceful"}}',
    '{"mixins":[{"term":"m","scheme":"http://e/#","location":"/m/","attributes":{"x.y":{"type":"number"}}}]}',
    '{"resources":[{"kind":"' + INFRA + 'compute","id":"c1"}],"locations":["/compute/2"]}',
]
HOSTILE = ['"', "\\", ";", ",", "<", ">", "=", "{", "}", "\r", "\n", "\r\n", "\x00", "\x7f", "\u2028", "\ufeff",
           "\U0001f600", "é", " ", "\t", "\\u", "\\ud800", "\\udc00x", "\\u0000", "#", "?action=", ":", "9" * 50,
           "1e999", "-", ".", "x" * 5000, "[", "]", "NaN", "null", "true"]


def _mutate(rng: random.Random, text: str) -> str:
    chars = list(text)
    for _ in range(rng.randint(1, 6)):
        op = rng.random()
        pos = rng.randint(0, len(chars))
        if op < 0.5:
            chars[pos:pos] = list(rng.choice(HOSTILE))
        elif op < 0.8 and chars:
            del chars[pos : pos + rng.randint(1, 8)]
        else:
            chars[pos:pos] = [chr(rng.randint(0, 0x10FFFF)) for _ in range(rng.randint(1, 4))]
    return "".join(chars)


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # lone surrogates reach the parser as invalid UTF-8


def _exercise(content_type: str, body: bytes, headers: list[tuple[bytes | str, bytes | str]]) -> None:
    p = parser_for(content_type)
    for call in (lambda: p.entity(body, headers), lambda: p.action(body, headers),
                 lambda: p.categories(body, headers), lambda: p.categories(body, headers, partial=True),
                 lambda: p.locations(body, headers)):
        try:
            result = call()
        except errors.CumuloError:
            continue
        _downstream(result)


def _downstream(result: object) -> None:
    """Whatever parsed goes on through validation and back out through every renderer."""
    from cumulo.occi.model import ActionRequest, EntityRequest

    try:
        if isinstance(result, EntityRequest):
            req = check_entity(result, C.COMPUTE, [C.USER_DATA] if C.USER_DATA.id in result.mixins else [], create=True)
            e = Entity(kind=C.COMPUTE.id, id="x", location="/compute/x", mixins=req.mixins, attributes=req.attributes)
            for mt in ("text/plain", "text/occi", "application/occi+json"):
                r = renderer_for(mt, "http://h/occi").entity(e)
                assert all("\r" not in v and "\n" not in v for _, v in r.headers)
                r.raw_headers()
        elif isinstance(result, ActionRequest):
            check_action(result, C.STOP)
        elif isinstance(result, list):
            for mt in ("text/plain", "text/occi", "application/occi+json", "text/uri-list"):
                r = renderer_for(mt, "http://h/occi")
                if all(isinstance(x, str) for x in result):
                    r.locations(result)  # type: ignore[arg-type]
                else:
                    out = r.categories(result)  # type: ignore[arg-type]
                    assert all("\r" not in v and "\n" not in v for _, v in out.headers)
    except errors.CumuloError:
        pass


@pytest.mark.parametrize("seed", range(4))
def test_mutated_text_bodies_and_headers(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(400):
        text = _mutate(rng, rng.choice(SEEDS_TEXT))
        _exercise("text/plain", _encode(text), [])
        headers: list[tuple[bytes | str, bytes | str]] = []
        for line in text.split("\n"):
            name, _, value = line.partition(":")
            headers.append((name, value) if rng.random() < 0.5 else (_encode(name), _encode(value)))
        _exercise("text/occi", b"", headers)
        try:
            filter_entity(headers)
            filter_categories(headers)
        except errors.CumuloError:
            pass


@pytest.mark.parametrize("seed", range(4))
def test_mutated_json(seed: int) -> None:
    rng = random.Random(100 + seed)
    for _ in range(400):
        _exercise("application/occi+json", _encode(_mutate(rng, rng.choice(SEEDS_JSON))), [])


def test_random_bytes_everywhere() -> None:
    rng = random.Random(7)
    for _ in range(300):
        body = bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 300)))
        for ct in ("text/plain", "text/occi", "application/occi+json", "text/uri-list", None):
            _exercise(ct or "", body, [(b"category", body), (b"x-occi-attribute", body), (b"link", body)])
        try:
            negotiate(body.decode("latin-1"))
        except errors.CumuloError:
            pass


def test_huge_inputs_are_bounded() -> None:
    big_attr = b"X-OCCI-Attribute: occi.core.title=\"" + b"a" * (300 * 1024) + b"\"\n"
    with pytest.raises(errors.CumuloError):
        parser_for("text/plain").entity(big_attr, [])
    with pytest.raises(errors.CumuloError):
        parser_for("text/plain").entity(b"X-OCCI-Location: /a\n" * 70000, [])
    many = [(b"x-occi-attribute", b"a=1")] * 5000
    with pytest.raises(errors.Invalid):
        parser_for("text/occi").entity(b"", many)
    with pytest.raises(errors.Invalid):
        parser_for("text/occi").entity(b"", [(b"x-occi-attribute", b",".join([b"a%d=1" % i for i in range(5000)]))])
    with pytest.raises(errors.CumuloError):
        parser_for("application/occi+json").entity(b'{"kind":"k","attributes":{"a":' + b"1" * 5000 + b"}}", [])
    with pytest.raises(errors.Invalid):
        check_entity(parser_for("application/occi+json").entity(
            b'{"kind":"' + INFRA.encode() + b'compute","attributes":{"occi.compute.memory":' + b"9" * 4000 + b"}}", []),
            C.COMPUTE, [], create=False)


def test_crlf_injection_in_headers_is_refused() -> None:
    with pytest.raises(errors.Invalid):
        parser_for("text/occi").entity(b"", [("X-OCCI-Attribute", 'occi.core.title="a"\r\nX-Evil: 1')])
    with pytest.raises(errors.Invalid):
        parser_for("text/occi").entity(b"", [("X-OCCI-Attribute", 'occi.core.title="\ud800"')])


def test_unsupported_content_type() -> None:
    with pytest.raises(errors.UnsupportedMediaType):
        parser_for("application/x-www-form-urlencoded")
    with pytest.raises(errors.UnsupportedMediaType):
        parser_for("text/html; charset=utf-8")


def test_rendering_odd_stored_data_never_raises() -> None:
    # Data the cloud stores (names, image titles) may hold anything; renderings stay well formed.
    odd = "a\ud800b\r\nX-Evil: 1\x00"
    e = Entity(kind=C.COMPUTE.id, id="i\nd", location="/compute/i\r\nd", mixins=["http://e/#m\n"],
               attributes={"occi.core.title": odd, "com.example.list": [odd], "occi.compute.memory": float("inf")},
               actions=[C.STOP.id])
    for mt in ("text/plain", "text/occi", "application/occi+json", "application/json"):
        r = renderer_for(mt, "http://h/occi").entity(e)
        raw = r.raw_headers()
        assert all(b"\r" not in v and b"\n" not in v for _, v in raw)
        r.body.decode("utf-8")
        if mt == "text/plain":
            assert all(line.split(":", 1)[0] in ("Category", "Link", "X-OCCI-Attribute")
                       for line in r.body.decode().split("\r\n") if line)
    from cumulo.occi.model import Mixin
    renderer_for("text/occi", "http://h/occi").categories([Mixin("http://e/#", "m", odd, location="/m\n/")]).raw_headers()
