"""Nova's side of networking against the in-process cloud (fake driver): server create's `networks`
(auto, none, uuids, ports, fixed IPs) allocating ports in the network service, addresses from the
ports, ports released at delete, and os-interface; each bad input with Nova's fault."""

from __future__ import annotations

from typing import Any

import pytest
from servers_support import (  # noqa: F401  (settings is a fixture override)
    API,
    NANO,
    World,
    fault_of,
    make_network,
    make_world,
    mv,
    settings,
    wait_gone,
    wait_status,
)

NET = "/networking/v2.0"


@pytest.fixture
async def world(cloud: Any, as_ctx: Any) -> World:
    return await make_world(cloud, as_ctx)


def _body(world: World, networks: Any = None, **extra: Any) -> dict[str, Any]:
    server: dict[str, Any] = {"name": "n", "imageRef": world.image_id, "flavorRef": NANO, **extra}
    if networks is not None:
        server["networks"] = networks
    return {"server": server}


async def _create(world: World, networks: Any, version: str = "2.37") -> Any:
    return await world.member.post(f"{API}/servers", json=_body(world, networks), headers=mv(version))


async def _ports_of(world: World, server_id: str) -> list[dict[str, Any]]:
    resp = await world.member.get(f"{NET}/ports", params={"device_id": server_id})
    assert resp.status_code == 200, resp.text
    ports: list[dict[str, Any]] = resp.json()["ports"]
    return ports


async def test_auto_takes_the_projects_network_and_addresses_come_from_the_port(world: World) -> None:
    net = await make_network(world.member, "mine", "10.20.0.0/24")
    resp = await _create(world, "auto")
    assert resp.status_code == 202, resp.text
    server = await wait_status(world.member, resp.json()["server"]["id"], "ACTIVE")
    [port] = await _ports_of(world, server["id"])
    assert port["network_id"] == net["network"]["id"] and port["device_owner"].startswith("compute:")
    ip = port["fixed_ips"][0]["ip_address"]
    assert ip.startswith("10.20.0.")
    assert server["addresses"] == {"mine": [{"addr": ip, "version": 4, "OS-EXT-IPS:type": "fixed",
                                             "OS-EXT-IPS-MAC:mac_addr": port["mac_address"]}]}
    ips = (await world.member.get(f"{API}/servers/{server['id']}/ips")).json()
    assert ips == {"addresses": {"mine": [{"addr": ip, "version": 4}]}}
    listed = (await world.member.get(f"{API}/servers/detail", params={"ip": ip})).json()["servers"]
    assert [s["id"] for s in listed] == [server["id"]]
    # Delete: the port Nova made goes with the server.
    assert (await world.member.delete(f"{API}/servers/{server['id']}")).status_code == 204
    await wait_gone(world.member, server["id"])
    assert await _ports_of(world, server["id"]) == []


async def test_none_and_no_network_before_2_37(world: World) -> None:
    resp = await _create(world, "none")
    assert resp.status_code == 202, resp.text
    server = await wait_status(world.member, resp.json()["server"]["id"], "ACTIVE")
    assert server["addresses"] == {} and await _ports_of(world, server["id"]) == []
    # No network anywhere for this project: before 2.37 the server boots without a NIC, as in Nova.
    # (With a shared network, that one is taken instead.)
    shared = [n for n in await world.cloud.services.network.list_networks(_ctx(world)) if n.get("shared")]
    resp = await world.member.post(f"{API}/servers", json=_body(world), headers=mv("2.36"))
    assert resp.status_code == 202, resp.text
    server = await wait_status(world.member, resp.json()["server"]["id"], "ACTIVE")
    assert [p["network_id"] for p in await _ports_of(world, server["id"])] == [n["id"] for n in shared[:1]]


def _ctx(world: World) -> Any:
    from servers_support import make_ctx

    return make_ctx(world.project_id, "member")


async def test_auto_without_a_network_is_400_and_two_networks_409(world: World) -> None:
    shared = [n for n in await world.cloud.services.network.list_networks(_ctx(world)) if n.get("shared")]
    if not shared:
        resp = await _create(world, "auto")
        assert resp.status_code == 400 and fault_of(resp)[0] == "badRequest"
        assert "Unable to automatically allocate a network" in fault_of(resp)[2]
    await make_network(world.member, "one", "10.21.0.0/24")
    await make_network(world.member, "two", "10.22.0.0/24")
    resp = await _create(world, "auto")
    assert resp.status_code == 409 and fault_of(resp)[0] == "conflictingRequest", resp.text
    assert "Multiple possible networks found" in fault_of(resp)[2]
    # Nothing was left behind by the refusals: no server, no port.
    servers = (await world.member.get(f"{API}/servers")).json()["servers"]
    assert servers == []


async def test_networks_list_with_fixed_ip_and_port(world: World) -> None:
    net = await make_network(world.member, "lst", "10.23.0.0/24")
    nid = net["network"]["id"]
    user_port = (await world.member.post(f"{NET}/ports", json={"port": {"network_id": nid}})).json()["port"]
    resp = await _create(world, [{"uuid": nid, "fixed_ip": "10.23.0.50"}, {"port": user_port["id"]}])
    assert resp.status_code == 202, resp.text
    server = await wait_status(world.member, resp.json()["server"]["id"], "ACTIVE")
    addrs = [a["addr"] for a in server["addresses"]["lst"]]
    assert addrs == ["10.23.0.50", user_port["fixed_ips"][0]["ip_address"]]
    # The fixed IP is taken now: 400 as Nova's FixedIpAlreadyInUse on create; the user's port is in use: 409.
    taken = await _create(world, [{"uuid": nid, "fixed_ip": "10.23.0.50"}])
    assert taken.status_code == 400 and fault_of(taken)[0] == "badRequest", taken.text
    in_use = await _create(world, [{"port": user_port["id"]}])
    assert in_use.status_code == 409 and fault_of(in_use)[0] == "conflictingRequest", in_use.text
    # Delete: Nova's port goes, the user's stays, detached.
    assert (await world.member.delete(f"{API}/servers/{server['id']}")).status_code == 204
    await wait_gone(world.member, server["id"])
    kept = (await world.member.get(f"{NET}/ports/{user_port['id']}")).json()["port"]
    assert kept["device_id"] == "" and kept["device_owner"] == ""
    assert [p["id"] for p in (await world.member.get(f"{NET}/ports", params={"network_id": nid})).json()["ports"]
            if p["device_owner"].startswith("compute:")] == []


async def test_bad_networks_are_novas_faults(world: World) -> None:
    net = await make_network(world.member, "bad", "10.24.0.0/24")
    nid = net["network"]["id"]
    missing = "0e44cc9c-e052-415d-afbf-469b0d384170"
    other_net = await make_network(world.other, "theirs", "10.25.0.0/24")
    cases = [
        ([{"uuid": missing}], 400, "Network 0e44cc9c-e052-415d-afbf-469b0d384170 could not be found."),
        ([{"uuid": other_net["network"]["id"]}], 400, "could not be found"),
        ([{"port": missing}], 400, "could not be found"),
        ([{"uuid": nid, "fixed_ip": "192.168.1.5"}], 400, ""),
        ([{"uuid": nid, "fixed_ip": "not-an-ip"}], 400, ""),
        ([{"uuid": "not-a-uuid"}], 400, ""),
        ([{"port": missing, "fixed_ip": "10.24.0.9"}], 400, ""),
    ]
    for networks, status, text in cases:
        resp = await _create(world, networks)
        assert resp.status_code == status, (networks, resp.text)
        assert fault_of(resp)[0] == "badRequest" and text in fault_of(resp)[2], (networks, resp.text)
    assert (await world.member.get(f"{API}/servers")).json()["servers"] == []
    assert [p for p in (await world.member.get(f"{NET}/ports", params={"network_id": nid})).json()["ports"]
            if p["device_owner"].startswith("compute:")] == []


async def test_port_quota_is_novas_403(world: World) -> None:
    """Neutron's 409 OverQuota for a port is Nova's 403 PortLimitExceeded, on create and on os-interface."""
    net = await make_network(world.member, "pq", "10.29.0.0/24")
    nid = net["network"]["id"]
    server = await wait_status(world.member, (await _create(world, [{"uuid": nid}])).json()["server"]["id"], "ACTIVE")
    resp = await world.admin.put(f"{NET}/quotas/{world.project_id}", json={"quota": {"port": 0}})
    assert resp.status_code == 200, resp.text
    resp = await _create(world, [{"uuid": nid}])
    assert resp.status_code == 403 and "Maximum number of ports exceeded" in fault_of(resp)[2], resp.text
    resp = await world.member.post(f"{API}/servers/{server['id']}/os-interface", json={"interfaceAttachment": {"net_id": nid}})
    assert resp.status_code == 403 and fault_of(resp)[0] == "forbidden", resp.text


async def test_os_interface_list_attach_detach(world: World) -> None:
    net = await make_network(world.member, "if", "10.26.0.0/24")
    nid = net["network"]["id"]
    server = await wait_status(world.member, (await _create(world, [{"uuid": nid}])).json()["server"]["id"], "ACTIVE")
    base = f"{API}/servers/{server['id']}/os-interface"
    [first] = (await world.member.get(base)).json()["interfaceAttachments"]
    assert set(first) == {"fixed_ips", "mac_addr", "net_id", "port_id", "port_state"}
    assert first["net_id"] == nid and first["fixed_ips"][0]["subnet_id"] == net["subnet"]["id"]
    with_tag = (await world.member.get(base, headers=mv("2.70"))).json()["interfaceAttachments"][0]
    assert with_tag["tag"] is None
    # Attach on a network with a fixed IP, then the user's port.
    resp = await world.member.post(base, json={"interfaceAttachment": {"net_id": nid, "fixed_ips": [{"ip_address": "10.26.0.77"}]}})
    assert resp.status_code == 200, resp.text
    made = resp.json()["interfaceAttachment"]
    assert made["fixed_ips"][0]["ip_address"] == "10.26.0.77"
    user_port = (await world.member.post(f"{NET}/ports", json={"port": {"network_id": nid}})).json()["port"]
    resp = await world.member.post(base, json={"interfaceAttachment": {"port_id": user_port["id"]}})
    assert resp.status_code == 200 and resp.json()["interfaceAttachment"]["port_id"] == user_port["id"], resp.text
    shown = await wait_status(world.member, server["id"], "ACTIVE")
    assert sorted(a["addr"] for a in shown["addresses"]["if"]) == sorted(
        [first["fixed_ips"][0]["ip_address"], "10.26.0.77", user_port["fixed_ips"][0]["ip_address"]])
    one = (await world.member.get(f"{base}/{made['port_id']}")).json()["interfaceAttachment"]
    assert one["port_id"] == made["port_id"] and one["mac_addr"] == made["mac_addr"]
    # Detach both: Nova's port goes, the user's stays (detached).
    assert (await world.member.delete(f"{base}/{made['port_id']}")).status_code == 202
    assert (await world.member.get(f"{NET}/ports/{made['port_id']}")).status_code == 404
    assert (await world.member.delete(f"{base}/{user_port['id']}")).status_code == 202
    assert (await world.member.get(f"{NET}/ports/{user_port['id']}")).json()["port"]["device_id"] == ""
    left = (await world.member.get(base)).json()["interfaceAttachments"]
    assert [i["port_id"] for i in left] == [first["port_id"]]
    shown = (await world.member.get(f"{API}/servers/{server['id']}")).json()["server"]
    assert [a["addr"] for a in shown["addresses"]["if"]] == [first["fixed_ips"][0]["ip_address"]]


async def test_os_interface_bad_input(world: World) -> None:
    net = await make_network(world.member, "ifb", "10.27.0.0/24")
    nid = net["network"]["id"]
    server = await wait_status(world.member, (await _create(world, [{"uuid": nid}])).json()["server"]["id"], "ACTIVE")
    base = f"{API}/servers/{server['id']}/os-interface"
    missing = "0e44cc9c-e052-415d-afbf-469b0d384170"
    other_port = (await world.member.post(f"{NET}/ports", json={"port": {"network_id": nid}})).json()["port"]
    in_use = (await world.member.get(base)).json()["interfaceAttachments"][0]["port_id"]
    cases = [
        ({"interfaceAttachment": {"net_id": nid, "port_id": other_port["id"]}}, 400, "Must not input both"),
        ({"interfaceAttachment": {"fixed_ips": [{"ip_address": "10.27.0.9"}]}}, 400, "Must input network_id"),
        ({"interfaceAttachment": {"net_id": "nope"}}, 400, ""),
        ({"interfaceAttachment": {"bogus": 1}}, 400, ""),
        ({"interfaceAttachment": {"net_id": missing}}, 404, "could not be found"),
        ({"interfaceAttachment": {"port_id": missing}}, 404, "could not be found"),
        ({"interfaceAttachment": {"port_id": in_use}}, 409, ""),
        ({"interfaceAttachment": {"net_id": nid, "fixed_ips": [{"ip_address": "192.168.9.9"}]}}, 400, ""),
        ({"interfaceAttachment": {"net_id": nid, "tag": "t"}}, 400, "tag"),
    ]
    for body, status, text in cases:
        resp = await world.member.post(base, json=body)
        assert resp.status_code == status, (body, resp.text)
        assert text in fault_of(resp)[2], (body, resp.text)
    assert (await world.member.get(f"{base}/{missing}")).status_code == 404
    assert (await world.member.delete(f"{base}/{other_port['id']}")).status_code == 404
    assert (await world.other.get(base)).status_code == 404  # another project's server
    # A server that is not ACTIVE/PAUSED/SHUTOFF: 409.
    assert (await world.action(server["id"], {"suspend": None})).status_code == 202
    await wait_status(world.member, server["id"], "SUSPENDED")
    resp = await world.member.post(base, json={"interfaceAttachment": {"net_id": nid}})
    assert resp.status_code == 409 and fault_of(resp)[0] == "conflictingRequest", resp.text
    assert len((await world.member.get(base)).json()["interfaceAttachments"]) == 1


def _fake_record(world: World, uuid: str) -> dict[str, Any]:
    import json

    [path] = list((world.cloud.conf.state_dir / "fake").glob(f"*/{uuid}.json"))
    record: dict[str, Any] = json.loads(path.read_text())
    return record


async def test_the_driver_gets_the_ports_as_nics(world: World) -> None:
    """The agent plugs the ports (the fake host's network agent binds them) and passes one NicSpec per
    port to the driver, and the config drive's view of them; a hot attach reaches the driver too."""
    net = await make_network(world.member, "nics", "10.28.0.0/24")
    nid = net["network"]["id"]
    server = await wait_status(world.member, (await _create(world, [{"uuid": nid}])).json()["server"]["id"], "ACTIVE")
    [port] = await _ports_of(world, server["id"])
    record = _fake_record(world, server["id"])
    assert [n["port_id"] for n in record["nics"]] == [port["id"]] and record["num_nics"] == 1
    assert record["nics"][0]["mac"] == port["mac_address"]
    assert record["nics"][0]["addresses"] == [port["fixed_ips"][0]["ip_address"] + "/24"]
    resp = await world.member.post(f"{API}/servers/{server['id']}/os-interface", json={"interfaceAttachment": {"net_id": nid}})
    assert resp.status_code == 200, resp.text
    added = resp.json()["interfaceAttachment"]["port_id"]
    assert [n["port_id"] for n in _fake_record(world, server["id"])["nics"]] == [port["id"], added]
    assert (await world.member.delete(f"{API}/servers/{server['id']}/os-interface/{added}")).status_code == 202
    assert [n["port_id"] for n in _fake_record(world, server["id"])["nics"]] == [port["id"]]


async def test_a_detach_the_driver_refuses_is_409(world: World, monkeypatch: Any) -> None:
    """A driver that cannot unplug (QEMU's running microvm server: no PCI bus) makes the detach a
    409 naming why, not a 500; the port stays on the server."""
    from cumulo.compute.drivers.fake import FakeDriver
    from cumulo.errors import DriverError

    net = await make_network(world.member, "nodet", "10.29.0.0/24")
    server = await wait_status(world.member, (await _create(world, [{"uuid": net["network"]["id"]}])).json()["server"]["id"],
                               "ACTIVE")
    [port] = await _ports_of(world, server["id"])

    async def refuse(self: Any, uuid: str, port_id: str) -> None:
        raise DriverError(f"Instance {uuid} is a microvm server, which has no PCI bus, so no NIC hot unplug: "
                          "stop it first, or boot its image with hw_machine_type=q35")

    monkeypatch.setattr(FakeDriver, "detach_nic", refuse)
    resp = await world.member.delete(f"{API}/servers/{server['id']}/os-interface/{port['id']}")
    assert resp.status_code == 409 and "hw_machine_type=q35" in fault_of(resp)[2], resp.text
    assert [p["id"] for p in await _ports_of(world, server["id"])] == [port["id"]]


async def test_server_list_addresses_are_read_from_the_ports_in_one_batch(world: World, monkeypatch: Any) -> None:
    """A floating IP associated straight through Neutron (`floating ip set --port`) shows in `server
    list` as in `server show` without a show first: both read the ports now, and the list reads them
    for the whole page at once (no query per server)."""
    net = await make_network(world.member, "lstfip", "10.31.0.0/24")
    ext = (await world.admin.post(f"{NET}/networks", json={"network": {
        "name": "ext-lst", "router:external": True, "shared": False}})).json()["network"]
    resp = await world.admin.post(f"{NET}/subnets", json={"subnet": {
        "network_id": ext["id"], "cidr": "198.51.100.0/24", "ip_version": 4}})
    assert resp.status_code == 201, resp.text
    router = (await world.member.post(f"{NET}/routers", json={"router": {
        "name": "r", "external_gateway_info": {"network_id": ext["id"]}}})).json()["router"]
    assert (await world.member.put(f"{NET}/routers/{router['id']}/add_router_interface",
                                   json={"subnet_id": net["subnet"]["id"]})).status_code == 200
    ids = []
    for _ in range(3):
        resp = await _create(world, [{"uuid": net["network"]["id"]}])
        assert resp.status_code == 202, resp.text
        ids.append((await wait_status(world.member, resp.json()["server"]["id"], "ACTIVE"))["id"])
    [port] = await _ports_of(world, ids[1])
    fip = (await world.member.post(f"{NET}/floatingips", json={"floatingip": {
        "floating_network_id": ext["id"]}})).json()["floatingip"]
    resp = await world.member.put(f"{NET}/floatingips/{fip['id']}", json={"floatingip": {"port_id": port["id"]}})
    assert resp.status_code == 200, resp.text

    net_svc = world.cloud.services.network
    calls: list[str] = []
    for name in ("addresses_of_devices", "ports_of_device", "get_network", "list_floatingips"):
        real = getattr(net_svc, name)

        def counted(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(net_svc, name, counted)

    async def listed() -> dict[str, Any]:
        servers = (await world.member.get(f"{API}/servers/detail")).json()["servers"]
        return {s["id"]: s["addresses"] for s in servers}

    def floating(addresses: dict[str, Any]) -> list[str]:
        return [a["addr"] for ips in addresses.values() for a in ips if a["OS-EXT-IPS:type"] == "floating"]

    first = await listed()  # no server show came before this list
    assert calls == ["addresses_of_devices"], calls  # one batch for the page, not one lookup per server
    assert floating(first[ids[1]]) == [fip["floating_ip_address"]]
    assert floating(first[ids[0]]) == floating(first[ids[2]]) == []
    for sid in ids:
        shown = (await world.member.get(f"{API}/servers/{sid}")).json()["server"]["addresses"]
        assert shown == first[sid]
    # The `ip` filter reads Nova's cache, which the list brought up to date.
    found = (await world.member.get(f"{API}/servers/detail", params={"ip": fip["floating_ip_address"]})).json()
    assert [s["id"] for s in found["servers"]] == [ids[1]]
    # Moved to another server through Neutron, then disassociated: the list follows at once.
    [port0] = await _ports_of(world, ids[0])
    await world.member.put(f"{NET}/floatingips/{fip['id']}", json={"floatingip": {"port_id": port0["id"]}})
    moved = await listed()
    assert floating(moved[ids[0]]) == [fip["floating_ip_address"]] and floating(moved[ids[1]]) == []
    ips = (await world.member.get(f"{API}/servers/{ids[0]}/ips")).json()["addresses"]["lstfip"]
    assert fip["floating_ip_address"] in [a["addr"] for a in ips]
    await world.member.put(f"{NET}/floatingips/{fip['id']}", json={"floatingip": {"port_id": None}})
    assert all(floating(a) == [] for a in (await listed()).values())


async def test_auto_without_a_network_uses_get_me_a_network(world: World) -> None:
    """`networks: auto` for a project with no network of its own (nor a shared internal one) asks the
    network service's auto-allocated-topology, as Nova does: the servers land on the project's
    auto_allocated_network, made once."""
    from servers_support import make_ctx

    svc = world.cloud.services.network
    admin = make_ctx("admin-project", "admin")
    if not [p for p in await svc.list_subnetpools(admin) if p["is_default"]]:
        await svc.create_subnetpool(admin, {"name": "dflt", "prefixes": ["10.90.0.0/16"], "default_prefixlen": 26,
                                            "shared": True, "is_default": True})
    if not [n for n in await svc.list_networks(admin) if n["router:external"] and n["is_default"]]:
        ext = await svc.create_network(admin, {"name": "ext-auto", "router:external": True, "is_default": True})
        await svc.create_subnet(admin, {"network_id": ext["id"], "cidr": "172.31.90.0/24", "ip_version": 4,
                                        "enable_dhcp": False})
    internal = [n for n in await svc.list_networks(_ctx(world)) if not n["router:external"]]
    if internal:
        pytest.skip("the project sees an internal network already")
    ids = []
    for _ in range(2):
        resp = await _create(world, "auto")
        assert resp.status_code == 202, resp.text
        server = await wait_status(world.member, resp.json()["server"]["id"], "ACTIVE")
        [port] = await _ports_of(world, server["id"])
        ids.append(port["network_id"])
        assert list(server["addresses"]) == ["auto_allocated_network"]
    assert ids[0] == ids[1]
    topo = (await world.member.get(f"{NET}/auto-allocated-topology/{world.project_id}")).json()
    assert topo["auto_allocated_topology"]["id"] == ids[0]


async def test_a_server_on_a_flat_network_asks_the_scheduler_for_its_physnet(world: World) -> None:
    """Issue 14: the physnets of a create's flat networks go into its request spec (Nova's
    network_metadata), which the conductor hands the scheduler (PhysicalNetworkFilter) and every
    later move reuses; a tenant (VXLAN) network asks for none."""
    import sqlalchemy as sa

    from cumulo.compute.models import instances

    flat = await make_network(world.admin, "flat-x", "10.31.0.0/24", shared=True,
                              **{"provider:network_type": "flat", "provider:physical_network": "physx"})
    tenant = await make_network(world.member, "tenant-x", "10.32.0.0/24")
    specs = {}
    for net in (flat, tenant):
        resp = await _create(world, [{"uuid": net["network"]["id"]}])
        assert resp.status_code == 202, resp.text
        uuid = resp.json()["server"]["id"]
        await wait_status(world.member, uuid, "ACTIVE")  # the fake host carries every physnet ("*")
        async with world.cloud.services.db.read() as conn:
            specs[net["network"]["name"]] = (await conn.execute(
                sa.select(instances.c.request_spec).where(instances.c.uuid == uuid))).scalar_one()
    assert specs["flat-x"]["network_metadata"] == {"physnets": ["physx"]}
    assert "network_metadata" not in specs["tenant-x"]
