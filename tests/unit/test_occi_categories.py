"""The static categories against the tables of GFD.221 (Core 1.2) and GFD.224 (Infrastructure 1.2),
written down here from the specification text, plus the 1.1 storage actions and the ooi/OCCI-OS
contextualization mixins."""

from __future__ import annotations

import pytest

from cumulo.occi import categories as C
from cumulo.occi.model import Kind, Mixin

OGF = "http://schemas.ogf.org/occi/"

# (kind id, parent id) from GFD.224 Table 1 and GFD.221 §4.5.
KINDS = [
    (OGF + "core#entity", None),
    (OGF + "core#resource", OGF + "core#entity"),
    (OGF + "core#link", OGF + "core#entity"),
    (OGF + "infrastructure#compute", OGF + "core#resource"),
    (OGF + "infrastructure#storage", OGF + "core#resource"),
    (OGF + "infrastructure#network", OGF + "core#resource"),
    (OGF + "infrastructure#networkinterface", OGF + "core#link"),
    (OGF + "infrastructure#storagelink", OGF + "core#link"),
]

# (kind, attribute, type, mutable) from GFD.224 Tables 2, 4, 6, 8, 10 (and Core 1.2 / GFD.229 names).
ATTRIBUTES = [
    ("compute", "occi.compute.architecture", "enum", True),
    ("compute", "occi.compute.cores", "integer", True),
    ("compute", "occi.compute.hostname", "string", True),
    ("compute", "occi.compute.share", "integer", True),
    ("compute", "occi.compute.memory", "number", True),
    ("compute", "occi.compute.state", "enum", False),
    ("compute", "occi.compute.state.message", "string", False),
    ("compute", "occi.core.id", "string", False),
    ("compute", "occi.core.title", "string", True),
    ("compute", "occi.core.summary", "string", True),
    ("network", "occi.network.vlan", "integer", True),
    ("network", "occi.network.label", "string", True),
    ("network", "occi.network.state", "enum", False),
    ("storage", "occi.storage.size", "number", True),
    ("storage", "occi.storage.state", "enum", False),
    ("networkinterface", "occi.networkinterface.interface", "string", False),
    ("networkinterface", "occi.networkinterface.mac", "string", True),
    ("networkinterface", "occi.networkinterface.state", "enum", False),
    ("networkinterface", "occi.core.source", "string", True),
    ("networkinterface", "occi.core.target", "string", True),
    ("networkinterface", "occi.core.target.kind", "string", True),
    ("networkinterface", "occi.core.source.kind", "string", True),
    ("storagelink", "occi.storagelink.deviceid", "string", True),
    ("storagelink", "occi.storagelink.mountpoint", "string", True),
    ("storagelink", "occi.storagelink.state", "enum", False),
]


@pytest.mark.parametrize(("kind_id", "parent"), KINDS)
def test_kinds_and_parents(kind_id: str, parent: str | None) -> None:
    k = C.KINDS[kind_id]
    assert isinstance(k, Kind)
    assert k.parent == parent
    # GFD.223 §3: every kind but entity is bound to a location
    assert (k.location is None) == (kind_id == OGF + "core#entity")


@pytest.mark.parametrize(("kind", "name", "type_", "mutable"), ATTRIBUTES)
def test_attribute_definitions(kind: str, name: str, type_: str, mutable: bool) -> None:
    a = C.attributes_of(OGF + "infrastructure#" + kind)[name]
    assert a.type == type_
    assert a.mutable is mutable
    assert a.description


def test_enum_values() -> None:
    attrs = C.attributes_of(C.COMPUTE.id)
    assert attrs["occi.compute.architecture"].enum == ("x86", "x64")
    assert attrs["occi.compute.state"].enum == ("active", "inactive", "suspended", "error")
    assert C.attributes_of(C.STORAGE.id)["occi.storage.state"].enum == ("online", "offline", "error")
    assert C.attributes_of(C.NETWORK.id)["occi.network.state"].enum == ("active", "inactive", "error")
    assert C.attributes_of(C.STORAGE.id)["occi.storage.size"].required  # multiplicity 1


@pytest.mark.parametrize(
    ("kind", "action", "attrs"),
    [
        ("compute", "start", {}),
        ("compute", "stop", {"method": ("graceful", "acpioff", "poweroff")}),
        ("compute", "restart", {"method": ("graceful", "warm", "cold")}),
        ("compute", "suspend", {"method": ("hibernate", "suspend")}),
        ("compute", "save", {"method": ("hot", "deferred"), "name": ()}),
        ("storage", "online", {}),
        ("storage", "offline", {}),
        ("storage", "backup", {}),  # 1.1 (GFD.184)
        ("storage", "snapshot", {}),  # 1.1
        ("storage", "resize", {"size": ()}),  # 1.1
        ("network", "up", {}),
        ("network", "down", {}),
    ],
)
def test_actions(kind: str, action: str, attrs: dict[str, tuple[str, ...]]) -> None:
    kind_id = OGF + "infrastructure#" + kind
    a = C.action_of(kind_id, action)
    assert a is not None
    assert a.id == f"{OGF}infrastructure/{kind}/action#{action}"
    assert a.id in C.KINDS[kind_id].actions
    assert C.action_of(kind_id, a.id) is a
    assert {x.name: x.enum for x in a.attributes} == attrs


def test_unknown_action() -> None:
    assert C.action_of(C.COMPUTE.id, "up") is None
    assert C.action_of(C.NETWORK.id, "start") is None


@pytest.mark.parametrize(
    ("mixin_id", "applies", "attrs"),
    [
        (OGF + "infrastructure/network#ipnetwork", OGF + "infrastructure#network",
         {"occi.network.address", "occi.network.gateway", "occi.network.allocation"}),
        (OGF + "infrastructure/networkinterface#ipnetworkinterface", OGF + "infrastructure#networkinterface",
         {"occi.networkinterface.address", "occi.networkinterface.gateway", "occi.networkinterface.allocation"}),
        (OGF + "infrastructure#os_tpl", OGF + "infrastructure#compute", set()),
        (OGF + "infrastructure#resource_tpl", OGF + "infrastructure#compute", set()),
        (OGF + "infrastructure/credentials#ssh_key", OGF + "infrastructure#compute", {"occi.credentials.ssh.publickey"}),
        (OGF + "infrastructure/compute#user_data", OGF + "infrastructure#compute", {"occi.compute.userdata"}),
        ("http://schemas.openstack.org/compute/instance#user_data", OGF + "infrastructure#compute",
         {"org.openstack.compute.user_data"}),
        ("http://schemas.openstack.org/instance/credentials#public_key", OGF + "infrastructure#compute",
         {"org.openstack.credentials.publickey.name", "org.openstack.credentials.publickey.data"}),
    ],
)
def test_mixins(mixin_id: str, applies: str, attrs: set[str]) -> None:
    m = C.MIXINS[mixin_id]
    assert isinstance(m, Mixin)
    assert m.applies == (applies,)
    assert {a.name for a in m.attributes} == attrs
    assert m.location and m.location.startswith("/") and m.location.endswith("/")


def test_registry_helpers() -> None:
    assert C.get(C.COMPUTE.id) is C.COMPUTE
    assert C.get(C.STOP.id) is C.STOP
    assert C.get(C.IPNETWORK.id) is C.IPNETWORK
    assert C.get("http://example.com/x#y") is None
    assert C.kind_by_term("storage") is C.STORAGE
    assert C.kind_by_term("nope") is None
    assert [k.term for k in C.ancestry(C.STORAGELINK.id)] == ["storagelink", "link", "entity"]
    assert C.is_link_kind(C.NETWORKINTERFACE.id) and not C.is_link_kind(C.COMPUTE.id)
    ids = [c.id for c in C.ALL]
    assert len(ids) == len(set(ids))
    locations = [c.location for c in C.ALL if isinstance(c, Kind | Mixin) and c.location]
    assert len(locations) == len(set(locations))


def test_required_means_the_client_must_supply_it() -> None:
    # GFD.221 §4.3.2 "required": supplied by the client at creation. Provider-set attributes are not,
    # as GFD.185's storage example ({required} size, {immutable} state) and the JSON Kind example show.
    required = {a.name for k in C.KINDS.values() for a in k.attributes if a.required}
    assert required == {"occi.storage.size", "occi.core.source", "occi.core.target"}
    assert all(not a.required for k in C.KINDS.values() for a in k.attributes if not a.mutable)
