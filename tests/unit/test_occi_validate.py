"""Attribute checks before any backend (GFD.221 §4.3.2 properties; GFD.224 types): each failure is a
400 (errors.Invalid) naming the attribute."""

from __future__ import annotations

import pytest

from cumulo import errors
from cumulo.occi import categories as C
from cumulo.occi.model import ActionRequest, Attribute, EntityRequest, LinkRequest, Mixin
from cumulo.occi.validate import check_action, check_entity, coerce

TPL = Mixin("http://schemas.openstack.org/template/resource#", "m1.small", depends=(C.RESOURCE_TPL.id,),
            applies=(C.COMPUTE.id,), attributes=(Attribute("occi.compute.cores", "integer", default=1),))


def test_text_values_are_coerced() -> None:
    req = EntityRequest(kind=C.COMPUTE.id, attributes={
        "occi.compute.cores": "2", "occi.compute.memory": 2, "occi.compute.share": 3.0,
        "occi.compute.architecture": "x64", "occi.core.title": "vm", "occi.compute.speed": 1.33})
    out = check_entity(req, C.COMPUTE, [], create=True)
    assert out.attributes == {"occi.compute.cores": 2, "occi.compute.memory": 2.0, "occi.compute.share": 3,
                              "occi.compute.architecture": "x64", "occi.core.title": "vm"}
    assert isinstance(out.attributes["occi.compute.memory"], float)
    assert out.kind == C.COMPUTE.id


@pytest.mark.parametrize(
    ("kind", "attrs", "needle"),
    [
        (C.COMPUTE, {"occi.compute.cores": "two"}, "occi.compute.cores"),
        (C.COMPUTE, {"occi.compute.cores": 1.5}, "occi.compute.cores"),
        (C.COMPUTE, {"occi.compute.cores": True}, "occi.compute.cores"),
        (C.COMPUTE, {"occi.compute.memory": "lots"}, "occi.compute.memory"),
        (C.COMPUTE, {"occi.compute.memory": float("nan")}, "occi.compute.memory"),
        (C.COMPUTE, {"occi.compute.architecture": "arm64"}, "occi.compute.architecture"),
        (C.COMPUTE, {"occi.compute.hostname": 7}, "occi.compute.hostname"),
        (C.COMPUTE, {"org.example.unknown": "x"}, "org.example.unknown"),
        (C.COMPUTE, {"occi.storage.size": 1}, "occi.storage.size"),
        (C.COMPUTE, {"occi.compute.state": "active"}, "occi.compute.state is immutable"),
        (C.COMPUTE, {"occi.compute.userdata": "x"}, "occi.compute.userdata"),  # without its mixin
        (C.NETWORK, {"occi.network.vlan": 5000}, "occi.network.vlan"),
        (C.NETWORK, {"occi.network.label": "a b"}, "occi.network.label"),
        (C.STORAGE, {"occi.storage.size": -1e400}, "occi.storage.size"),
    ],
)
def test_bad_attributes_are_named(kind: object, attrs: dict[str, object], needle: str) -> None:
    with pytest.raises(errors.Invalid) as e:
        check_entity(EntityRequest(attributes=attrs), kind, [], create=False)  # type: ignore[arg-type]
    assert needle in e.value.message


def test_required_on_create_only() -> None:
    with pytest.raises(errors.Invalid, match="missing required attribute occi.storage.size"):
        check_entity(EntityRequest(kind=C.STORAGE.id), C.STORAGE, [], create=True)
    assert check_entity(EntityRequest(), C.STORAGE, [], create=False).attributes == {}
    # a mixin's required attribute (GFD.224 ssh_key: publickey multiplicity 1)
    with pytest.raises(errors.Invalid, match="occi.credentials.ssh.publickey"):
        check_entity(EntityRequest(mixins=[C.SSH_KEY.id]), C.COMPUTE, [C.SSH_KEY], create=True)
    ok = check_entity(EntityRequest(mixins=[C.SSH_KEY.id], attributes={"occi.credentials.ssh.publickey": "ssh-rsa A"}),
                      C.COMPUTE, [C.SSH_KEY], create=True)
    assert ok.mixins == [C.SSH_KEY.id]
    # a standalone link needs its source and target (Core: multiplicity 1)
    with pytest.raises(errors.Invalid, match="occi.core.source"):
        check_entity(EntityRequest(attributes={"occi.core.target": "/storage/1"}), C.STORAGELINK, [], create=True)


def test_mixins_are_checked() -> None:
    with pytest.raises(errors.Invalid, match="unknown mixin"):
        check_entity(EntityRequest(mixins=["http://x#y"]), C.COMPUTE, [], create=True)
    with pytest.raises(errors.Invalid, match="does not apply"):
        check_entity(EntityRequest(mixins=[C.IPNETWORK.id]), C.COMPUTE, [C.IPNETWORK], create=True)
    with pytest.raises(errors.Invalid, match="does not match"):
        check_entity(EntityRequest(kind=C.STORAGE.id), C.COMPUTE, [], create=True)
    out = check_entity(EntityRequest(mixins=[TPL.id], attributes={"occi.compute.cores": 4}), C.COMPUTE, [TPL], create=True)
    assert out.attributes == {"occi.compute.cores": 4}


def test_ip_formats() -> None:
    ok = check_entity(EntityRequest(mixins=[C.IPNETWORK.id], attributes={
        "occi.network.address": "10.1.0.0/24", "occi.network.gateway": "10.1.0.1", "occi.network.allocation": "dynamic"}),
        C.NETWORK, [C.IPNETWORK], create=True)
    assert ok.attributes["occi.network.address"] == "10.1.0.0/24"
    for attrs in ({"occi.network.address": "10.1.0.0"}, {"occi.network.address": "nope/24"},
                  {"occi.network.gateway": "10.1.0.0/24"}, {"occi.network.allocation": "dhcp"}):
        with pytest.raises(errors.Invalid, match=next(iter(attrs))):
            check_entity(EntityRequest(mixins=[C.IPNETWORK.id], attributes=attrs), C.NETWORK, [C.IPNETWORK], create=False)


def test_inline_links() -> None:
    req = EntityRequest(kind=C.COMPUTE.id, links=[
        LinkRequest(target="/occi/storage/s1", attributes={"occi.storagelink.deviceid": "/dev/vdb"}),
        LinkRequest(target="http://h/occi/network/n1", mixins=[C.IPNETWORKINTERFACE.id],
                    attributes={"occi.networkinterface.address": "10.0.0.9"}),
        LinkRequest(target="/x/y", attributes={"occi.core.target.kind": C.NETWORK.id}),
    ])
    out = check_entity(req, C.COMPUTE, [], create=True)
    assert [lk.kind for lk in out.links] == [C.STORAGELINK.id, C.NETWORKINTERFACE.id, C.NETWORKINTERFACE.id]
    assert out.links[1].attributes == {"occi.networkinterface.address": "10.0.0.9"}
    for bad, needle in [
        (LinkRequest(target="/compute/other"), "cannot tell"),
        (LinkRequest(target="/storage/1", kind=C.COMPUTE.id), "not a link kind"),
        (LinkRequest(target="/storage/1", attributes={"occi.networkinterface.mac": "x"}), "occi.networkinterface.mac"),
        (LinkRequest(target="/storage/1", mixins=[C.IPNETWORKINTERFACE.id]), "does not apply"),
        (LinkRequest(target="/network/1", mixins=["http://nope#x"]), "unknown mixin"),
        (LinkRequest(target="/network/1", mixins=[C.IPNETWORKINTERFACE.id],
                     attributes={"occi.networkinterface.address": "999.1.1.1"}), "occi.networkinterface.address"),
    ]:
        with pytest.raises(errors.Invalid, match=needle):
            check_entity(EntityRequest(links=[bad]), C.COMPUTE, [], create=True)
    with pytest.raises(errors.Invalid, match="cannot have links"):
        check_entity(EntityRequest(links=[LinkRequest(target="/storage/1")],
                                   attributes={"occi.core.source": "/compute/1", "occi.core.target": "/storage/1"}),
                     C.STORAGELINK, [], create=True)


def test_actions() -> None:
    assert check_action(ActionRequest(""), C.STOP).attributes == {"method": "graceful"}
    assert check_action(ActionRequest(C.RESTART.id, {"method": "cold"}), C.RESTART).attributes == {"method": "cold"}
    assert check_action(ActionRequest("", {"name": "snap"}), C.SAVE).attributes == {"name": "snap", "method": "hot"}
    assert check_action(ActionRequest("", {"size": "3"}), C.RESIZE).attributes == {"size": 3.0}
    assert check_action(ActionRequest("", {"occi.storage.size": 4}), C.RESIZE).attributes == {"size": 4.0}
    for req, needle in [
        (ActionRequest("", {"method": "reboot"}), "method"),
        (ActionRequest("", {"force": True}), "force"),
        (ActionRequest(C.START.id), "does not match"),
    ]:
        with pytest.raises(errors.Invalid, match=needle):
            check_action(req, C.STOP)
    with pytest.raises(errors.Invalid, match="missing required attribute size"):
        check_action(ActionRequest(""), C.RESIZE)


def test_coerce_array_object_boolean() -> None:
    assert coerce(Attribute("a", "array"), "[1, 2]") == [1, 2]
    assert coerce(Attribute("a", "object"), {"k": 1}) == {"k": 1}
    assert coerce(Attribute("a", "boolean"), "TRUE") is True
    for attr, value in [(Attribute("a", "array"), "{}"), (Attribute("a", "object"), "[]"),
                        (Attribute("a", "boolean"), 1), (Attribute("a", "string"), None)]:
        with pytest.raises(errors.Invalid, match="attribute a"):
            coerce(attr, value)


def test_put_of_the_own_rendering_passes_immutables_unchanged() -> None:
    current = {"occi.compute.state": "active", "occi.compute.cores": 2}
    req = EntityRequest(attributes={"occi.compute.state": "active", "occi.compute.cores": "4"})
    out = check_entity(req, C.COMPUTE, [], create=False, current=current)
    assert out.attributes == {"occi.compute.cores": 4}
    with pytest.raises(errors.Invalid, match="occi.compute.state is immutable"):
        check_entity(EntityRequest(attributes={"occi.compute.state": "inactive"}), C.COMPUTE, [], create=False,
                     current=current)


def test_update_knows_the_entitys_mixins() -> None:
    # a partial update of a mixin attribute: the API passes the entity's mixins besides the request's
    req = EntityRequest(attributes={"occi.network.gateway": "10.0.0.254"})
    assert check_entity(req, C.NETWORK, [C.IPNETWORK], create=False).attributes == {"occi.network.gateway": "10.0.0.254"}
