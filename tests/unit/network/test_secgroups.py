"""Security groups and rules through the network service: Neutron's default group, rule validation
(each bad input its own Neutron fault, a 4xx), duplicates, the default group's protections, groups
in use, quotas, and isolation between projects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from l3_support import ADMIN, ALICE, BOB, make_service, tenant_network

from cumulo import errors
from cumulo.network import faults
from cumulo.network.service import NetworkService


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[NetworkService]:
    async with make_service(tmp_path) as s:
        yield s


async def fails(coro: Any, code: int, kind: str) -> errors.CumuloError:
    with pytest.raises(errors.CumuloError) as info:
        await coro
    exc = info.value
    assert (exc.code, faults.type_of(exc, exc.code)) == (code, kind), exc.message
    return exc


def rule(group: str, **kw: Any) -> dict[str, Any]:
    return {"security_group_id": group, "direction": "ingress", **kw}


async def test_default_group_made_once_on_first_list(svc: NetworkService) -> None:
    groups = await svc.list_groups(ALICE)
    assert [g["name"] for g in groups] == ["default"]
    default = groups[0]
    assert default["description"] == "Default security group" and default["project_id"] == "proj-a"
    shape = {(r["direction"], r["ethertype"], r["remote_group_id"], r["protocol"], r["remote_ip_prefix"])
             for r in default["security_group_rules"]}
    gid = default["id"]
    assert shape == {("ingress", "IPv4", gid, None, None), ("ingress", "IPv6", gid, None, None),
                     ("egress", "IPv4", None, None, None), ("egress", "IPv6", None, None, None)}
    assert len(default["security_group_rules"]) == 4
    assert all(r["belongs_to_default_sg"] for r in default["security_group_rules"])
    again = await svc.list_groups(ALICE)
    assert [g["id"] for g in again] == [gid]
    assert await svc.ensure_default(ALICE, "proj-a") == gid
    # A member cannot make a default group for another project.
    assert await svc.ensure_default(ALICE, "proj-b") is None


async def test_new_group_has_egress_rules_only(svc: NetworkService) -> None:
    g = await svc.create_group(ALICE, {"name": "web", "description": "for web"})
    assert {(r["direction"], r["ethertype"]) for r in g["security_group_rules"]} == {("egress", "IPv4"), ("egress", "IPv6")}
    assert g["stateful"] is True and g["shared"] is False and g["tenant_id"] == "proj-a"
    assert not any(r["belongs_to_default_sg"] for r in g["security_group_rules"])
    names = sorted(x["name"] for x in await svc.list_groups(ALICE))
    assert names == ["default", "web"]


@pytest.mark.parametrize("name", ["default", "Default"])
async def test_no_second_group_named_default(svc: NetworkService, name: str) -> None:
    await fails(svc.create_group(ALICE, {"name": name}), 409, "SecurityGroupDefaultAlreadyExists")


async def test_rule_shapes_and_protocol_forms(svc: NetworkService) -> None:
    g = (await svc.create_group(ALICE, {"name": "web"}))["id"]
    r = await svc.create_rule(ALICE, rule(g, protocol="TCP", port_range_min=80, port_range_max=80,
                                          remote_ip_prefix="10.1.2.3/24", description="http"))
    assert r["protocol"] == "tcp" and (r["port_range_min"], r["port_range_max"]) == (80, 80)
    assert r["remote_ip_prefix"] == "10.1.2.3/24" and r["normalized_cidr"] == "10.1.2.0/24"
    assert r["ethertype"] == "IPv4" and r["security_group_id"] == g and r["project_id"] == "proj-a"
    assert set(r) >= {"id", "tenant_id", "created_at", "updated_at", "revision_number", "remote_group_id"}
    assert (await svc.create_rule(ALICE, rule(g, protocol=17)))["protocol"] == "17"
    assert (await svc.create_rule(ALICE, rule(g, protocol="any", remote_ip_prefix="192.0.2.1")))["protocol"] is None
    icmp = await svc.create_rule(ALICE, rule(g, protocol="icmp", port_range_min=8, port_range_max=0))
    assert (icmp["port_range_min"], icmp["port_range_max"]) == (8, 0)
    v6 = await svc.create_rule(ALICE, rule(g, protocol="icmp", ethertype="ipv6"))
    assert (v6["protocol"], v6["ethertype"]) == ("ipv6-icmp", "IPv6")
    assert (await svc.create_rule(ALICE, rule(g, protocol="icmp", port_range_min=3)))["port_range_max"] is None
    assert (await svc.get_rule(ALICE, r["id"]))["description"] == "http"
    assert r["id"] in {x["id"] for x in (await svc.get_group(ALICE, g))["security_group_rules"]}


async def test_duplicate_rules_conflict(svc: NetworkService) -> None:
    g = (await svc.create_group(ALICE, {"name": "web"}))["id"]
    first = await svc.create_rule(ALICE, rule(g, protocol="tcp", port_range_min=22, port_range_max=22))
    exc = await fails(svc.create_rule(ALICE, rule(g, protocol="tcp", port_range_min=22, port_range_max=22)),
                      409, "SecurityGroupRuleExists")
    assert first["id"] in exc.message
    # The same protocol by number, and a prefix of every address against none, are duplicates too.
    await fails(svc.create_rule(ALICE, rule(g, protocol="6", port_range_min=22, port_range_max=22)), 409,
                "SecurityGroupRuleExists")
    await fails(svc.create_rule(ALICE, rule(g, direction="egress", remote_ip_prefix="0.0.0.0/0")), 409,
                "SecurityGroupRuleExists")
    # Another port is no duplicate.
    await svc.create_rule(ALICE, rule(g, protocol="tcp", port_range_min=23, port_range_max=23))


BAD_RULES: list[tuple[dict[str, Any], str]] = [
    ({"protocol": "tcp", "port_range_min": 90, "port_range_max": 80}, "SecurityGroupInvalidPortRange"),
    ({"protocol": "tcp", "port_range_min": 80}, "SecurityGroupInvalidPortRange"),
    ({"port_range_min": 80, "port_range_max": 80}, "SecurityGroupProtocolRequiredWithPorts"),
    ({"protocol": "udp", "port_range_min": 0, "port_range_max": 10}, "SecurityGroupInvalidPortValue"),
    ({"protocol": "tcp", "port_range_min": 1, "port_range_max": 70000}, "SecurityGroupInvalidPortValue"),
    ({"protocol": "tcp", "port_range_min": "eighty", "port_range_max": 80}, "SecurityGroupInvalidPortValue"),
    ({"protocol": "icmp", "port_range_min": 256}, "SecurityGroupInvalidIcmpValue"),
    ({"protocol": "icmp", "port_range_min": 8, "port_range_max": 300}, "SecurityGroupInvalidIcmpValue"),
    ({"protocol": "icmp", "port_range_max": 0}, "SecurityGroupMissingIcmpType"),
    ({"protocol": "gre", "port_range_min": 1, "port_range_max": 2}, "SecurityGroupInvalidProtocolForPort"),
    ({"protocol": "foo"}, "SecurityGroupRuleInvalidProtocol"),
    ({"protocol": 256}, "SecurityGroupRuleInvalidProtocol"),
    ({"protocol": True}, "SecurityGroupRuleInvalidProtocol"),
    ({"ethertype": "IPv5"}, "SecurityGroupRuleInvalidEtherType"),
    ({"remote_ip_prefix": "10.0.0.0/33"}, "InvalidCIDR"),
    ({"remote_ip_prefix": 12}, "InvalidCIDR"),
    ({"remote_ip_prefix": "2001:db8::/64"}, "SecurityGroupRuleParameterConflict"),
    ({"ethertype": "IPv6", "remote_ip_prefix": "10.0.0.0/8"}, "SecurityGroupRuleParameterConflict"),
    ({"protocol": "ipv6-icmp"}, "SecurityGroupEthertypeConflictWithProtocol"),
    ({"remote_ip_prefix": "10.0.0.0/8", "remote_group_id": "SELF"}, "SecurityGroupMultipleRemoteEntites"),
    ({"direction": "sideways"}, "HTTPBadRequest"),
    ({"colour": "blue"}, "HTTPBadRequest"),
    ({"description": "x" * 256}, "HTTPBadRequest"),
]


@pytest.mark.parametrize(("extra", "kind"), BAD_RULES)
async def test_bad_rules_are_400(svc: NetworkService, extra: dict[str, Any], kind: str) -> None:
    g = (await svc.create_group(ALICE, {"name": "web"}))["id"]
    body = rule(g, **extra)
    if body.get("remote_group_id") == "SELF":
        body["remote_group_id"] = g
    await fails(svc.create_rule(ALICE, body), 400, kind)
    assert len((await svc.get_group(ALICE, g))["security_group_rules"]) == 2  # nothing was added


async def test_rule_needs_a_group_and_a_direction(svc: NetworkService) -> None:
    await fails(svc.create_rule(ALICE, {"direction": "ingress"}), 400, "HTTPBadRequest")
    g = (await svc.create_group(ALICE, {"name": "web"}))["id"]
    await fails(svc.create_rule(ALICE, {"security_group_id": g}), 400, "HTTPBadRequest")
    await fails(svc.create_rule(ALICE, rule("4e5b1a1e-0000-4000-8000-000000000000")), 404, "SecurityGroupNotFound")


async def test_remote_group_rule_and_cascade(svc: NetworkService) -> None:
    web = (await svc.create_group(ALICE, {"name": "web"}))["id"]
    db = (await svc.create_group(ALICE, {"name": "db"}))["id"]
    r = await svc.create_rule(ALICE, rule(db, protocol="tcp", port_range_min=5432, port_range_max=5432,
                                          remote_group_id=web))
    assert r["remote_group_id"] == web and r["remote_ip_prefix"] is None
    await svc.delete_group(ALICE, web)
    # Neutron deletes the rules that named the group as their remote.
    await fails(svc.get_rule(ALICE, r["id"]), 404, "SecurityGroupRuleNotFound")


async def test_default_group_cannot_be_renamed_or_deleted_by_members(svc: NetworkService) -> None:
    default = (await svc.list_groups(ALICE))[0]
    await fails(svc.update_group(ALICE, default["id"], {"name": "other"}), 409, "SecurityGroupCannotUpdateDefault")
    updated = await svc.update_group(ALICE, default["id"], {"description": "mine"})
    assert updated["description"] == "mine" and updated["revision_number"] == default["revision_number"] + 1
    await fails(svc.delete_group(ALICE, default["id"]), 409, "SecurityGroupCannotRemoveDefault")
    web = await svc.create_group(ALICE, {"name": "web"})
    await fails(svc.update_group(ALICE, web["id"], {"name": "default"}), 409, "SecurityGroupDefaultAlreadyExists")
    await fails(svc.update_group(ALICE, web["id"], {"project_id": "proj-b"}), 400, "HTTPBadRequest")
    # The admin may delete a default group no port uses; the next use makes a new one.
    await svc.delete_group(ADMIN, default["id"])
    fresh = await svc.list_groups(ALICE)
    assert "default" in {g["name"] for g in fresh} and default["id"] not in {g["id"] for g in fresh}


async def test_group_in_use_by_a_port(svc: NetworkService) -> None:
    net, _ = await tenant_network(svc, ALICE)
    web = (await svc.create_group(ALICE, {"name": "web"}))["id"]
    port = await svc.create_port(ALICE, {"network_id": net["id"], "security_groups": [web]})
    exc = await fails(svc.delete_group(ALICE, web), 409, "SecurityGroupInUse")
    assert exc.message == f"Security Group {web} in use."
    await fails(svc.update_group(ALICE, web, {"stateful": False}), 409, "SecurityGroupInUse")
    await svc.delete_port(ALICE, port["id"])
    await svc.delete_group(ALICE, web)
    await fails(svc.get_group(ALICE, web), 404, "SecurityGroupNotFound")


async def test_ports_join_the_default_group(svc: NetworkService) -> None:
    net, _ = await tenant_network(svc, ALICE)
    port = await svc.create_port(ALICE, {"network_id": net["id"]})
    default = (await svc.list_groups(ALICE))[0]
    assert port["security_groups"] == [default["id"]]
    await fails(svc.delete_group(ADMIN, default["id"]), 409, "SecurityGroupInUse")


async def test_projects_are_isolated(svc: NetworkService) -> None:
    web = await svc.create_group(ALICE, {"name": "web"})
    r = await svc.create_rule(ALICE, rule(web["id"], protocol="tcp", port_range_min=80, port_range_max=80))
    bob_groups = await svc.list_groups(BOB)
    assert [g["name"] for g in bob_groups] == ["default"] and bob_groups[0]["project_id"] == "proj-b"
    assert r["id"] not in {x["id"] for x in await svc.list_rules(BOB)}
    await fails(svc.get_group(BOB, web["id"]), 404, "SecurityGroupNotFound")
    await fails(svc.update_group(BOB, web["id"], {"description": "mine"}), 404, "SecurityGroupNotFound")
    await fails(svc.delete_group(BOB, web["id"]), 404, "SecurityGroupNotFound")
    await fails(svc.get_rule(BOB, r["id"]), 404, "SecurityGroupRuleNotFound")
    await fails(svc.delete_rule(BOB, r["id"]), 404, "SecurityGroupRuleNotFound")
    await fails(svc.create_rule(BOB, rule(web["id"], protocol="udp")), 404, "SecurityGroupNotFound")
    bob_web = (await svc.create_group(BOB, {"name": "web"}))["id"]
    await fails(svc.create_rule(BOB, rule(bob_web, remote_group_id=web["id"])), 404, "SecurityGroupNotFound")
    await fails(svc.create_group(BOB, {"name": "x", "project_id": "proj-a"}), 400, "HTTPBadRequest")
    net, _ = await tenant_network(svc, BOB)
    await fails(svc.create_port(BOB, {"network_id": net["id"], "security_groups": [web["id"]]}), 404,
                "SecurityGroupNotFound")
    # The admin sees both projects' groups, and may act on either.
    assert {"proj-a", "proj-b"} <= {g["project_id"] for g in await svc.list_groups(ADMIN)}
    await svc.delete_rule(ADMIN, r["id"])


async def test_quotas(svc: NetworkService) -> None:
    await svc.update_quota(ADMIN, "proj-a", {"security_group": 2, "security_group_rule": 7})
    web = await svc.create_group(ALICE, {"name": "web"})  # default (4 rules) + web (2 rules)
    await fails(svc.create_group(ALICE, {"name": "two"}), 409, "OverQuota")
    await svc.create_rule(ALICE, rule(web["id"], protocol="tcp", port_range_min=1, port_range_max=1))
    exc = await fails(svc.create_rule(ALICE, rule(web["id"], protocol="tcp", port_range_min=2, port_range_max=2)),
                      409, "OverQuota")
    assert "security_group_rule" in exc.message
    await svc.create_group(BOB, {"name": "web"})  # another project's quota is its own


async def test_concurrent_first_uses_make_one_default_group(svc: NetworkService) -> None:
    answers = await asyncio.gather(*(svc.list_groups(ALICE) for _ in range(5)), svc.ensure_default(ALICE, "proj-a"))
    ids = {g["id"] for groups in answers[:-1] for g in groups}  # type: ignore[union-attr]
    assert len(ids) == 1 and answers[-1] in ids


async def test_tags_on_create_and_through_the_tag_api(svc: NetworkService) -> None:
    g = await svc.create_group(ALICE, {"name": "web", "tags": ["blue", "green"]})
    assert g["tags"] == ["blue", "green"]
    assert await svc.replace_tags(ALICE, "security-groups", g["id"], ["red"]) == ["red"]
    assert (await svc.get_group(ALICE, g["id"]))["tags"] == ["red"]
    await fails(svc.create_group(ALICE, {"name": "x", "tags": ["a/b"]}), 400, "InvalidInput")
    await fails(svc.get_tags(BOB, "security-groups", g["id"]), 404, "SecurityGroupNotFound")
