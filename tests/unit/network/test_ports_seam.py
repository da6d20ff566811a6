"""The ports seam Nova's side will call: allocate a server's ports, find them, bind them, release them."""

from __future__ import annotations

import pytest
from _asgi_ctx import ctx_for

from cumulo import errors
from cumulo.network.faults import type_of
from cumulo.network.service import NetworkService

ALICE = ctx_for("project-a")
BOB = ctx_for("project-b")


async def test_allocate_find_bind_release(svc: NetworkService) -> None:
    net = await svc.create_network(ALICE, {"name": "n"})
    await svc.create_subnet(ALICE, {"network_id": net["id"], "cidr": "10.0.0.0/24", "ip_version": 4})
    given = await svc.create_port(ALICE, {"network_id": net["id"], "name": "given"})
    made = await svc.allocate_ports_for_server(
        ALICE, "srv-1", [{"uuid": net["id"], "fixed_ip": "10.0.0.40"}, {"port": given["id"]}])
    assert [p["fixed_ips"][0]["ip_address"] for p in made] == ["10.0.0.40", given["fixed_ips"][0]["ip_address"]]
    assert {p["device_id"] for p in made} == {"srv-1"}
    assert made[0]["device_owner"] == "compute:nova"
    assert [p["id"] for p in await svc.ports_of_device("srv-1")] == [made[0]["id"], given["id"]] or \
        {p["id"] for p in await svc.ports_of_device("srv-1")} == {made[0]["id"], given["id"]}
    bound = await svc.bind_port(made[0]["id"], "host-1")
    assert bound["binding:host_id"] == "host-1"
    assert sorted(ip for _n, _m, ip in await svc.addresses_of_device("srv-1")) == sorted(
        ["10.0.0.40", given["fixed_ips"][0]["ip_address"]])
    # a port attached elsewhere cannot be taken; a failed request leaves nothing behind
    with pytest.raises(errors.Conflict) as exc:
        await svc.allocate_ports_for_server(ALICE, "srv-2", [{"uuid": net["id"]}, {"port": given["id"]}])
    assert type_of(exc.value, 409) == "PortInUse"
    assert await svc.ports_of_device("srv-2") == []
    # another project cannot allocate on alice's network
    with pytest.raises(errors.NotFound):
        await svc.allocate_ports_for_server(BOB, "srv-3", [{"uuid": net["id"]}])
    # the caller names the ports it was given (Nova keeps them in the instance's requested networks)
    await svc.release_ports_of_device("srv-1", keep=[given["id"]])
    assert await svc.ports_of_device("srv-1") == []
    left = await svc.list_ports(ALICE)
    assert [p["id"] for p in left] == [given["id"]] and left[0]["device_id"] == ""


async def test_a_lost_race_on_a_unique_address_is_retried_then_409() -> None:
    import sqlalchemy as sa

    from cumulo.network.base import NetworkBase

    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise sa.exc.IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))
        return "ok"

    assert await NetworkBase.retry_unique(flaky) == "ok" and calls == 3

    async def always() -> str:
        raise sa.exc.IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))

    with pytest.raises(errors.Conflict):
        await NetworkBase.retry_unique(always)


async def test_an_external_network_with_gateway_ports_stays_external(svc: NetworkService) -> None:
    admin = ctx_for("project-admin", "admin")
    ext = await svc.create_network(admin, {"name": "public", "router:external": True})
    await svc.create_subnet(admin, {"network_id": ext["id"], "cidr": "172.24.4.0/24", "ip_version": 4})
    await svc.create_port(admin, {"network_id": ext["id"], "device_owner": "network:router_gateway"})
    with pytest.raises(errors.Conflict) as exc:
        await svc.update_network(admin, ext["id"], {"router:external": False})
    assert type_of(exc.value, 409) == "ExternalNetworkInUse"
    assert (await svc.update_network(admin, ext["id"], {"name": "renamed"}))["router:external"] is True
