"""text/uri-list (RFC 2483; GFD.229 §7): listings only."""

from __future__ import annotations

import pytest

from cumulo import errors
from cumulo.occi import categories as C
from cumulo.occi.model import Entity
from cumulo.occi.render.base import URI_LIST
from cumulo.occi.render.select import parser_for, renderer_for

BASE = "http://127.0.0.1:8774/occi"


def test_render_listing() -> None:
    r = renderer_for(URI_LIST, BASE)
    es = [Entity(kind=C.COMPUTE.id, id="a", location="/compute/a"), Entity(kind=C.STORAGE.id, id="b", location="/storage/b")]
    out = r.collection(es)
    assert out.content_type == URI_LIST
    assert out.body == f"{BASE}/compute/a\r\n{BASE}/storage/b\r\n".encode()
    assert r.collection([]).body == b""
    cats = r.categories([C.COMPUTE, C.ENTITY, C.STOP, C.OS_TPL]).body.decode().split("\r\n")
    assert cats == [f"{BASE}/compute/", f"{BASE}/os_tpl/", ""]
    with pytest.raises(errors.Invalid):
        r.entity(es[0])
    assert r.message("bad\nthing").body == b"# bad thing\r\n"


def test_parse_membership() -> None:
    body = b"# a comment\r\nhttp://h/occi/compute/a\r\n\r\n/occi/compute/b\n"
    assert parser_for("text/uri-list").locations(body, []) == ["http://h/occi/compute/a", "/occi/compute/b"]
    for bad in (b"http://h/a b\n", b"\xff\n"):
        with pytest.raises(errors.Invalid):
            parser_for("text/uri-list").locations(bad, [])
    with pytest.raises(errors.Invalid):
        parser_for("text/uri-list").entity(b"/compute/a", [])
