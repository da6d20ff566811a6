"""application/occi+json (OCCI JSON Rendering 1.2): our output validates against the specification's
own JSON schema (vendored in tests/reference/occi/), and the specification's examples parse."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from cumulo import errors
from cumulo.occi import categories as C
from cumulo.occi.model import Entity, Kind, Mixin
from cumulo.occi.render.base import OCCI_JSON
from cumulo.occi.render.select import parser_for, renderer_for

SCHEMA = json.loads((Path(__file__).parents[1] / "reference" / "occi" / "occi-1.2-schema.json").read_text())
INFRA = "http://schemas.ogf.org/occi/infrastructure#"
BASE = "http://127.0.0.1:8774/occi"


def validate(doc: Any, definition: str | None = None) -> None:
    """Against the whole schema (its anyOf) or one of its definitions."""
    schema = dict(SCHEMA)
    if definition:
        schema["anyOf"] = [{"$ref": f"#/definitions/{definition}"}]
    jsonschema.Draft4Validator(schema).validate(doc)


def test_schema_is_the_fixed_one() -> None:
    jsonschema.Draft4Validator.check_schema(SCHEMA)
    assert "#definitions/" not in json.dumps(SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        validate({"kind": 1, "id": "x"}, "resource")


def _entities() -> tuple[Entity, Entity]:
    ni = Entity(kind=C.NETWORKINTERFACE.id, id="p1", location="/networkinterface/p1",
                mixins=[C.IPNETWORKINTERFACE.id],
                attributes={"occi.core.source": "/compute/c1", "occi.core.target": "/network/n1",
                            "occi.networkinterface.interface": "eth0", "occi.networkinterface.mac": "fa:16:3e:00:00:01",
                            "occi.networkinterface.address": "10.0.0.5", "occi.networkinterface.allocation": "dynamic",
                            "occi.networkinterface.state": "active", "occi.core.title": "nic"})
    c = Entity(kind=C.COMPUTE.id, id="c1", location="/compute/c1", mixins=["http://schemas.openstack.org/template/os#i"],
               attributes={"occi.core.title": "vm", "occi.core.summary": "s", "occi.compute.cores": 2,
                           "occi.compute.memory": 2.0, "occi.compute.state": "active", "occi.compute.state.message": None,
                           "occi.compute.architecture": "x64"},
               actions=[C.STOP.id], links=[ni])
    return c, ni


def test_entity_renderings_validate() -> None:
    c, ni = _entities()
    r = renderer_for(OCCI_JSON, BASE)
    doc = json.loads(r.entity(c).body)
    validate(doc, "resource")
    assert doc["kind"] == C.COMPUTE.id and doc["id"] == "c1" and doc["title"] == "vm" and doc["summary"] == "s"
    assert doc["actions"] == [C.STOP.id]
    assert "occi.compute.state.message" not in doc["attributes"]  # None is "no value"
    assert doc["links"][0]["target"] == {"location": f"{BASE}/network/n1", "kind": INFRA + "network"}
    assert doc["links"][0]["source"] == {"location": f"{BASE}/compute/c1", "kind": INFRA + "compute"}
    validate(json.loads(r.entity(ni).body), "link")


def test_collections_validate() -> None:
    c, ni = _entities()
    r = renderer_for(OCCI_JSON, BASE)
    validate(json.loads(r.collection([c, c]).body), "resource_collection")
    validate(json.loads(r.collection([ni]).body), "link_collection")
    mixed = json.loads(r.collection([c, ni]).body)
    validate(mixed, "model")
    assert set(mixed) == {"resources", "links"}
    assert json.loads(r.collection([]).body) == {"resources": []}


def test_query_interface_validates() -> None:
    tpl = Mixin("http://schemas.openstack.org/template/resource#", "m1.small", "m1.small", depends=(C.RESOURCE_TPL.id,),
                applies=(C.COMPUTE.id,), location="/resource_tpl/m1.small/",
                attributes=(C.attributes_of(C.COMPUTE.id)["occi.compute.cores"].__class__(
                    "occi.compute.cores", "integer", default=1),))
    doc = json.loads(renderer_for(OCCI_JSON, BASE).categories([*C.ALL, tpl]).body)
    validate(doc, "model")
    for k in doc["kinds"]:
        validate(k, "kind")
    for m in doc["mixins"]:
        validate(m, "mixin")
    for a in doc["actions"]:
        validate(a, "action")
    compute = next(k for k in doc["kinds"] if k["term"] == "compute")
    assert compute["location"] == f"{BASE}/compute/" and compute["parent"] == C.RESOURCE.id
    arch = compute["attributes"]["occi.compute.architecture"]
    assert arch["type"] == "string" and arch["pattern"]["enum"] == ["x86", "x64"] and arch["mutable"] is True
    # as the JSON rendering's own Kind example renders it
    assert compute["attributes"]["occi.compute.state"]["mutable"] is False
    assert compute["attributes"]["occi.compute.state"]["required"] is False
    assert compute["attributes"]["occi.compute.cores"]["pattern"]["type"] == "integer"
    stop = next(a for a in doc["actions"] if a["term"] == "stop")
    assert stop["attributes"]["method"]["default"] == "graceful"
    small = next(m for m in doc["mixins"] if m["term"] == "m1.small")
    assert small["depends"] == [C.RESOURCE_TPL.id] and small["attributes"]["occi.compute.cores"]["default"] == 1


def test_message() -> None:
    assert json.loads(renderer_for(OCCI_JSON, BASE).message("nope").body) == {"message": "nope"}


# --- parsing: the examples of the JSON Rendering 1.2 appendix ---------------------------------------

SPEC_RESOURCE = """{
    "kind": "http://schemas.ogf.org/occi/infrastructure#compute",
    "mixins": [
        "http://example.com/occi/infrastructure/os_tpl#debian9",
        "http://example.com/occi/infrastructure/resource_tpl#medium"
    ],
    "attributes": {
        "occi.compute.speed": 2,
        "occi.compute.memory": 4,
        "occi.compute.cores": 2,
        "com.example.occi.templates.myosmixin": {"mykey": "myvalue"}
    },
    "actions": ["http://schemas.ogf.org/occi/infrastructure/compute/action#start"],
    "id": "urn:uuid:996ad860-2a9a-504f-8861-aeafd0b2ae29",
    "links": [{
        "kind": "http://schemas.ogf.org/occi/infrastructure#networkinterface",
        "mixins": ["http://schemas.ogf.org/occi/infrastructure/networkinterface#ipnetworkinterface"],
        "attributes": {
            "occi.networkinterface.interface": "eth0",
            "occi.networkinterface.mac": "00:80:41:ae:fd:7e",
            "occi.networkinterface.address": "192.168.0.100",
            "occi.networkinterface.gateway": "192.168.0.1",
            "occi.networkinterface.allocation": "dynamic"
        },
        "actions": [],
        "id": "urn:uuid:22fe83ae-a20f-54fc-b436-cec85c94c5e8",
        "target": {"location": "/network/b7d55bf4-7057-5113-85c8-141871bf7635",
                   "kind": "http://schemas.ogf.org/occi/infrastructure#network"},
        "source": {"location": "/compute/996ad860-2a9a-504f-8861-aeafd0b2ae29",
                   "kind": "http://schemas.ogf.org/occi/infrastructure#compute"}
    }]
}"""


def test_spec_resource_example() -> None:
    validate(json.loads(SPEC_RESOURCE), "resource")  # the example itself is schema-valid
    req = parser_for("application/occi+json").entity(SPEC_RESOURCE.encode(), [])
    assert req.kind == INFRA + "compute"
    assert req.mixins[1] == "http://example.com/occi/infrastructure/resource_tpl#medium"
    assert req.attributes["occi.core.id"] == "urn:uuid:996ad860-2a9a-504f-8861-aeafd0b2ae29"
    assert req.attributes["occi.compute.cores"] == 2
    assert req.attributes["com.example.occi.templates.myosmixin"] == {"mykey": "myvalue"}
    (link,) = req.links
    assert link.target == "/network/b7d55bf4-7057-5113-85c8-141871bf7635"
    assert link.kind == INFRA + "networkinterface"
    assert link.source == "/compute/996ad860-2a9a-504f-8861-aeafd0b2ae29"
    assert link.id == "urn:uuid:22fe83ae-a20f-54fc-b436-cec85c94c5e8"
    assert link.attributes["occi.core.target.kind"] == INFRA + "network"
    assert link.attributes["occi.networkinterface.allocation"] == "dynamic"


def test_spec_action_invocation_example() -> None:
    body = b'{"action":"http://schemas.ogf.org/occi/infrastructure/compute/action#stop","attributes":{"method":"graceful"}}'
    validate(json.loads(body), "action_invocation")
    act = parser_for("application/json").action(body, [])
    assert act.action == C.STOP.id and act.attributes == {"method": "graceful"}


def test_link_entity_and_collection_forms() -> None:
    body = json.dumps({"links": [{"kind": INFRA + "storagelink", "id": "x",
                                  "source": {"location": "/occi/compute/c1"},
                                  "target": {"location": "/occi/storage/s1", "kind": INFRA + "storage"},
                                  "attributes": {"occi.storagelink.mountpoint": "/data"}}]}).encode()
    req = parser_for(OCCI_JSON).entity(body, [])
    assert req.kind == INFRA + "storagelink"
    assert req.attributes["occi.core.source"] == "/occi/compute/c1"
    assert req.attributes["occi.core.target"] == "/occi/storage/s1"
    assert req.attributes["occi.core.target.kind"] == INFRA + "storage"
    two = json.dumps({"resources": [{"kind": "k", "id": "1"}, {"kind": "k", "id": "2"}]}).encode()
    with pytest.raises(errors.Invalid, match="exactly one"):
        parser_for(OCCI_JSON).entity(two, [])


def test_user_mixin_definitions_and_locations() -> None:
    body = json.dumps({"mixins": [{"term": "my_stuff", "scheme": "http://example.com/occi/my_stuff#",
                                   "title": "Mine", "location": "/my_stuff/", "applies": [INFRA + "compute"],
                                   "attributes": {"com.example.x": {"type": "number", "mutable": True}}}]}).encode()
    (m,) = parser_for(OCCI_JSON).categories(body, [])
    assert isinstance(m, Mixin) and m.location == "/my_stuff/" and m.applies == (INFRA + "compute",)
    assert m.attributes[0].type == "number" and m.attributes[0].mutable
    (k,) = parser_for(OCCI_JSON).categories(json.dumps({"kinds": [{"term": "compute", "scheme": INFRA}]}).encode(),
                                            [], partial=True)
    assert isinstance(k, Kind) and k.id == C.COMPUTE.id
    locs = parser_for(OCCI_JSON).locations(json.dumps({"resources": [
        {"kind": INFRA + "compute", "id": "c1"}, {"location": "/occi/storage/s1"}]}).encode(), [])
    assert locs == ["/compute/c1", "/occi/storage/s1"]
    assert parser_for(OCCI_JSON).locations(b'["/compute/a"]', []) == ["/compute/a"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"", "empty"),
        (b"{", "malformed JSON"),
        (b"[]", "object"),
        (b'{"kind": 3}', "kind"),
        (b'{"kind": "k", "bogus": 1}', "bogus"),
        (b'{"kind": "k", "attributes": {"a": null}}', "attribute a"),
        (b'{"kind": "k", "attributes": {"a": NaN}}', "NaN"),
        (b'{"kind": "k", "kind": "j"}', "twice"),
        (b'{"kind": "k", "attributes": {"bad name": 1}}', "attribute name"),
        (b'{"kind": "k", "title": "\\ud800"}', "surrogate"),
        (b'{"kind": "k", "links": [{"kind": "l"}]}', "target"),
        (b"[" * 100000 + b"]" * 100000, "JSON"),
        (b'{"kind": "k", "attributes": {"a": ' + b"[" * 40 + b"]" * 40 + b"}}", "deep"),
        (b"\xff\xfe", "UTF-8"),
    ],
)
def test_bad_json_names_the_problem(body: bytes, needle: str) -> None:
    with pytest.raises(errors.Invalid) as e:
        parser_for(OCCI_JSON).entity(body, [])
    assert needle in e.value.message


def test_too_large() -> None:
    with pytest.raises(errors.PayloadTooLarge):
        parser_for(OCCI_JSON).entity(b" " * (2 << 20), [])


def test_occi_11_json_forms() -> None:
    # rOCCI's OCCI 1.1 JSON nests attribute names and calls depends "related".
    body = json.dumps({"resources": [{"kind": INFRA + "compute", "attributes": {
        "occi": {"core": {"title": "vm"}, "compute": {"cores": 2, "memory": 1.5}}, "com.example.obj": {"a": 1}}}]})
    req = parser_for(OCCI_JSON).entity(body.encode(), [])
    assert req.attributes == {"occi.core.title": "vm", "occi.compute.cores": 2, "occi.compute.memory": 1.5,
                              "com.example.obj": {"a": 1}}
    (m,) = parser_for(OCCI_JSON).categories(json.dumps({"mixins": [{
        "term": "t", "scheme": "http://e/#", "location": "/t/", "related": [C.OS_TPL.id]}]}).encode(), [])
    assert isinstance(m, Mixin) and m.depends == (C.OS_TPL.id,)


def test_non_object_answers_still_validate_against_the_root_schema() -> None:
    # A location list and an error message are not OCCI objects of the JSON rendering; they stay
    # within the schema's generic "attributes" form so a validating client accepts them.
    r = renderer_for(OCCI_JSON, BASE)
    validate(json.loads(r.locations(["/compute/a"]).body))
    validate(json.loads(r.message("boom").body))


def test_our_renderings_read_back() -> None:
    # A client PUTs back what it GOT; the query interface's definitions read back with their types.
    c, _ = _entities()
    r = renderer_for(OCCI_JSON, BASE)
    req = parser_for(OCCI_JSON).entity(r.entity(c).body, [])
    assert req.attributes["occi.core.id"] == "c1" and req.attributes["occi.core.summary"] == "s"
    assert req.links[0].source == f"{BASE}/compute/c1" and req.links[0].id == "p1"
    cats = parser_for(OCCI_JSON).categories(r.categories(list(C.ALL)).body, [], partial=True)
    assert [c.id for c in cats] == [c.id for c in C.ALL if isinstance(c, Kind)] + [
        c.id for c in C.ALL if isinstance(c, Mixin)] + [c.id for c in C.ALL if not isinstance(c, Kind | Mixin)]
    compute = next(c for c in cats if c.id == C.COMPUTE.id)
    got = {a.name: (a.type, a.enum, a.mutable, a.required) for a in compute.attributes}
    want = {a.name: (a.type, a.enum, a.mutable, a.required) for a in C.attributes_of(C.COMPUTE.id).values()}
    assert got == want
