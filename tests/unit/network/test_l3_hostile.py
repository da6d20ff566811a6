"""Every L3 route (routers, interfaces, floating IPs, security groups and rules) with hostile input:
bad ids, bad bodies, odd query strings, from the owner and from another project. The answer is a 4xx
in Neutron's fault shape (or a success), never a 500."""

from __future__ import annotations

import httpx
import pytest
from net_support import make_net, make_port, make_subnet
from test_network_hostile import BODIES, QUERIES, _check, _paths

from cumulo.network.openapi_ops import L3_OPS

pytestmark = pytest.mark.timeout(240)

Z = "00000000-0000-0000-0000-000000000000"
L3_BODIES: list[bytes] = [
    *BODIES[:9],
    b'{"router": {"external_gateway_info": "x"}}', b'{"router": {"external_gateway_info": {"network_id": null}}}',
    b'{"router": {"external_gateway_info": {"network_id": "' + Z.encode() + b'", "external_fixed_ips": [null]}}}',
    b'{"router": {"routes": [1]}}', b'{"router": {"routes": [{"destination": 1, "nexthop": []}]}}',
    b'{"router": {"admin_state_up": "yes", "name": ["x"]}}', b'{"routers": [{"name": "x"}]}',
    b'{"subnet_id": []}', b'{"port_id": {"a": 1}}', b'{"subnet_id": "' + Z.encode() + b'", "port_id": 7}',
    b'{"floatingip": {"floating_network_id": []}}', b'{"floatingip": {"port_id": 5}}',
    b'{"floatingip": {"floating_network_id": "' + Z.encode() + b'", "fixed_ip_address": "1.2.3.4"}}',
    b'{"floatingip": {"port_id": "' + Z.encode() + b'", "fixed_ip_address": []}}',
    b'{"security_group": {"name": ["x"]}}', b'{"security_group": {"stateful": "maybe"}}',
    b'{"security_group_rule": {"security_group_id": {}, "direction": "ingress"}}',
    b'{"security_group_rule": {"security_group_id": "x", "direction": "ingress", "port_range_min": 1e400}}',
    b'{"security_group_rule": {"security_group_id": "x", "direction": "ingress", "protocol": "tcp", '
    b'"port_range_min": 99999999999999999999999, "port_range_max": 1}}',
    b'{"security_group_rule": {"security_group_id": "x", "direction": "ingress", "remote_ip_prefix": "1.2.3.4/24\\u0000"}}',
    b'{"security_group_rule": {"security_group_id": "x", "direction": ["ingress"], "ethertype": 4}}',
    b'{"security_group_rule": {"description": 5}}',
    b'{"router": {"tenant_id": {}}}', b'{"security_group": {"project_id": []}}',
    b'{"security_group_rule": {"security_group_id": "x", "direction": "egress", "tenant_id": {"a": 1}}}',
    b'{"floatingip": {"floating_network_id": "' + Z.encode() + b'", "tenant_id": [1]}}',
]


async def test_no_l3_route_answers_500(alice: httpx.AsyncClient, bob: httpx.AsyncClient) -> None:
    net = await make_net(alice)
    sub = await make_subnet(alice, net["id"])
    port = await make_port(alice, net["id"])
    router = (await alice.post("/v2.0/routers", json={"router": {"name": "r"}})).json()["router"]
    group = (await alice.post("/v2.0/security-groups", json={"security_group": {"name": "g"}})).json()["security_group"]
    rule = group["security_group_rules"][0]
    ids = {"router_id": router["id"], "security_group_id": group["id"], "security_group_rule_id": rule["id"],
           "floatingip_id": "x", "subnet_id": sub["id"], "port_id": port["id"]}
    seen = 0
    for o in L3_OPS:
        for path in _paths(o.path, ids):
            for client in (alice, bob):
                if o.method in ("POST", "PUT"):
                    for body in L3_BODIES:
                        body = body.replace(b'"x"', b'"' + group["id"].encode() + b'"') if b"security_group_id" in body else body
                        r = await client.request(o.method, "/" + path.lstrip("/"), content=body,
                                                 headers={"Content-Type": "application/json"})
                        _check(r, o.method, path, body)
                        seen += 1
                elif o.method == "GET":
                    for q in [*QUERIES, "?stateful=perhaps", "?port_range_min=abc", "?external_gateway_info=1"]:
                        r = await client.get("/" + path.lstrip("/") + q)
                        _check(r, o.method, path + q, None)
                        seen += 1
                else:
                    r = await client.request(o.method, "/" + path.lstrip("/"))
                    _check(r, o.method, path, None)
                    seen += 1
    assert seen > 500
