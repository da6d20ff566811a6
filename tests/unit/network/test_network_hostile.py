"""Every network route with hostile input: bad ids, bad bodies, odd query strings. The answer is a
4xx in Neutron's fault shape (or a success), never a 500."""

from __future__ import annotations

import itertools
import re
from typing import Any

import httpx
import pytest
from net_support import make_net, make_port, make_subnet

from cumulo.network.openapi_ops import NETWORK_OPS

pytestmark = pytest.mark.timeout(240)

BODIES: list[bytes] = [
    b"", b"null", b"[]", b"{}", b"42", b'"x"', b"{bad", b"\xff\xfe", b'{"a": "\\udc00"}',
    b'{"network": null}', b'{"subnet": {"cidr": []}}', b'{"port": {"fixed_ips": [null]}}',
    b'{"quota": {"network": "many"}}', b'{"tags": [1, 2]}', b'{"network": {"mtu": -1}}',
    b'{"subnet": {"network_id": "00000000-0000-0000-0000-000000000000", "cidr": "10.0.0.0/24", "ip_version": 4}}',
    b'{"port": {"network_id": "00000000-0000-0000-0000-000000000000"}}',
    b'{"networks": []}', b'{"networks": [null]}', b'{"ports": [{"network_id": 1}]}',
    b'{"subnetpool": {"prefixes": ["10.0.0.0/8"], "min_prefixlen": "x"}}', b'{"subnetpool": {"prefixes": [null]}}',
    b'{"subnet": {"network_id": "00000000-0000-0000-0000-000000000000", "subnetpool_id": [], "prefixlen": -1}}',
]
QUERIES = ["", "?limit=-1", "?limit=1&marker=nope", "?sort_key=id&sort_dir=sideways", "?fields=", "?page_reverse=maybe",
           "?fixed_ips=mac=1", "?tags=,,,", "?shared=perhaps"]


def _paths(template: str, ids: dict[str, str]) -> list[str]:
    names = re.findall(r"{([^}]+)}", template)
    choices = [[ids.get(n, "x"), "00000000-0000-0000-0000-000000000000", "%20", "a" * 300] for n in names]
    out = []
    for combo in itertools.product(*choices) if names else [()]:
        path = template
        for name, value in zip(names, combo, strict=True):
            path = path.replace("{" + name + "}", value, 1)
        out.append(path)
    return out[:6]


async def test_no_route_answers_500(alice: httpx.AsyncClient, bob: httpx.AsyncClient) -> None:
    net = await make_net(alice)
    sub = await make_subnet(alice, net["id"])
    port = await make_port(alice, net["id"])
    ids = {"network_id": net["id"], "subnet_id": sub["id"], "port_id": port["id"], "project_id": "project-a",
           "collection": "networks", "resource_id": net["id"], "tag": "t", "alias": "binding"}
    seen = 0
    for o in NETWORK_OPS:
        for path in _paths(o.path, ids):
            for client in (alice, bob):
                if o.method in ("POST", "PUT"):
                    for body in BODIES:
                        r = await client.request(o.method, "/" + path.lstrip("/"), content=body,
                                                 headers={"Content-Type": "application/json"})
                        _check(r, o.method, path, body)
                        seen += 1
                elif o.method == "GET":
                    for q in QUERIES:
                        r = await client.get("/" + path.lstrip("/") + q)
                        _check(r, o.method, path + q, None)
                        seen += 1
                else:
                    r = await client.request(o.method, "/" + path.lstrip("/"))
                    _check(r, o.method, path, None)
                    seen += 1
    assert seen > 500


def _check(r: httpx.Response, method: str, path: str, body: Any) -> None:
    assert r.status_code < 500, (method, path, body, r.text)
    if r.status_code >= 400:
        err = r.json()["NeutronError"]
        assert set(err) == {"type", "message", "detail"} and err["type"] and err["message"], (method, path, body, err)
