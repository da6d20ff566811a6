"""The metadata service's lookup and paths (network/metadata.py): (network, source IP) -> port ->
instance, Nova's OpenStack and EC2 paths, and no instance ever served another's data."""

from __future__ import annotations

import json
import uuid as uuidlib
from typing import Any

from _asgi_ctx import ctx_for

from cumulo.compute.metadata_docs import render
from cumulo.network import metadata
from cumulo.network.metadata import MetadataService
from cumulo.network.service import NetworkService

ALICE, BOB = ctx_for("project-a", "member"), ctx_for("project-b", "member")


def docs_of(uuid: str, name: str, user_data: bytes | None = None, key: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"uuid": uuid, "name": name, "hostname": name, "availability_zone": "nova",
                            "project_id": "p", "meta": {"role": name}}
    if key:
        meta["public_keys"] = {"mykey": key}
    return {"uuid": uuid, "meta_data": meta, "network_data": {"links": [], "networks": [], "services": []},
            "vendor_data": {}, "user_data": user_data, "ec2_id": "i-0000000a", "hostname": name,
            "availability_zone": "nova", "instance_type": "m1.tiny", "image_id": "img",
            "reservation_id": "r-1", "launch_index": 0, "security_groups": ["default"]}


async def net_with_port(svc: NetworkService, ctx: Any, device_id: str, ip: str = "10.0.0.5",
                        owner: str = "compute:nova") -> tuple[str, str]:
    net = await svc.create_network(ctx, {"name": "n"})
    sub = await svc.create_subnet(ctx, {"network_id": net["id"], "cidr": "10.0.0.0/24", "ip_version": 4})
    port = await svc.create_port(ctx, {"network_id": net["id"], "device_id": device_id, "device_owner": owner,
                                       "fixed_ips": [{"subnet_id": sub["id"], "ip_address": ip}]})
    return net["id"], port["id"]


async def two_servers(svc: NetworkService) -> tuple[MetadataService, dict[str, Any]]:
    a, b = str(uuidlib.uuid4()), str(uuidlib.uuid4())
    net_a, _ = await net_with_port(svc, ALICE, a)
    net_b, _ = await net_with_port(svc, BOB, b)
    docs = {a: docs_of(a, "alpha", b"#!/bin/sh\necho alpha\n", key="ssh-ed25519 AAAA alice"), b: docs_of(b, "beta")}

    async def documents(uuid: str, nics: list[dict[str, Any]]) -> dict[str, Any] | None:
        return docs.get(uuid)

    return MetadataService(svc.db, documents), {"a": a, "b": b, "net_a": net_a, "net_b": net_b}


async def test_same_ip_on_two_networks_each_sees_its_own(svc: NetworkService) -> None:
    md, ids = await two_servers(svc)
    status, ctype, body = await md.respond(ids["net_a"], "10.0.0.5", "/openstack/latest/meta_data.json")
    assert (status, ctype) == (200, "application/json")
    assert json.loads(body)["uuid"] == ids["a"]
    status, _, body = await md.respond(ids["net_b"], "10.0.0.5", "/openstack/latest/meta_data.json")
    assert status == 200 and json.loads(body)["uuid"] == ids["b"]
    assert (await md.respond(ids["net_a"], "10.0.0.5", "/openstack/latest/user_data"))[2] == b"#!/bin/sh\necho alpha\n"
    assert (await md.respond(ids["net_b"], "10.0.0.5", "/openstack/latest/user_data"))[0] == 404
    assert (await md.respond(ids["net_b"], "10.0.0.5", "/latest/meta-data/hostname"))[2] == b"beta"


async def test_an_unknown_source_or_a_non_server_port_gets_404(svc: NetworkService) -> None:
    md, ids = await two_servers(svc)
    for net, ip in ((ids["net_a"], "10.0.0.6"), (ids["net_a"], "not-an-ip"), (str(uuidlib.uuid4()), "10.0.0.5")):
        assert (await md.respond(net, ip, "/openstack/latest/meta_data.json"))[0] == 404
    router_net, _ = await net_with_port(svc, ALICE, str(uuidlib.uuid4()), owner="network:router_interface")
    assert (await md.respond(router_net, "10.0.0.5", "/openstack/latest/meta_data.json"))[0] == 404
    # an instance the documents no longer know (deleted) is a 404 too
    gone_net, _ = await net_with_port(svc, ALICE, str(uuidlib.uuid4()))
    assert (await md.respond(gone_net, "10.0.0.5", "/openstack"))[0] == 404


async def test_openstack_paths(svc: NetworkService) -> None:
    md, ids = await two_servers(svc)

    async def get(path: str) -> tuple[int, bytes]:
        status, _, body = await md.respond(ids["net_a"], "10.0.0.5", path)
        return status, body

    status, body = await get("/openstack")
    assert status == 200 and body.decode().split("\n")[-1] == "latest" and "2018-08-27" in body.decode()
    assert (await get("/openstack/"))[1] == body
    status, body = await get("/openstack/latest/")
    assert set(body.decode().split("\n")) == {"meta_data.json", "network_data.json", "vendor_data.json",
                                              "vendor_data2.json", "user_data"}
    for name in ("network_data.json", "vendor_data.json", "vendor_data2.json"):
        status, body = await get(f"/openstack/latest/{name}")
        assert status == 200 and isinstance(json.loads(body), dict)
    assert json.loads((await get("/openstack/latest/network_data.json"))[1])["links"] == []
    status, body = await get("/openstack/2013-10-17/meta_data.json")
    assert status == 200 and json.loads(body)["meta"] == {"role": "alpha"}
    for bad in ("/openstack/1999-01-01/meta_data.json", "/openstack/latest/password", "/openstack/latest/../x",
                "/nope", "/openstack/latest/meta_data.json/x"):
        assert (await get(bad))[0] == 404, bad


async def test_ec2_paths(svc: NetworkService) -> None:
    md, ids = await two_servers(svc)

    async def get(path: str) -> tuple[int, str]:
        status, _, body = await md.respond(ids["net_a"], "10.0.0.5", path)
        return status, body.decode()

    status, body = await get("/")
    assert status == 200 and "latest" in body.split("\n") and "openstack" in body.split("\n")
    assert (await get("/latest/"))[1].split("\n") == ["meta-data/", "user-data"]
    listing = (await get("/latest/meta-data/"))[1].split("\n")
    for item in ("instance-id", "hostname", "local-ipv4", "public-ipv4", "public-keys/", "placement/"):
        assert item in listing, item
    assert await get("/latest/meta-data/instance-id") == (200, "i-0000000a")
    assert await get("/latest/meta-data/local-ipv4") == (200, "10.0.0.5")
    assert await get("/latest/meta-data/public-ipv4") == (200, "")
    assert await get("/latest/meta-data/placement/availability-zone") == (200, "nova")
    assert await get("/latest/meta-data/public-keys/") == (200, "0=mykey")
    assert await get("/latest/meta-data/public-keys/0/") == (200, "openssh-key")
    assert await get("/latest/meta-data/public-keys/0/openssh-key") == (200, "ssh-ed25519 AAAA alice")
    assert await get("/2009-04-04/user-data") == (200, "#!/bin/sh\necho alpha\n")
    assert (await get("/latest/meta-data/nope"))[0] == 404
    assert (await get("/latest/meta-data/hostname/x"))[0] == 404


async def test_public_ipv4_is_the_floating_ip(svc: NetworkService) -> None:
    md, ids = await two_servers(svc)
    from cumulo.network.models import floating_ips

    async with svc.db.write() as conn:
        port_id = (await metadata.instance_at(svc.db, ids["net_a"], "10.0.0.5"))
        assert port_id is not None
        await conn.execute(floating_ips.insert().values(
            id=str(uuidlib.uuid4()), project_id="project-a", floating_network_id=ids["net_b"],
            floating_ip_address="172.24.4.10", port_id=port_id[1], fixed_ip_address="10.0.0.5"))
    assert (await md.respond(ids["net_a"], "10.0.0.5", "/latest/meta-data/public-ipv4"))[2] == b"172.24.4.10"
    assert (await md.respond(ids["net_b"], "10.0.0.5", "/latest/meta-data/public-ipv4"))[2] == b""


async def test_the_documents_get_the_instance_nics(svc: NetworkService) -> None:
    uuid = str(uuidlib.uuid4())
    net, port = await net_with_port(svc, ALICE, uuid, ip="10.0.0.7")
    seen: list[list[dict[str, Any]]] = []

    async def documents(u: str, nics: list[dict[str, Any]]) -> dict[str, Any] | None:
        seen.append(nics)
        return docs_of(u, "gamma")

    md = MetadataService(svc.db, documents)
    assert (await md.respond(net, "10.0.0.7", "/openstack/latest/meta_data.json"))[0] == 200
    [nic] = seen[0]
    assert nic["port_id"] == port and nic["addresses"] == ["10.0.0.7/24"] and nic["gateway"] == "10.0.0.1"
    assert nic["netns"] == f"cnet-{net}" and nic["mac"].startswith("fa:16:3e:")
    assert not any(k.endswith("_") for k in nic)


async def test_compute_documents_match_the_config_drive() -> None:
    uuid = str(uuidlib.uuid4())
    inst = {"id": 10, "uuid": uuid, "display_name": "web 1", "hostname": "web-1", "project_id": "p",
            "flavor": {"name": "m1.tiny", "vcpus": 1, "memory_mb": 64}, "image_ref": "img",
            "user_data": "IyEvYmluL3NoCg==", "key_name": "k", "key_data": "ssh-rsa AAA", "metadata": {"a": "b"},
            "availability_zone": "nova", "reservation_id": "r-x", "launch_index": 0, "security_groups": ["default"]}
    assert (await render(inst))["network_data"] == {"links": [], "networks": [], "services": []}
    nic = {"port_id": "p1", "mac": "fa:16:3e:00:00:01", "netns": "cnet-x", "addresses": ["10.0.0.7/24"],
           "gateway": "10.0.0.1", "routes": [], "mtu": 1450, "dns": []}
    docs = await render(inst, [nic])
    [link] = docs["network_data"]["links"]
    [network] = docs["network_data"]["networks"]
    assert link["ethernet_mac_address"] == "fa:16:3e:00:00:01" and link["vif_id"] == "p1"
    assert (network["ip_address"], network["netmask"], network["gateway"]) == ("10.0.0.7", "255.255.255.0", "10.0.0.1")
    assert docs["uuid"] == uuid and docs["ec2_id"] == "i-0000000a" and docs["user_data"] == b"#!/bin/sh\n"
    assert docs["meta_data"]["uuid"] == uuid and docs["meta_data"]["public_keys"] == {"k": "ssh-rsa AAA"}
    assert docs["meta_data"]["meta"] == {"a": "b"} and docs["instance_type"] == "m1.tiny"


async def test_http_framing(svc: NetworkService) -> None:
    """The listener's HTTP: GET and HEAD answered once per connection, other methods 405, a bad
    or oversized request head 400; the peer address is what identifies the caller."""
    import asyncio
    from functools import partial

    seen: list[tuple[str, str, str]] = []

    class Recording(MetadataService):
        async def respond(self, network_id: str, ip: str, path: str) -> metadata.Response:
            seen.append((network_id, ip, path))
            return 200, "text/plain; charset=UTF-8", b"hello"

    async def documents(uuid: str, nics: list[dict[str, Any]]) -> dict[str, Any] | None:
        return None

    md = Recording(svc.db, documents)
    server = await asyncio.start_server(partial(md._handle, "net-1"), host="127.0.0.1", port=0)
    port = server.sockets[0].getsockname()[1]

    async def ask(raw: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        await writer.drain()
        data = await reader.read()
        writer.close()
        return data

    try:
        reply = await ask(b"GET /openstack?x=1 HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and reply.endswith(b"\r\n\r\nhello"), reply
        assert b"Content-Length: 5\r\n" in reply and b"Connection: close\r\n" in reply
        assert seen == [("net-1", "127.0.0.1", "/openstack")]
        head = await ask(b"HEAD /openstack HTTP/1.0\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n"), head
        assert (await ask(b"POST /openstack/latest/password HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405")
        assert (await ask(b"GET nothing HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 400")
        assert (await ask(b"garbage\r\n\r\n")).startswith(b"HTTP/1.1 400")
        assert (await ask(b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 400")
        assert len(seen) == 2
    finally:
        server.close()
        await server.wait_closed()
