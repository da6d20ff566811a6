"""The L3 routes over HTTP (the real network app): status codes, Neutron's fault body
{"NeutronError": {"type", "message", "detail"}} for each refusal (never a 500), list filters, and
the add/remove_router_interface actions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _asgi_ctx import AsCtx
from l3_support import ADMIN, ALICE, BOB, make_service

from cumulo.context import RequestContext
from cumulo.network import api
from cumulo.network.service import NetworkService

MISSING = "4e5b1a1e-0000-4000-8000-000000000000"


class Api:
    def __init__(self, svc: NetworkService) -> None:
        self.svc = svc
        self.app = api.make_app(svc)

    async def call(self, who: RequestContext, method: str, path: str, **kw: Any) -> httpx.Response:
        transport = httpx.ASGITransport(app=AsCtx(self.app, who))
        async with httpx.AsyncClient(transport=transport, base_url="http://cumulo.test") as c:
            return await c.request(method, path, **kw)


@pytest.fixture
async def web(tmp_path: Path) -> AsyncIterator[Api]:
    async with make_service(tmp_path) as svc:
        yield Api(svc)


def fault(r: httpx.Response, status: int, kind: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"NeutronError"} and set(body["NeutronError"]) == {"type", "message", "detail"}
    assert body["NeutronError"]["type"] == kind, body
    return str(body["NeutronError"]["message"])


async def test_security_group_routes(web: Api) -> None:
    r = await web.call(ALICE, "GET", "/v2.0/security-groups")
    assert r.status_code == 200 and [g["name"] for g in r.json()["security_groups"]] == ["default"]
    r = await web.call(ALICE, "POST", "/v2.0/security-groups", json={"security_group": {"name": "web"}})
    assert r.status_code == 201
    gid = r.json()["security_group"]["id"]
    body = {"security_group_rule": {"security_group_id": gid, "direction": "ingress", "protocol": "tcp",
                                    "port_range_min": 22, "port_range_max": 22}}
    r = await web.call(ALICE, "POST", "/v2.0/security-group-rules", json=body)
    assert r.status_code == 201
    rid = r.json()["security_group_rule"]["id"]
    msg = fault(await web.call(ALICE, "POST", "/v2.0/security-group-rules", json=body), 409, "SecurityGroupRuleExists")
    assert rid in msg
    r = await web.call(ALICE, "GET", f"/v2.0/security-group-rules?security_group_id={gid}&direction=ingress")
    assert [x["id"] for x in r.json()["security_group_rules"]] == [rid]
    r = await web.call(ALICE, "GET", f"/v2.0/security-groups/{gid}?fields=id&fields=name")
    assert r.json() == {"security_group": {"id": gid, "name": "web"}}
    r = await web.call(ALICE, "PUT", f"/v2.0/security-group-rules/{rid}", json={"security_group_rule": {"description": "ssh"}})
    assert r.status_code == 200 and r.json()["security_group_rule"]["description"] == "ssh"
    fault(await web.call(ALICE, "PUT", f"/v2.0/security-group-rules/{rid}",
                         json={"security_group_rule": {"protocol": "udp"}}), 400, "HTTPBadRequest")
    fault(await web.call(BOB, "DELETE", f"/v2.0/security-group-rules/{rid}"), 404, "SecurityGroupRuleNotFound")
    assert (await web.call(ALICE, "DELETE", f"/v2.0/security-group-rules/{rid}")).status_code == 204
    bad = {"security_group_rule": {**body["security_group_rule"], "port_range_min": 30, "port_range_max": 20}}
    fault(await web.call(ALICE, "POST", "/v2.0/security-group-rules", json=bad), 400, "SecurityGroupInvalidPortRange")
    default = (await web.call(ALICE, "GET", "/v2.0/security-groups?name=default")).json()["security_groups"][0]
    fault(await web.call(ALICE, "DELETE", f"/v2.0/security-groups/{default['id']}"), 409, "SecurityGroupCannotRemoveDefault")
    fault(await web.call(BOB, "GET", f"/v2.0/security-groups/{gid}"), 404, "SecurityGroupNotFound")


async def test_router_routes(web: Api) -> None:
    ext = (await web.call(ADMIN, "POST", "/v2.0/networks", json={"network": {"name": "pub", "router:external": True}})).json()["network"]
    await web.call(ADMIN, "POST", "/v2.0/subnets", json={"subnet": {"network_id": ext["id"], "cidr": "172.24.4.0/24", "ip_version": 4}})
    net = (await web.call(ALICE, "POST", "/v2.0/networks", json={"network": {"name": "n"}})).json()["network"]
    sub = (await web.call(ALICE, "POST", "/v2.0/subnets", json={"subnet": {"network_id": net["id"], "cidr": "10.0.0.0/24",
                                                                          "ip_version": 4}})).json()["subnet"]
    r = await web.call(ALICE, "POST", "/v2.0/routers", json={"router": {"name": "r", "external_gateway_info": {"network_id": ext["id"]}}})
    assert r.status_code == 201
    router = r.json()["router"]
    r = await web.call(ALICE, "PUT", f"/v2.0/routers/{router['id']}/add_router_interface", json={"subnet_id": sub["id"]})
    assert r.status_code == 200 and r.json()["subnet_ids"] == [sub["id"]]
    msg = fault(await web.call(ALICE, "DELETE", f"/v2.0/routers/{router['id']}"), 409, "RouterInUse")
    assert router["id"] in msg
    fault(await web.call(ALICE, "PUT", f"/v2.0/routers/{router['id']}/add_router_interface", json={}), 400, "BadRequest")
    fault(await web.call(ALICE, "PUT", f"/v2.0/routers/{router['id']}/add_router_interface", content=b"{nope"), 400,
          "HTTPBadRequest")
    fault(await web.call(BOB, "PUT", f"/v2.0/routers/{router['id']}/remove_router_interface", json={"subnet_id": sub["id"]}),
          404, "RouterNotFound")
    fault(await web.call(ALICE, "PUT", f"/v2.0/routers/{router['id']}", json={"router": {"external_gateway_info": {"network_id": net["id"]}}}),
          400, "BadRequest")
    fault(await web.call(ALICE, "POST", "/v2.0/routers", json={"routers": {"name": "x"}}), 400, "HTTPBadRequest")
    r = await web.call(ALICE, "PUT", f"/v2.0/routers/{router['id']}/remove_router_interface", json={"subnet_id": sub["id"]})
    assert r.status_code == 200 and r.json()["port_id"]
    assert (await web.call(ALICE, "DELETE", f"/v2.0/routers/{router['id']}")).status_code == 204
    fault(await web.call(ALICE, "GET", f"/v2.0/routers/{router['id']}"), 404, "RouterNotFound")
    r = await web.call(ALICE, "GET", "/v2.0/routers")
    assert r.json() == {"routers": []}


async def test_floatingip_routes(web: Api) -> None:
    ext = (await web.call(ADMIN, "POST", "/v2.0/networks", json={"network": {"name": "pub", "router:external": True}})).json()["network"]
    await web.call(ADMIN, "POST", "/v2.0/subnets", json={"subnet": {"network_id": ext["id"], "cidr": "172.24.4.0/24", "ip_version": 4}})
    net = (await web.call(ALICE, "POST", "/v2.0/networks", json={"network": {"name": "n"}})).json()["network"]
    await web.call(ALICE, "POST", "/v2.0/subnets", json={"subnet": {"network_id": net["id"], "cidr": "10.0.0.0/24", "ip_version": 4}})
    port = (await web.call(ALICE, "POST", "/v2.0/ports", json={"port": {"network_id": net["id"]}})).json()["port"]
    r = await web.call(ALICE, "POST", "/v2.0/floatingips", json={"floatingip": {"floating_network_id": ext["id"]}})
    assert r.status_code == 201
    fip = r.json()["floatingip"]
    msg = fault(await web.call(ALICE, "PUT", f"/v2.0/floatingips/{fip['id']}", json={"floatingip": {"port_id": port["id"]}}),
                404, "ExternalGatewayForFloatingIPNotFound")
    assert port["id"] in msg
    fault(await web.call(ALICE, "POST", "/v2.0/floatingips", json={"floatingip": {"floating_network_id": net["id"]}}),
          400, "BadRequest")
    fault(await web.call(BOB, "PUT", f"/v2.0/floatingips/{fip['id']}", json={"floatingip": {"port_id": None}}), 404,
          "FloatingIPNotFound")
    r = await web.call(ALICE, "GET", f"/v2.0/floatingips?floating_network_id={ext['id']}&status=DOWN")
    assert [f["id"] for f in r.json()["floatingips"]] == [fip["id"]]
    assert (await web.call(BOB, "GET", "/v2.0/floatingips")).json() == {"floatingips": []}
    assert (await web.call(ALICE, "DELETE", f"/v2.0/floatingips/{fip['id']}")).status_code == 204
    fault(await web.call(ALICE, "DELETE", f"/v2.0/floatingips/{fip['id']}"), 404, "FloatingIPNotFound")
