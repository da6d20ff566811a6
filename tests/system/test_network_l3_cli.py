"""Routers, floating IPs and security groups through the real `openstack` CLI on `cumulo up`
(issue 10, the L3 API part): nothing is plumbed on the host here, the API and its rules are.

The admin makes an external network; the demo project makes its own network, a router with its
gateway on the external network and an interface on its subnet, a floating IP associated with a
port and disassociated again, and a security group with rules. Refusals come back as the CLI
reports Neutron's faults: the HTTP status and Neutron's message.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import CumuloCloud

pytestmark = pytest.mark.system

cumulo_options = {"fake_hosts": 0}
cumulo_configs = ("embedded", "scaled")  # and on the scaled-out cloud (tests/system/cluster.py)
EXT_CIDR = "203.0.113.0/24"
PRIV_CIDR = "10.20.0.0/24"
DEMO = "cumulo-demo"
# The scaled variant keeps to the floating IP lifecycle (router, gateway, interface, association and
# its refusals through `cumulo api` on PostgreSQL, the L3 host told over RabbitMQ): nothing is
# plumbed here (fake driver), so the other two are the same API on both and stay embedded.
SCALED_SUBSET = pytest.mark.configs("embedded", reason="API-only (fake driver); the scaled variant keeps the "
                                    "floating IP lifecycle, within the run's time budget")


class Env:
    def __init__(self, cloud: CumuloCloud) -> None:
        self.cloud = cloud
        self.made: list[tuple[str, str, str]] = []  # (cloud, kind, id), deleted last first

    def make(self, cloud: str, kind: list[str], *args: str) -> dict[str, Any]:
        made: dict[str, Any] = self.cloud.osc(*kind, "create", *args, cloud=cloud)
        self.made.append((cloud, " ".join(kind), made["id"]))
        return made

    def demo(self, *args: str) -> Any:
        return self.cloud.osc(*args, cloud=DEMO)

    def refused(self, *args: str, cloud: str = DEMO) -> str:
        """The CLI's error text of a command that must fail."""
        with pytest.raises(self.cloud.OscError) as info:
            self.cloud.osc(*args, cloud=cloud)
        return info.value.stderr


@pytest.fixture(scope="module")
def env(cumulo: CumuloCloud) -> Iterator[Env]:
    # What the tests made is not deleted one CLI command at a time (about 12 commands, 15-40 s):
    # the module's cloud (fake driver, nothing plumbed on the host) goes right after, state dir
    # and all; the deletes the tests rely on are their own, checked where they happen.
    yield Env(cumulo)


@pytest.fixture(scope="module")
def nets(env: Env) -> dict[str, Any]:
    ext = env.make("cumulo", ["network"], "--external", "ext-l3")
    ext_sub = env.make("cumulo", ["subnet"], "--network", ext["id"], "--subnet-range", EXT_CIDR, "ext-l3-v4")
    priv = env.make(DEMO, ["network"], "priv-l3")
    priv_sub = env.make(DEMO, ["subnet"], "--network", priv["id"], "--subnet-range", PRIV_CIDR, "priv-l3-v4")
    assert ext["router:external"] is True and priv["router:external"] is False
    return {"ext": ext, "ext_sub": ext_sub, "priv": priv, "priv_sub": priv_sub}


@SCALED_SUBSET
def test_router_gateway_and_interfaces(env: Env, nets: dict[str, Any]) -> None:
    router = env.make(DEMO, ["router"], "r-l3")
    assert router["status"] == "ACTIVE" and not router["external_gateway_info"]
    env.demo("router", "set", "--external-gateway", nets["ext"]["id"], router["id"])
    shown = env.demo("router", "show", router["id"])
    gw = shown["external_gateway_info"]
    assert gw["network_id"] == nets["ext"]["id"] and gw["enable_snat"] is True
    [fixed] = gw["external_fixed_ips"]
    assert ipaddress.ip_address(fixed["ip_address"]) in ipaddress.ip_network(EXT_CIDR)
    # The demo user may not choose SNAT (Neutron's default policy).
    assert "403" in env.refused("router", "set", "--external-gateway", nets["ext"]["id"], "--disable-snat", router["id"])

    env.demo("router", "add", "subnet", router["id"], nets["priv_sub"]["id"])
    ports = env.demo("port", "list", "--router", router["id"], "--long")
    interfaces = [p for p in ports if p["Device Owner"] == "network:router_interface"]
    assert len(interfaces) == 1
    assert nets["priv_sub"]["gateway_ip"] in str(interfaces[0]["Fixed IP Addresses"])
    # A second interface on the subnet, and deleting a router that has one, are refused.
    assert "400" in env.refused("router", "add", "subnet", router["id"], nets["priv_sub"]["id"])
    err = env.refused("router", "delete", router["id"])
    assert "still attached" in err or "409" in err
    env.demo("router", "remove", "subnet", router["id"], nets["priv_sub"]["id"])
    assert not [p for p in env.demo("port", "list", "--router", router["id"], "--long")
                if p["Device Owner"] == "network:router_interface"]
    # A tenant network is no gateway.
    assert "not an external network" in env.refused("router", "set", "--external-gateway", nets["priv"]["id"], router["id"])
    # The admin's routers are not the demo project's to see.
    admin_router = env.make("cumulo", ["router"], "admin-r-l3")
    assert "No Router found" in env.refused("router", "show", admin_router["id"])


def test_floating_ip_lifecycle(env: Env, nets: dict[str, Any]) -> None:
    router = env.make(DEMO, ["router"], "r-fip")
    env.demo("router", "set", "--external-gateway", nets["ext"]["id"], router["id"])
    port = env.make(DEMO, ["port"], "--network", nets["priv"]["id"], "p-fip")
    fip = env.make(DEMO, ["floating", "ip"], nets["ext"]["id"])
    assert ipaddress.ip_address(fip["floating_ip_address"]) in ipaddress.ip_network(EXT_CIDR)
    assert fip["port_id"] is None and fip["status"] == "DOWN"
    # No router joins the port's subnet to the external network yet: Neutron's 404.
    err = env.refused("floating", "ip", "set", "--port", port["id"], fip["id"])
    assert "404" in err and "is not reachable from subnet" in err
    env.demo("router", "add", "subnet", router["id"], nets["priv_sub"]["id"])
    env.demo("floating", "ip", "set", "--port", port["id"], fip["id"])
    shown = env.demo("floating", "ip", "show", fip["id"])
    assert shown["port_id"] == port["id"] and shown["router_id"] == router["id"]
    assert shown["fixed_ip_address"] == port["fixed_ips"][0]["ip_address"]
    assert "409" in env.refused("router", "remove", "subnet", router["id"], nets["priv_sub"]["id"])
    env.demo("floating", "ip", "unset", "--port", fip["id"])
    shown = env.demo("floating", "ip", "show", fip["id"])
    assert shown["port_id"] is None and shown["fixed_ip_address"] is None
    env.demo("floating", "ip", "delete", fip["id"])
    assert fip["id"] not in {f["ID"] for f in env.demo("floating", "ip", "list")}
    env.demo("router", "remove", "subnet", router["id"], nets["priv_sub"]["id"])
    # A floating IP comes only from an external network.
    assert "not a valid external network" in env.refused("floating", "ip", "create", nets["priv"]["id"])


@SCALED_SUBSET
def test_security_groups_and_rules(env: Env, nets: dict[str, Any]) -> None:
    groups = {g["Name"]: g for g in env.demo("security", "group", "list")}
    assert "default" in groups
    default_rules = env.demo("security", "group", "rule", "list", groups["default"]["ID"])
    assert len(default_rules) == 4
    assert "409" in env.refused("security", "group", "delete", groups["default"]["ID"])

    sg = env.make(DEMO, ["security", "group"], "--description", "web servers", "sg-l3")
    rule = env.demo("security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "80:81",
                    "--remote-ip", "10.0.0.0/8", sg["id"])
    assert (rule["protocol"], rule["port_range_min"], rule["port_range_max"]) == ("tcp", 80, 81)
    assert rule["remote_ip_prefix"] == "10.0.0.0/8" and rule["direction"] == "ingress"
    err = env.refused("security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "80:81",
                      "--remote-ip", "10.0.0.0/8", sg["id"])
    assert "409" in err and "already exists" in err
    err = env.refused("security", "group", "rule", "create", "--protocol", "ipv6-icmp", "--ethertype", "IPv4", sg["id"])
    assert "400" in err and "Invalid ethertype IPv4 for protocol ipv6-icmp" in err
    listed = env.demo("security", "group", "rule", "list", sg["id"])
    assert rule["id"] in {r["ID"] for r in listed} and len(listed) == 3  # two egress rules and ours
    env.demo("security", "group", "rule", "delete", rule["id"])
    assert rule["id"] not in {r["ID"] for r in env.demo("security", "group", "rule", "list", sg["id"])}
    # A group a port uses cannot go.
    port = env.make(DEMO, ["port"], "--network", nets["priv"]["id"], "--security-group", sg["id"], "p-sg")
    assert "409" in env.refused("security", "group", "delete", sg["id"])
    env.demo("port", "delete", port["id"])
    env.demo("security", "group", "delete", sg["id"])
    assert "sg-l3" not in {g["Name"] for g in env.demo("security", "group", "list")}
