"""OCCI 1.1 text forms (GFD.185, the RESTful HTTP Rendering of 2011) that 1.1 clients still send; the
examples are written here from that document's text (folded lines as it prints them)."""

from __future__ import annotations

from cumulo.occi import categories as C
from cumulo.occi.model import Kind, Mixin
from cumulo.occi.render.select import parser_for

INFRA = "http://schemas.ogf.org/occi/infrastructure#"


def _body(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def test_create_with_inline_link_folded_lines() -> None:
    # GFD.185 §3.4.4 "Creating a Resource instance with pre-defined Links"
    body = _body(
        "Category: compute;\n"
        '            scheme="http://schemas.ogf.org/occi/infrastructure#";\n'
        '            class="kind";\n'
        "Link: </network/123>;\n"
        '        rel="http://schemas.ogf.org/occi/infrastructure#network";\n'
        '        category="http://schemas.ogf.org/occi/infrastructure#networkinterface";\n'
        '        occi.networkinterface.interface="eth0";\n'
        '        occi.networkinterface.mac="00:11:22:33:44:55";\n'
        "X-OCCI-Attribute: occi.compute.cores=2\n"
        'X-OCCI-Attribute: occi.compute.hostname="foobar"\n'
    )
    req = parser_for("text/plain").entity(body, [])
    assert req.kind == INFRA + "compute"
    assert req.attributes == {"occi.compute.cores": 2, "occi.compute.hostname": "foobar"}
    (link,) = req.links
    assert link.target == "/network/123" and link.kind == INFRA + "networkinterface"
    assert link.attributes == {"occi.core.target.kind": INFRA + "network",
                               "occi.networkinterface.interface": "eth0",
                               "occi.networkinterface.mac": "00:11:22:33:44:55"}


def test_put_with_quoted_class_parameter() -> None:
    # GFD.185 §3.4.4 PUT example writes the class parameter as "class=kind"
    body = _body('Category: compute; scheme="http://schemas.ogf.org/occi/infrastructure#"; "class=kind"; \n'
                 "X-OCCI-Attribute: occi.compute.cores=2\n")
    assert parser_for("text/plain").entity(body, []).kind == INFRA + "compute"


def test_link_entity_and_its_rendering() -> None:
    # GFD.185 §3.4.5: POST /link/networkinterface/ with source and target as attributes
    body = _body(
        "Category: networkinterface;\n"
        '            scheme="http://schemas.ogf.org/occi/infrastructure#";\n'
        '            class="kind";\n'
        'X-OCCI-Attribute: occi.core.source="http://example.com/vms/foo/vm1"\n'
        'X-OCCI-Attribute: occi.core.target="http://example.com/network/123"\n'
    )
    req = parser_for("text/plain").entity(body, [])
    assert req.kind == C.NETWORKINTERFACE.id
    assert req.attributes == {"occi.core.source": "http://example.com/vms/foo/vm1",
                              "occi.core.target": "http://example.com/network/123"}
    # ... and the server's answer, attribute lines ending in ";", echoed back by a client
    echo = _body('X-OCCI-Attribute: occi.networkinterface.interface="eth0";\n'
                 'X-OCCI-Attribute: occi.networkinterface.mac="00:11:22:33:44:55";\n')
    assert parser_for("text/plain").entity(echo, []).attributes == {
        "occi.networkinterface.interface": "eth0", "occi.networkinterface.mac": "00:11:22:33:44:55"}


def test_header_rendering_comma_forms() -> None:
    # GFD.185 §3.5: both forms MUST be supported; the text/occi example with ";," and an unquoted value
    headers = [(b"Category", b'compute; scheme="http://schemas.ogf.org/occi/infrastructure#"; class="kind";,'),
               (b"X-OCCI-Attribute", b"occi.compute.cores=2, occi.compute.hostname=foobar"),
               (b"X-OCCI-Attribute", b"occi.compute.memory=2.0, occi.compute.speed=2.33")]
    req = parser_for("text/occi").entity(b"OK", headers)
    assert req.kind == INFRA + "compute"
    assert req.attributes == {"occi.compute.cores": 2, "occi.compute.hostname": "foobar",
                              "occi.compute.memory": 2.0, "occi.compute.speed": 2.33}
    locs = [(b"X-OCCI-Location", b"/compute/123, /compute/456")]
    assert parser_for("text/occi").locations(b"", locs) == ["/compute/123", "/compute/456"]


def test_query_interface_forms() -> None:
    # GFD.185 §3.4.1: a user mixin POSTed to /-/ (rel naming the related category), and the
    # storage kind rendering example with {required}/{immutable} attribute properties.
    post = _body("Category: my_stuff;\n"
                 '          scheme="http://example.com/occi/my_stuff#";\n'
                 '          class="mixin";\n'
                 '          rel="http:/example.com/occi/something_else#mixin";\n'
                 '          location="/my_stuff/"\n')
    (m,) = parser_for("text/plain").categories(post, [])
    assert isinstance(m, Mixin) and m.id == "http://example.com/occi/my_stuff#my_stuff"
    assert m.location == "/my_stuff/" and m.depends == ("http:/example.com/occi/something_else#mixin",)
    kind = _body("Category: storage;\n"
                 '    scheme="http://schemas.ogf.org/occi/infrastructure#";\n'
                 '    class="kind";\n'
                 '    title="Storage Resource";\n'
                 '    rel="http://schemas.ogf.org/occi/core#resource";\n'
                 '    location="/storage/";\n'
                 '    attributes="occi.storage.size{required} occi.storage.state{immutable}";\n'
                 '    actions="http://schemas.ogf.org/occi/infrastructure/storage/action#resize";\n')
    (k,) = parser_for("text/plain").categories(kind, [])
    assert isinstance(k, Kind) and k.parent == C.RESOURCE.id and k.location == "/storage/"
    assert [(a.name, a.mutable, a.required) for a in k.attributes] == [
        ("occi.storage.size", True, True), ("occi.storage.state", False, False)]
    assert k.actions == (C.RESIZE.id,)
    # DELETE /-/ names the mixin with a folded Category
    gone = _body('Category: my_stuff; \n            scheme="http://example.com/occi/my_stuff#"; \n            class="mixin";\n')
    assert [c.id for c in parser_for("text/plain").categories(gone, [])] == ["http://example.com/occi/my_stuff#my_stuff"]


def test_action_on_a_collection() -> None:
    # GFD.185 §3.4.3: POST /compute/?action=stop
    body = _body('Category: stop; scheme="http://schemas.ogf.org/occi/infrastructure/compute/action#"; class="action";\n'
                 'X-OCCI-Attribute: method="poweroff"\n')
    act = parser_for("text/plain").action(body, [])
    assert act.action == C.STOP.id and act.attributes == {"method": "poweroff"}
