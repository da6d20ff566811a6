"""text/plain and text/occi (GFD.229): parsing examples written from the specification text (the
GFD.229 §5.1 and §6.1 entity examples, the ABNF forms, 1.1 forms of GFD.185/GFD.183 clients), and
rendering checked against the ABNF, not only round-tripped."""

from __future__ import annotations

import re

import pytest

from cumulo import errors
from cumulo.occi import categories as C
from cumulo.occi.model import Entity, Kind, Mixin
from cumulo.occi.render.base import TEXT_OCCI, TEXT_PLAIN
from cumulo.occi.render.select import filter_categories, filter_entity, parser_for, renderer_for
from cumulo.occi.render.text import TextParser

INFRA = "http://schemas.ogf.org/occi/infrastructure#"
BASE = "http://127.0.0.1:8774/occi"

# GFD.229 §5.1 (text/plain example), as a client sends it: one field per line, CRLF.
SPEC_PLAIN = (
    'Category: compute; scheme="http://schemas.ogf.org/occi/infrastructure#" class="kind";\r\n'
)
SPEC_PLAIN_BODY = (
    'Category: compute; scheme="http://schemas.ogf.org/occi/infrastructure#"; class="kind";\r\n'
    'Link: </users/foo/compute/b9ff813e-fee5-4a9d-b839-673f39746096?action=start>; '
    'rel="http://schemas.ogf.org/occi/infrastructure/compute/action#start"\r\n'
    'X-OCCI-Attribute: occi.core.id="urn:uuid:b9ff813e-fee5-4a9d-b839-673f39746096"\r\n'
    'X-OCCI-Attribute: occi.core.title="My Dummy VM"\r\n'
    'X-OCCI-Attribute: occi.compute.architecture="x86"\r\n'
    'X-OCCI-Attribute: occi.compute.state="inactive"\r\n'
    "X-OCCI-Attribute: occi.compute.speed=1.33\r\n"
    "X-OCCI-Attribute: occi.compute.memory=2.0\r\n"
    "X-OCCI-Attribute: occi.compute.cores=2\r\n"
    'X-OCCI-Attribute: occi.compute.hostname="dummy"\r\n'
)
SPEC_ATTRS = {
    "occi.core.id": "urn:uuid:b9ff813e-fee5-4a9d-b839-673f39746096",
    "occi.core.title": "My Dummy VM",
    "occi.compute.architecture": "x86",
    "occi.compute.state": "inactive",
    "occi.compute.speed": 1.33,
    "occi.compute.memory": 2.0,
    "occi.compute.cores": 2,
    "occi.compute.hostname": "dummy",
}


def test_spec_text_plain_example() -> None:
    req = parser_for("text/plain").entity(SPEC_PLAIN_BODY.encode(), [])
    assert req.kind == INFRA + "compute"
    assert req.mixins == []
    assert req.links == []  # the action link is not an inline link
    assert req.attributes == SPEC_ATTRS
    assert isinstance(req.attributes["occi.compute.cores"], int)
    assert isinstance(req.attributes["occi.compute.memory"], float)


def test_spec_missing_semicolon_is_named() -> None:
    # `scheme="..." class="kind"` without the ";" the ABNF demands
    with pytest.raises(errors.Invalid) as e:
        parser_for("text/plain").entity(SPEC_PLAIN.encode(), [])
    assert "Category: compute" in e.value.message


def test_spec_text_occi_header_example() -> None:
    # GFD.229 §6.1: the same entity in headers, the attributes comma-joined in one header.
    headers = [
        (b"Category", b'compute; scheme="http://schemas.ogf.org/occi/infrastructure#"; class="kind";'),
        (b"Link", b'</users/foo/compute/b9ff813e-fee5-4a9d-b839-673f39746096?action=start>; '
                  b'rel="http://schemas.ogf.org/occi/infrastructure/compute/action#start"'),
        (b"X-OCCI-Attribute", b'occi.core.id="urn:uuid:b9ff813e-fee5-4a9d-b839-673f39746096", '
                              b'occi.core.title="My Dummy VM", occi.compute.architecture="x86", '
                              b'occi.compute.state="inactive", occi.compute.speed=1.33, '
                              b'occi.compute.memory=2.0, occi.compute.cores=2, '
                              b'occi.compute.hostname="dummy"'),
    ]
    req = parser_for("text/occi").entity(b"OK", headers)
    assert req.kind == INFRA + "compute"
    assert req.attributes == SPEC_ATTRS


def test_repeated_and_comma_joined_headers_are_equal() -> None:
    joined = [(b"x-occi-attribute", b'occi.compute.cores=2, occi.compute.hostname="a,b"')]
    repeated = [(b"X-OCCI-Attribute", b"occi.compute.cores=2"), (b"X-OCCI-Attribute", b'occi.compute.hostname="a,b"')]
    p = parser_for("text/occi")
    assert p.entity(b"", joined).attributes == p.entity(b"", repeated).attributes == {
        "occi.compute.cores": 2, "occi.compute.hostname": "a,b"}


def test_create_with_mixins_and_inline_links() -> None:
    # A create request in the shape of GFD.223 §7.3 + GFD.229 Link ABNF: os_tpl/resource_tpl mixins,
    # contextualization, a storagelink and a networkinterface inline.
    body = (
        'Category: compute; scheme="http://schemas.ogf.org/occi/infrastructure#"; class="kind"\n'
        'Category: 7bd9a5a5-1b3c-4e0a-9f0e-000000000001; scheme="http://schemas.openstack.org/template/os#"; class="mixin"\n'
        'Category: m1.small; scheme="http://schemas.openstack.org/template/resource#"; class="mixin"\n'
        'Category: user_data; scheme="http://schemas.ogf.org/occi/infrastructure/compute#"; class="mixin"\n'
        'Link: </occi/storage/11>; rel="http://schemas.ogf.org/occi/infrastructure#storage"; '
        'category="http://schemas.ogf.org/occi/infrastructure#storagelink"; occi.storagelink.deviceid="/dev/vdb"\n'
        'Link: <http://127.0.0.1:8774/occi/network/22>; rel="http://schemas.ogf.org/occi/infrastructure#network"; '
        'category="http://schemas.ogf.org/occi/infrastructure#networkinterface '
        'http://schemas.ogf.org/occi/infrastructure/networkinterface#ipnetworkinterface"; '
        'occi.networkinterface.address="10.0.0.5"\n'
        'X-OCCI-Attribute: occi.core.title="vm1"\n'
        'X-OCCI-Attribute: occi.compute.userdata="#!/bin/sh\\necho hi > /tmp/x\\n"\n'
    )
    req = parser_for(TEXT_PLAIN).entity(body.encode(), [])
    assert req.mixins == [
        "http://schemas.openstack.org/template/os#7bd9a5a5-1b3c-4e0a-9f0e-000000000001",
        "http://schemas.openstack.org/template/resource#m1.small",
        "http://schemas.ogf.org/occi/infrastructure/compute#user_data",
    ]
    assert req.attributes["occi.compute.userdata"] == "#!/bin/sh\necho hi > /tmp/x\n"
    sl, ni = req.links
    assert sl.target == "/occi/storage/11" and sl.kind == INFRA + "storagelink"
    assert sl.attributes == {"occi.core.target.kind": INFRA + "storage", "occi.storagelink.deviceid": "/dev/vdb"}
    assert ni.target == "http://127.0.0.1:8774/occi/network/22" and ni.kind == INFRA + "networkinterface"
    assert ni.mixins == ["http://schemas.ogf.org/occi/infrastructure/networkinterface#ipnetworkinterface"]
    assert ni.attributes["occi.networkinterface.address"] == "10.0.0.5"


def test_occi_11_forms() -> None:
    # GFD.185 / rOCCI 1.1 clients: unquoted class, unquoted enum token, no class on a known kind,
    # a link given only by rel (kind inferred later), obs-folded continuation lines.
    body = (
        "Category: compute; scheme=\"http://schemas.ogf.org/occi/infrastructure#\"; class=kind\n"
        "Category: ssh_key;\n  scheme=\"http://schemas.ogf.org/occi/infrastructure/credentials#\"; class=mixin\n"
        "Link: </network/public>; rel=\"http://schemas.ogf.org/occi/infrastructure#network\"\n"
        "X-OCCI-Attribute: occi.compute.architecture=x64\n"
        "X-OCCI-Attribute: occi.credentials.ssh.publickey=\"ssh-rsa AAAA user@host\"\n"
    )
    req = parser_for("text/plain").entity(body.encode(), [])
    assert req.kind == INFRA + "compute"
    assert req.mixins == ["http://schemas.ogf.org/occi/infrastructure/credentials#ssh_key"]
    assert req.attributes["occi.compute.architecture"] == "x64"
    assert req.links[0].kind is None and req.links[0].target == "/network/public"
    no_class = 'Category: storage; scheme="http://schemas.ogf.org/occi/infrastructure#"\n'
    assert parser_for("text/plain").entity(no_class.encode(), []).kind == INFRA + "storage"


def test_action_invocation() -> None:
    # GFD.229 §5.1.1: action_definition = 1(Category) *(Attribute)
    body = (b'Category: stop; scheme="http://schemas.ogf.org/occi/infrastructure/compute/action#"; class="action"\n'
            b'X-OCCI-Attribute: method="poweroff"\n')
    act = parser_for("text/plain").action(body, [])
    assert act.action == C.STOP.id and act.attributes == {"method": "poweroff"}
    assert parser_for(None).action(b"", []).action == ""  # none sent: the API uses ?action=
    with pytest.raises(errors.Invalid):
        parser_for("text/plain").action(b'Category: compute; scheme="' + INFRA.encode() + b'"; class="kind"\n', [])


def test_user_mixin_definition_and_filters() -> None:
    # GFD.223 §5.3: POST /-/ with a full Category rendering of a user mixin.
    hdr = [(b"Category", b'my_stuff; scheme="http://example.com/occi/my_stuff#"; class="mixin"; '
                         b'location="/my_stuff/"; title="My Stuff"; rel="http://schemas.ogf.org/occi/infrastructure#os_tpl"')]
    (m,) = parser_for("text/occi").categories(b"", hdr)
    assert isinstance(m, Mixin)
    assert (m.id, m.location, m.title, m.depends) == (
        "http://example.com/occi/my_stuff#my_stuff", "/my_stuff/", "My Stuff", (C.OS_TPL.id,))
    with pytest.raises(errors.Invalid):  # class is required in a definition
        parser_for("text/occi").categories(b"", [(b"Category", b'x; scheme="http://e/#"')])
    # GFD.223 §6.1 filter on the query interface (class optional)
    (f,) = filter_categories([(b"Category", b'compute; scheme="http://schemas.ogf.org/occi/infrastructure#"')])
    assert f.id == C.COMPUTE.id
    # §6.2 filter on a collection: an entity rendering in headers
    fe = filter_entity([(b"X-OCCI-Attribute", b'occi.core.title="web"')])
    assert fe.kind is None and fe.attributes == {"occi.core.title": "web"}


def test_locations() -> None:
    hdr = [(b"X-OCCI-Location", b"/occi/compute/1, http://h/occi/compute/2"), (b"X-OCCI-Location", b"/compute/3")]
    assert parser_for("text/occi").locations(b"", hdr) == ["/occi/compute/1", "http://h/occi/compute/2", "/compute/3"]
    assert parser_for("text/plain").locations(b"X-OCCI-Location: /occi/storage/9\r\n", []) == ["/occi/storage/9"]


@pytest.mark.parametrize(
    "line",
    [
        'Category: ; scheme="http://a#"; class="kind"',
        'Category: compute; class="kind"',
        'Category: compute; scheme="http://a#"; class="widget"',
        'Category: compute; scheme="http://a#"; class="kind"; class="mixin"',
        'Category: comp ute; scheme="http://a#"; class="kind"',
        'Category: compute; scheme="http://a#; class="kind"',
        "X-OCCI-Attribute: occi.compute.cores",
        "X-OCCI-Attribute: =2",
        "X-OCCI-Attribute: occi.compute.hostname=\"unterminated",
        "X-OCCI-Attribute: occi.compute.hostname=two words",
        'X-OCCI-Attribute: occi.core.title="\\ud800"',
        'X-OCCI-Attribute: occi.core.title="a\\u0000b"',
        "X-OCCI-Attribute: occi.compute.cores=" + "9" * 100,
        "Link: /network/1; rel=\"http://schemas.ogf.org/occi/infrastructure#network\"",
        "Link: </network/1>; rel=",
        "this is not a field",
    ],
)
def test_malformed_lines_name_the_line(line: str) -> None:
    body = 'Category: compute; scheme="http://schemas.ogf.org/occi/infrastructure#"; class="kind"\n' + line + "\n"
    with pytest.raises(errors.Invalid) as e:
        parser_for("text/plain").entity(body.encode(), [])
    assert e.value.message


def test_two_kinds_and_duplicate_attributes() -> None:
    two = (f'Category: compute; scheme="{INFRA}"; class="kind"\n'
           f'Category: storage; scheme="{INFRA}"; class="kind"\n')
    with pytest.raises(errors.Invalid, match="more than one kind"):
        parser_for("text/plain").entity(two.encode(), [])
    with pytest.raises(errors.Invalid, match="occi.core.title"):
        parser_for("text/plain").entity(b'X-OCCI-Attribute: occi.core.title="a"\nX-OCCI-Attribute: occi.core.title="b"\n', [])


# --- rendering -------------------------------------------------------------------------------------

CATEGORY_RE = re.compile(
    r'^[A-Za-z0-9][A-Za-z0-9_.\-]*; scheme="[^"]+"; class="(kind|mixin|action)"'
    r'(; title="(?:[^"\\]|\\.)*")?(; rel="[^"]+")?(; location="[^"]+")?'
    r'(; attributes="[^"]*")?(; actions="[^"]*")?$'
)


def _compute() -> Entity:
    link = Entity(kind=C.STORAGELINK.id, id="sl1", location="/storagelink/sl1",
                  attributes={"occi.core.source": "/compute/c1", "occi.core.target": "/storage/s1",
                              "occi.storagelink.deviceid": "/dev/vdb", "occi.storagelink.state": "active"})
    return Entity(kind=C.COMPUTE.id, id="c1", location="/compute/c1",
                  mixins=["http://schemas.openstack.org/template/os#img"],
                  attributes={"occi.core.title": 'web "1"\r\nX-Evil: yes', "occi.compute.cores": 2,
                              "occi.compute.memory": 0.5, "occi.compute.state": "active"},
                  actions=[C.STOP.id, C.RESTART.id], links=[link])


def test_render_entity_text_plain() -> None:
    r = renderer_for(TEXT_PLAIN, BASE + "/").entity(_compute())
    assert r.content_type == TEXT_PLAIN and r.headers == []
    lines = r.body.decode().split("\r\n")
    assert lines[-1] == ""
    assert lines[0] == f'Category: compute; scheme="{INFRA}"; class="kind"'
    assert lines[1] == 'Category: img; scheme="http://schemas.openstack.org/template/os#"; class="mixin"'
    assert lines[2].startswith(f'Link: <{BASE}/storage/s1>; rel="{INFRA}storage"; self="{BASE}/storagelink/sl1"; '
                               f'category="{INFRA}storagelink"')
    assert f'Link: <{BASE}/compute/c1?action=stop>; rel="{C.STOP.id}"' in lines
    assert 'X-OCCI-Attribute: occi.core.id="c1"' in lines
    assert "X-OCCI-Attribute: occi.compute.cores=2" in lines
    assert "X-OCCI-Attribute: occi.compute.memory=0.5" in lines
    assert not any(line.startswith("X-Evil") for line in lines)  # CRLF in a value cannot inject a field


def test_render_entity_text_occi_headers_and_back() -> None:
    e = _compute()
    r = renderer_for(TEXT_OCCI, BASE).entity(e)
    assert r.body == b"OK" and r.content_type == TEXT_OCCI
    names = [n for n, _ in r.headers]
    assert names == ["Category", "Link", "X-OCCI-Attribute"]
    assert all("\r" not in v and "\n" not in v for _, v in r.headers)
    back = TextParser(TEXT_OCCI).entity(b"OK", r.raw_headers())
    assert back.kind == C.COMPUTE.id and back.mixins == e.mixins
    assert back.attributes["occi.core.title"] == e.attributes["occi.core.title"]
    assert [lk.target for lk in back.links] == [f"{BASE}/storage/s1"]


def test_render_query_interface_lines_follow_the_abnf() -> None:
    tpl = Mixin("http://schemas.openstack.org/template/os#", "img", "Debian (container)", depends=(C.OS_TPL.id,),
                applies=(C.COMPUTE.id,), location="/os_tpl/img/")
    r = renderer_for(TEXT_PLAIN, BASE).categories([*C.ALL, tpl])
    lines = [x for x in r.body.decode().split("\r\n") if x]
    assert len(lines) == len(C.ALL) + 1
    for line in lines:
        assert line.startswith("Category: ")
        assert CATEGORY_RE.match(line[len("Category: "):]), line
    compute = next(x for x in lines if x.startswith("Category: compute;"))
    assert f'rel="{C.RESOURCE.id}"' in compute and f'location="{BASE}/compute/"' in compute
    assert "occi.compute.state{immutable}" in compute and "occi.core.id{immutable}" in compute
    # GFD.185 §3.5.1's example of the storage kind's attribute list
    storage = next(x for x in lines if x.startswith("Category: storage;"))
    assert "occi.storage.size{required} occi.storage.state{immutable}" in storage
    assert f"{C.START.id} {C.STOP.id}" in compute
    img = next(x for x in lines if x.startswith("Category: img;"))
    assert f'rel="{C.OS_TPL.id}"' in img and f'location="{BASE}/os_tpl/img/"' in img
    # and our parser reads our definitions back
    cats = parser_for("text/plain").categories(r.body, [])
    assert isinstance(cats[3], Kind) and cats[3].id == C.COMPUTE.id
    assert {a.name for a in cats[3].attributes} == set(C.attributes_of(C.COMPUTE.id))


def test_render_collection_and_message() -> None:
    e = _compute()
    r = renderer_for(TEXT_PLAIN, BASE).collection([e, e.links[0]])
    assert r.body == f"X-OCCI-Location: {BASE}/compute/c1\r\nX-OCCI-Location: {BASE}/storagelink/sl1\r\n".encode()
    h = renderer_for(TEXT_OCCI, BASE).collection([e])
    assert h.headers == [("X-OCCI-Location", f"{BASE}/compute/c1")] and h.body == b"OK"
    assert renderer_for(TEXT_OCCI, BASE).collection([]).headers == []
    m = renderer_for(TEXT_PLAIN, BASE).message("unknown attribute foo\r\nX: y")
    assert b"\r" not in m.body.rstrip(b"\n") and m.body.count(b"\n") == 1


def test_long_header_values_are_split_not_truncated() -> None:
    locs = [f"/compute/{i:036d}" for i in range(400)]
    r = renderer_for(TEXT_OCCI, BASE).locations(locs)
    assert len(r.headers) > 1 and all(len(v) <= 7100 for _, v in r.headers)
    assert parser_for("text/occi").locations(b"", r.raw_headers()) == [BASE + x for x in locs]


def test_category_ids_split_into_scheme_and_term() -> None:
    e = Entity(kind=C.COMPUTE.id, id="c", location="/compute/c", mixins=["http://example.com/tags/blue"])
    body = renderer_for(TEXT_PLAIN, BASE).entity(e).body.decode()
    assert 'Category: blue; scheme="http://example.com/tags/"; class="mixin"' in body
    back = parser_for(TEXT_PLAIN).entity(body.encode(), [])
    assert back.mixins == ["http://example.com/tags/blue"]
