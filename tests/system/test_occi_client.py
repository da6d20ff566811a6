"""Self-checks of the test-side OCCI client (tests/system/_occi_client.py) against the examples of
the specifications themselves (GFD.229 Text Rendering §5.1 and §6.1, GFD.225 JSON Rendering
appendix A; restated here, with the examples' typos mended: a missing ';' between a category's
parameters, a stray quote in the JSON's `"location:"` and a missing comma), and against a mock transport for the requests it sends. No cloud: these run
in milliseconds, and prove the client the system tests judge the server with.
"""

from __future__ import annotations

import json

import httpx
import pytest
from _occi_client import (
    COMPUTE,
    JSON,
    NETWORKINTERFACE,
    TEXT_OCCI,
    TEXT_PLAIN,
    InlineLink,
    Occi,
    action_id,
    categories_from_json,
    entity_from_json,
    entity_from_text,
)
from _occi_text import header_fields, parse_category, parse_link, split_list, text_fields

# GFD.229 §5.1 (text/plain), printed with backslash continuations; the ';' the ABNF requires between
# the scheme and class parameters (missing in the printed example) restored.
PLAIN_EXAMPLE = """\
Category: compute; \\
    scheme="http://schemas.ogf.org/occi/infrastructure#"; \\
    class="kind";
Link: </users/foo/compute/b9ff813e-fee5-4a9d-b839-673f39746096?action=start>; \\
    rel="http://schemas.ogf.org/occi/infrastructure/compute/action#start"
X-OCCI-Attribute: occi.core.id="urn:uuid:b9ff813e-fee5-4a9d-b839-673f39746096"
X-OCCI-Attribute: occi.core.title="My Dummy VM"
X-OCCI-Attribute: occi.compute.architecture="x86"
X-OCCI-Attribute: occi.compute.state="inactive"
X-OCCI-Attribute: occi.compute.speed=1.33
X-OCCI-Attribute: occi.compute.memory=2.0
X-OCCI-Attribute: occi.compute.cores=2
X-OCCI-Attribute: occi.compute.hostname="dummy"
"""

# GFD.229 §6.1 (text/occi): the attributes as one comma-joined header.
HEADER_ATTRS = ('occi.core.id="urn:uuid:b9ff813e-fee5-4a9d-b839-673f39746096", occi.core.title="My Dummy VM", '
                'occi.compute.architecture="x86", occi.compute.state="inactive", occi.compute.speed=1.33, '
                'occi.compute.memory=2.0, occi.compute.cores=2, occi.compute.hostname="dummy"')

# GFD.225 appendix A.1 (the resource example), typos mended.
JSON_RESOURCE = {
    "kind": "http://schemas.ogf.org/occi/infrastructure#compute",
    "mixins": ["http://example.com/occi/infrastructure/os_tpl#debian9",
               "http://example.com/occi/infrastructure/resource_tpl#medium"],
    "attributes": {"occi.compute.speed": 2, "occi.compute.memory": 4, "occi.compute.cores": 2,
                   "com.example.occi.templates.myosmixin": {"mykey": "myvalue"}},
    "actions": ["http://schemas.ogf.org/occi/infrastructure/compute/action#start"],
    "id": "urn:uuid:996ad860-2a9a-504f-8861-aeafd0b2ae29",
    "links": [{
        "kind": "http://schemas.ogf.org/occi/infrastructure#networkinterface",
        "mixins": ["http://schemas.ogf.org/occi/infrastructure/networkinterface#ipnetworkinterface"],
        "attributes": {"occi.infrastructure.networkinterface.interface": "eth0",
                       "occi.infrastructure.networkinterface.address": "192.168.0.100"},
        "id": "urn:uuid:22fe83ae-a20f-54fc-b436-cec85c94c5e8",
        "target": {"location": "/network/b7d55bf4-7057-5113-85c8-141871bf7635",
                   "kind": "http://schemas.ogf.org/occi/infrastructure#network"},
        "source": {"location": "/compute/996ad860-2a9a-504f-8861-aeafd0b2ae29",
                   "kind": "http://schemas.ogf.org/occi/infrastructure#compute"},
    }],
}

# GFD.225 appendix A.4 and A.5 (kind and mixin examples), as a query interface answer.
JSON_MODEL = {
    "kinds": [{"term": "compute", "scheme": "http://schemas.ogf.org/occi/infrastructure#", "title": "ComputeResource",
               "parent": "http://schemas.ogf.org/occi/core#resource",
               "attributes": {"occi.compute.state": {"mutable": False, "required": False, "type": "string",
                                                     "default": "inactive"}},
               "actions": ["http://schemas.ogf.org/occi/infrastructure/compute/action#start"],
               "location": "/compute/"}],
    "mixins": [{"term": "medium", "scheme": "http://example.com/template/resource#",
                "depends": ["http://schemas.ogf.org/occi/infrastructure#resourcetpl"],
                "applies": ["http://schemas.ogf.org/occi/infrastructure#compute"],
                "attributes": {"occi.compute.speed": {"type": "number", "default": 2.8}},
                "title": "MediumVM", "location": "/template/resource/medium/"}],
    "actions": [{"term": "stop", "scheme": "http://schemas.ogf.org/occi/infrastructure/compute/action#",
                 "attributes": {"method": {"mutable": True, "type": "string", "default": "poweroff"}}}],
}


def test_text_plain_example() -> None:
    ent = entity_from_text(text_fields(PLAIN_EXAMPLE))
    assert ent.kind == COMPUTE
    assert ent.actions == [action_id(COMPUTE, "start")]
    assert ent.links == []
    assert ent.attributes["occi.core.id"] == "urn:uuid:b9ff813e-fee5-4a9d-b839-673f39746096"
    assert ent.attributes["occi.compute.speed"] == 1.33
    assert ent.attributes["occi.compute.memory"] == 2.0
    assert ent.attributes["occi.compute.cores"] == 2 and isinstance(ent.attributes["occi.compute.cores"], int)
    assert ent.attributes["occi.compute.hostname"] == "dummy"


def test_text_occi_example_comma_joined_and_repeated() -> None:
    headers = httpx.Headers([
        ("Category", 'compute; scheme="http://schemas.ogf.org/occi/infrastructure#"; class="kind"'),
        ("Link", '</users/foo/compute/b9ff813e?action=start>; '
                 'rel="http://schemas.ogf.org/occi/infrastructure/compute/action#start"'),
        ("X-OCCI-Attribute", HEADER_ATTRS),
    ])
    joined = entity_from_text(header_fields(headers))
    repeated = entity_from_text(text_fields(PLAIN_EXAMPLE))
    assert joined.attributes == repeated.attributes
    assert joined.kind == COMPUTE and joined.actions == repeated.actions


def test_category_with_every_parameter() -> None:
    cat = parse_category('compute; scheme="http://schemas.ogf.org/occi/infrastructure#"; class="kind"; '
                         'title="Compute Resource"; rel="http://schemas.ogf.org/occi/core#resource"; '
                         'location="/compute/"; attributes="occi.compute.cores occi.compute.state{immutable} '
                         'occi.core.id{immutable required}"; '
                         'actions="http://schemas.ogf.org/occi/infrastructure/compute/action#start '
                         'http://schemas.ogf.org/occi/infrastructure/compute/action#stop"')
    assert cat.id == COMPUTE and cat.cls == "kind" and cat.title == "Compute Resource"
    assert cat.rel == ["http://schemas.ogf.org/occi/core#resource"] and cat.location == "/compute/"
    assert cat.attributes == {"occi.compute.cores": set(), "occi.compute.state": {"immutable"},
                              "occi.core.id": {"immutable", "required"}}
    assert cat.actions == [action_id(COMPUTE, "start"), action_id(COMPUTE, "stop")]


@pytest.mark.parametrize("bad", ['compute; class="kind"', '; scheme="x#"; class="kind"', 'c@t; scheme="x#"; class="kind"',
                                 'compute; scheme="http://x#; class="kind"'])
def test_malformed_categories_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_category(bad)


def test_link_with_category_self_and_attributes() -> None:
    link = parse_link('</network/123>; rel="http://schemas.ogf.org/occi/infrastructure#network"; '
                      'self="/networkinterface/456"; category="http://schemas.ogf.org/occi/infrastructure#networkinterface '
                      'http://schemas.ogf.org/occi/infrastructure/networkinterface#ipnetworkinterface"; '
                      'occi.networkinterface.interface="eth0"; occi.networkinterface.address="10.0.0.5"')
    assert link.target == "/network/123" and not link.is_action and link.self_ == "/networkinterface/456"
    assert link.category[0] == NETWORKINTERFACE
    assert link.attributes == {"occi.networkinterface.interface": "eth0", "occi.networkinterface.address": "10.0.0.5"}


def test_split_list_keeps_quoted_commas_and_uris() -> None:
    assert split_list('a="x, y", b=2, <http://h/p?a=1,2>; rel="r"') == ['a="x, y"', "b=2", '<http://h/p?a=1,2>; rel="r"']


def test_json_examples() -> None:
    ent = entity_from_json(JSON_RESOURCE)
    assert ent.kind == COMPUTE and ent.attributes["occi.compute.memory"] == 4
    assert ent.id == "urn:uuid:996ad860-2a9a-504f-8861-aeafd0b2ae29"
    assert [ln.target for ln in ent.links] == ["/network/b7d55bf4-7057-5113-85c8-141871bf7635"]
    assert ent.links[0].category[0] == NETWORKINTERFACE
    cats = {c.id: c for c in categories_from_json(JSON_MODEL)}
    assert cats[COMPUTE].cls == "kind" and cats[COMPUTE].location == "/compute/"
    assert cats["http://example.com/template/resource#medium"].applies == [COMPUTE]
    assert cats[action_id(COMPUTE, "stop")].cls == "action"


def _recording_client(rendering: str, answer: httpx.Response) -> tuple[Occi, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer

    occi = Occi("http://occi.test", rendering, token="tok")
    occi.http = httpx.Client(base_url="http://occi.test", headers=occi.http.headers, transport=httpx.MockTransport(handler))
    occi._kind_locations = {COMPUTE: "/occi/compute/"}
    return occi, seen


@pytest.mark.parametrize("rendering", [TEXT_PLAIN, TEXT_OCCI, JSON])
def test_create_request_in_each_rendering(rendering: str) -> None:
    answer = httpx.Response(201, headers={"Location": "http://occi.test/occi/compute/1", "Server": "x OCCI/1.2"})
    occi, seen = _recording_client(rendering, answer)
    link = InlineLink(target="/occi/network/n1", target_kind="http://schemas.ogf.org/occi/infrastructure#network",
                      kind=NETWORKINTERFACE)
    loc = occi.create(COMPUTE, mixins=["http://schemas.openstack.org/template/os#img"],
                      attributes={"occi.core.title": 'a "q", b', "occi.compute.cores": 1}, links=[link])
    assert loc == "http://occi.test/occi/compute/1"
    req = seen[0]
    assert req.method == "POST" and req.url.path == "/occi/compute/" and req.headers["X-Auth-Token"] == "tok"
    assert "OCCI/1.2" in req.headers["User-Agent"]
    if rendering == JSON:
        body = json.loads(req.content)
        assert body["kind"] == COMPUTE and body["attributes"]["occi.compute.cores"] == 1
        assert body["links"][0]["target"]["location"] == "/occi/network/n1"
        return
    f = text_fields(req.content.decode()) if rendering == TEXT_PLAIN else header_fields(req.headers)
    ent = entity_from_text(f)  # what we send parses back per the same ABNF
    assert ent.kind == COMPUTE and ent.mixins == ["http://schemas.openstack.org/template/os#img"]
    assert ent.attributes == {"occi.core.title": 'a "q", b', "occi.compute.cores": 1}
    assert ent.links[0].target == "/occi/network/n1" and ent.links[0].category == [NETWORKINTERFACE]


@pytest.mark.parametrize("rendering", [TEXT_PLAIN, TEXT_OCCI, JSON])
def test_action_request_in_each_rendering(rendering: str) -> None:
    occi, seen = _recording_client(rendering, httpx.Response(200, headers={"Server": "x OCCI/1.2"}))
    occi.action("/occi/compute/1", action_id(COMPUTE, "stop"), {"method": "poweroff"})
    req = seen[0]
    assert req.url.params["action"] == "stop"
    if rendering == JSON:
        assert json.loads(req.content) == {"action": action_id(COMPUTE, "stop"), "attributes": {"method": "poweroff"}}
        return
    f = text_fields(req.content.decode()) if rendering == TEXT_PLAIN else header_fields(req.headers)
    cat = parse_category(f["Category"][0])
    assert cat.id == action_id(COMPUTE, "stop") and cat.cls == "action"
    assert f["X-OCCI-Attribute"] == ['method="poweroff"']


def test_filters_travel_in_headers_for_every_rendering() -> None:
    occi, seen = _recording_client(JSON, httpx.Response(200, json={"resources": []},
                                                        headers={"Server": "x OCCI/1.2", "Content-Type": JSON}))
    assert occi.locations("/compute/", category=COMPUTE, attributes={"occi.core.title": "x"}) == []
    req = seen[0]
    assert parse_category(req.headers["Category"]).id == COMPUTE
    assert req.headers["X-OCCI-Attribute"] == 'occi.core.title="x"' and not req.content


def test_the_vendored_schema_takes_the_spec_examples() -> None:
    from _occi_util import validate_json

    assert validate_json(JSON_RESOURCE, "resource") and validate_json(JSON_MODEL, "model")
    with pytest.raises(Exception, match="is not of type"):
        validate_json({"kind": 1, "id": "x"}, "resource")
