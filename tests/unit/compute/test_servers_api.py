"""Servers API: create, show, update, delete, list filters, pagination, sorting, isolation, bad input
and quotas, against the in-process cloud (fake driver)."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx
import pytest
from servers_support import (  # noqa: F401  (settings is a fixture override)
    API,
    NANO,
    TINY,
    World,
    fault_of,
    make_ctx,
    make_network,
    make_world,
    mv,
    settings,
    upload_image,
    wait_gone,
    wait_status,
)


@pytest.fixture
async def world(cloud: Any, as_ctx: Any) -> World:
    return await make_world(cloud, as_ctx)


async def test_create_returns_nova_body_and_reaches_active(world: World) -> None:
    resp = await world.member.post(
        f"{API}/servers", json={"server": {"name": "web-1", "imageRef": world.image_id, "flavorRef": NANO}}
    )
    assert resp.status_code == 202, resp.text
    server = resp.json()["server"]
    assert set(server) == {"id", "links", "OS-DCF:diskConfig", "security_groups", "adminPass"}
    assert server["security_groups"] == [{"name": "default"}]
    assert server["OS-DCF:diskConfig"] == "MANUAL"
    assert len(server["adminPass"]) >= 8
    assert resp.headers["location"] == f"http://cumulo.test{API}/servers/{server['id']}"
    assert [link["rel"] for link in server["links"]] == ["self", "bookmark"]
    assert server["links"][1]["href"] == f"http://cumulo.test/compute/servers/{server['id']}"

    shown = await wait_status(world.member, server["id"], "ACTIVE")
    assert shown["name"] == "web-1"
    assert shown["tenant_id"] == world.project_id
    assert shown["image"]["id"] == world.image_id
    assert shown["flavor"]["id"] == NANO
    assert shown["OS-EXT-STS:vm_state"] == "active" and shown["OS-EXT-STS:power_state"] == 1
    assert shown["OS-SRV-USG:launched_at"] and shown["hostId"]
    assert shown["progress"] == 0
    assert shown["OS-EXT-AZ:availability_zone"] == "nova"
    assert not any(k.startswith("OS-EXT-SRV-ATTR") for k in shown)  # admin-only
    admin_view = (await world.admin.get(f"{API}/servers/{server['id']}", headers=mv("2.79"))).json()["server"]
    assert admin_view["OS-EXT-SRV-ATTR:host"] and admin_view["host_status"] == "UP"
    assert admin_view["OS-EXT-SRV-ATTR:instance_name"].startswith("instance-")
    assert admin_view["flavor"]["original_name"] == "m1.nano"


async def test_create_with_every_option(world: World) -> None:
    kp = await world.member.post(f"{API}/os-keypairs", json={"keypair": {"name": "k1"}})
    assert kp.status_code == 200, kp.text
    user_data = base64.b64encode(b"#!/bin/sh\necho hi\n").decode()
    net = (await make_network(world.member, "full-net"))["network"]
    body = {
        "server": {
            "name": "full",
            "flavorRef": f"http://cumulo.test/compute/flavors/{NANO}",
            "imageRef": world.image_id,
            "key_name": "k1",
            "metadata": {"role": "db", "tier": "2"},
            "user_data": user_data,
            "availability_zone": "nova",
            "networks": [{"uuid": net["id"], "tag": "mgmt"}],
            "security_groups": [{"name": "default"}, {"name": "default"}],  # the one group a project has
            "accessIPv4": "192.0.2.5",
            "description": "a database",
            "tags": ["alpha", "beta"],
            "config_drive": True,
            "OS-DCF:diskConfig": "AUTO",
            "block_device_mapping_v2": [
                {"uuid": world.image_id, "boot_index": 0, "source_type": "image", "destination_type": "local",
                 "delete_on_termination": True}
            ],
        },
        "OS-SCH-HNT:scheduler_hints": {"custom": "x"},
    }
    resp = await world.member.post(f"{API}/servers", json=body, headers=mv("2.79"))
    assert resp.status_code == 202, resp.text
    created = resp.json()["server"]
    assert created["security_groups"] == [{"name": "default"}, {"name": "default"}]
    assert created["OS-DCF:diskConfig"] == "AUTO"
    await wait_status(world.member, created["id"], "ACTIVE")
    s = (await world.admin.get(f"{API}/servers/{created['id']}", headers=mv("2.79"))).json()["server"]
    assert s["key_name"] == "k1" and s["metadata"] == {"role": "db", "tier": "2"}
    assert s["OS-EXT-SRV-ATTR:user_data"] == user_data
    assert s["description"] == "a database" and sorted(s["tags"]) == ["alpha", "beta"]
    assert s["config_drive"] == "True" and s["accessIPv4"] == "192.0.2.5"
    assert s["security_groups"] == [{"name": "default"}]
    assert s["OS-DCF:diskConfig"] == "AUTO"
    # "auto" (the project's one network), "none", a port of the project and no NIC at all are accepted too.
    port = (await world.member.post("/networking/v2.0/ports", json={"port": {"network_id": net["id"]}})).json()["port"]
    for networks in ("auto", "none", [{"port": port["id"]}], []):
        r = await world.member.post(
            f"{API}/servers",
            json={"server": {"name": "n", "imageRef": world.image_id, "flavorRef": NANO, "networks": networks}},
            headers=mv("2.37") if networks != [] else {},
        )
        assert r.status_code == 202, (networks, r.text)


async def test_description_defaults_to_name_before_2_19(world: World) -> None:
    server = await world.create("named", version="2.1")
    shown = (await world.member.get(f"{API}/servers/{server['id']}", headers=mv("2.19"))).json()["server"]
    assert shown["description"] == "named"
    server = await world.create("other", version="2.19")
    shown = (await world.member.get(f"{API}/servers/{server['id']}", headers=mv("2.19"))).json()["server"]
    assert shown["description"] is None


async def test_multiple_create_and_reservation_id(world: World) -> None:
    resp = await world.member.post(
        f"{API}/servers",
        json={"server": {"name": "multi", "imageRef": world.image_id, "flavorRef": NANO, "min_count": 2,
                         "max_count": "3", "return_reservation_id": True}},
    )
    assert resp.status_code == 202, resp.text
    assert set(resp.json()) == {"reservation_id"}
    resv = resp.json()["reservation_id"]
    assert resv.startswith("r-")
    listed = (await world.member.get(f"{API}/servers", params={"reservation_id": resv})).json()["servers"]
    assert sorted(s["name"] for s in listed) == ["multi-1", "multi-2", "multi-3"]
    for s in listed:
        await wait_status(world.member, s["id"], "ACTIVE")


BAD_BODIES: list[tuple[str, Any, str]] = [
    ("unknown field", {"server": {"name": "x", "imageRef": "IMG", "flavorRef": NANO, "bogus": 1}},
     "Additional properties are not allowed ('bogus' was unexpected)"),
    ("unknown top-level", {"server": {"name": "x", "imageRef": "IMG", "flavorRef": NANO}, "extra": {}},
     "Additional properties are not allowed"),
    ("no server", {"name": "x"}, "'server' is a required property"),
    ("no name", {"server": {"imageRef": "IMG", "flavorRef": NANO}}, "'name' is a required property"),
    ("name too long", {"server": {"name": "x" * 256, "imageRef": "IMG", "flavorRef": NANO}}, "is too long"),
    ("name with leading space", {"server": {"name": " x", "imageRef": "IMG", "flavorRef": NANO}},
     "An invalid 'name' value was provided"),
    ("name wrong type", {"server": {"name": 5, "imageRef": "IMG", "flavorRef": NANO}}, "is not of type 'string'"),
    ("bad image uuid", {"server": {"name": "x", "imageRef": "not-a-uuid", "flavorRef": NANO}},
     "Invalid input for field/attribute imageRef"),
    ("min_count zero", {"server": {"name": "x", "imageRef": "IMG", "flavorRef": NANO, "min_count": 0}},
     "less than the minimum of 1"),
    ("min_count negative", {"server": {"name": "x", "imageRef": "IMG", "flavorRef": NANO, "min_count": -1}},
     "less than the minimum of 1"),
    ("min over max", {"server": {"name": "x", "imageRef": "IMG", "flavorRef": NANO, "min_count": 3, "max_count": 2}},
     "min_count must be <= max_count"),
    ("metadata value type", {"server": {"name": "x", "imageRef": "IMG", "flavorRef": NANO, "metadata": {"a": 1}}},
     "is not of type 'string'"),
    ("user_data not base64", {"server": {"name": "x", "imageRef": "IMG", "flavorRef": NANO, "user_data": "%%%"}},
     "is not a 'base64'"),
    ("unknown flavor", {"server": {"name": "x", "imageRef": "IMG", "flavorRef": "nope"}},
     "Flavor nope could not be found."),
    ("unknown image", {"server": {"name": "x", "imageRef": "0e44cc9c-e052-415d-afbf-469b0d384170", "flavorRef": NANO}},
     "Can not find requested image"),
    ("unknown keypair", {"server": {"name": "x", "imageRef": "IMG", "flavorRef": NANO, "key_name": "missing"}},
     "Invalid key_name provided."),
    ("unknown zone", {"server": {"name": "x", "imageRef": "IMG", "flavorRef": NANO, "availability_zone": "moon"}},
     "The requested availability zone is not available"),
    ("bad network uuid", {"server": {"name": "x", "imageRef": "IMG", "flavorRef": NANO, "networks": [{"uuid": "abc"}]}},
     "Bad networks format: network uuid is not in proper format (abc)"),
    ("volume boot", {"server": {"name": "x", "imageRef": "", "flavorRef": NANO, "block_device_mapping_v2": [
        {"uuid": "0e44cc9c-e052-415d-afbf-469b0d384170", "source_type": "volume", "destination_type": "volume",
         "boot_index": 0}]}}, "Block Device Mapping is Invalid"),
    ("no image at all", {"server": {"name": "x", "flavorRef": NANO}}, "Missing imageRef attribute"),
    ("accessIPv4", {"server": {"name": "x", "imageRef": "IMG", "flavorRef": NANO, "accessIPv4": "1.2.3"}},
     "is not a 'ipv4'"),
    ("not an object", ["server"], "is not of type 'object'"),
]


@pytest.mark.parametrize("case,body,message", BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
async def test_bad_create_bodies_are_400_in_nova_format(world: World, case: str, body: Any, message: str) -> None:
    text = __import__("json").dumps(body).replace("IMG", world.image_id)
    resp = await world.member.post(f"{API}/servers", content=text, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400, resp.text
    name, code, msg = fault_of(resp)
    assert (name, code) == ("badRequest", 400)
    assert message in msg, msg


async def test_bad_json_and_version_specific_rules(world: World) -> None:
    for raw in (b"{not json", b"", b"[1,"):
        resp = await world.member.post(f"{API}/servers", content=raw, headers={"Content-Type": "application/json"})
        assert resp.status_code == 400 and fault_of(resp)[0] == "badRequest"
    base = {"name": "x", "imageRef": world.image_id, "flavorRef": NANO}
    # networks is required from 2.37, and "auto" is only a valid value from then on.
    resp = await world.member.post(f"{API}/servers", json={"server": base}, headers=mv("2.37"))
    assert resp.status_code == 400 and "'networks' is a required property" in resp.text
    resp = await world.member.post(f"{API}/servers", json={"server": {**base, "networks": "auto"}}, headers=mv("2.36"))
    assert resp.status_code == 400
    # description and tags appear in 2.19 and 2.52.
    resp = await world.member.post(f"{API}/servers", json={"server": {**base, "description": "d"}}, headers=mv("2.18"))
    assert resp.status_code == 400 and "'description' was unexpected" in resp.text
    resp = await world.member.post(f"{API}/servers", json={"server": {**base, "tags": ["a"], "networks": "none"}}, headers=mv("2.51"))
    assert resp.status_code == 400
    too_many = [f"t{i}" for i in range(51)]
    resp = await world.member.post(f"{API}/servers", json={"server": {**base, "tags": too_many, "networks": "none"}}, headers=mv("2.52"))
    assert resp.status_code == 400 and "is too long" in resp.text


async def test_image_checks(world: World, cloud: Any) -> None:
    queued = await world.member.post("/image/v2/images", json={"name": "q", "disk_format": "raw", "container_format": "bare"})
    qid = queued.json()["id"]
    resp = await world.member.post(f"{API}/servers", json={"server": {"name": "x", "imageRef": qid, "flavorRef": NANO}})
    assert resp.status_code == 400 and f"Image {qid} is not active." in resp.text
    big = await upload_image(world.member, "needs-ram", min_ram=4096)
    resp = await world.member.post(f"{API}/servers", json={"server": {"name": "x", "imageRef": big, "flavorRef": NANO}})
    assert resp.status_code == 400 and "Flavor's memory is too small for requested image." in resp.text
    disk = await upload_image(world.member, "needs-disk", min_disk=10)
    resp = await world.member.post(f"{API}/servers", json={"server": {"name": "x", "imageRef": disk, "flavorRef": TINY}})
    assert resp.status_code == 400 and "Flavor's disk is smaller than the minimum size" in resp.text


async def test_quota_wording_and_max_count_reduced(world: World) -> None:
    resp = await world.member.post(
        f"{API}/servers",
        json={"server": {"name": "many", "imageRef": world.image_id, "flavorRef": NANO, "min_count": 1, "max_count": 15}},
    )
    assert resp.status_code == 202, resp.text
    listed = (await world.member.get(f"{API}/servers")).json()["servers"]
    assert len(listed) == 10  # max_count reduced to what the quota allows, as Nova does
    resp = await world.member.post(f"{API}/servers", json={"server": {"name": "x", "imageRef": world.image_id, "flavorRef": NANO}})
    assert resp.status_code == 403, resp.text
    assert fault_of(resp) == (
        "forbidden", 403, "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances"
    )


async def test_parallel_creates_respect_quota(world: World) -> None:
    body = {"server": {"name": "race", "imageRef": world.image_id, "flavorRef": NANO}}
    results = await asyncio.gather(*(world.member.post(f"{API}/servers", json=body) for _ in range(20)))
    codes = sorted(r.status_code for r in results)
    assert codes.count(202) == 10 and codes.count(403) == 10, codes
    listed = (await world.member.get(f"{API}/servers")).json()["servers"]
    assert len(listed) == 10


async def test_show_update_delete_and_error_fault(world: World) -> None:
    server = await world.active("before")
    resp = await world.member.put(f"{API}/servers/{server['id']}", json={"server": {"name": "after"}})
    assert resp.status_code == 200, resp.text
    updated = resp.json()["server"]
    assert updated["name"] == "after"
    assert "OS-EXT-STS:vm_state" not in updated  # the compact PUT body before 2.75
    resp = await world.member.put(
        f"{API}/servers/{server['id']}", json={"server": {"description": "desc", "accessIPv6": "2001:db8::1"}},
        headers=mv("2.75"),
    )
    full = resp.json()["server"]
    assert resp.status_code == 200 and full["description"] == "desc" and full["accessIPv6"] == "2001:db8::1"
    assert full["OS-EXT-STS:vm_state"] == "active" and "server_groups" in full
    # Nova stores accessIPv6 compressed: Tempest sends the long form and expects this one back.
    resp = await world.member.put(f"{API}/servers/{server['id']}",
                                  json={"server": {"accessIPv6": "0000:0000:0000:0000:0000:babe:220.12.22.2"}})
    assert resp.status_code == 200 and resp.json()["server"]["accessIPv6"] == "::babe:dc0c:1602", resp.text
    resp = await world.member.put(f"{API}/servers/{server['id']}", json={"server": {"name": "x" * 256}})
    assert resp.status_code == 400
    resp = await world.member.put(f"{API}/servers/{server['id']}", json={"server": {"hostname": "h"}})
    assert resp.status_code == 400

    assert (await world.member.delete(f"{API}/servers/{server['id']}")).status_code == 204
    await wait_gone(world.member, server["id"])
    assert (await world.member.delete(f"{API}/servers/{server['id']}")).status_code == 404

    # A server no host can take goes to ERROR with a fault naming the filters; details are admin-only.
    huge = await world.admin.post(f"{API}/flavors", json={"flavor": {"name": "huge-srv", "ram": 64, "vcpus": 1, "disk": 100_000}})
    assert huge.status_code == 200, huge.text
    resp = await world.member.post(
        f"{API}/servers", json={"server": {"name": "big", "imageRef": world.image_id, "flavorRef": huge.json()["flavor"]["id"]}}
    )
    assert resp.status_code == 202
    sid = resp.json()["server"]["id"]
    err = await wait_status(world.member, sid, "ERROR")
    assert err["fault"]["code"] == 500 and "No valid host" in err["fault"]["message"]
    assert "details" not in err["fault"] and "progress" not in err
    admin_err = (await world.admin.get(f"{API}/servers/{sid}")).json()["server"]
    assert "details" in admin_err["fault"]
    # Never placed: deleted at once.
    assert (await world.member.delete(f"{API}/servers/{sid}")).status_code == 204
    assert (await world.member.get(f"{API}/servers/{sid}")).status_code == 404


async def test_bad_server_ids_are_404(world: World) -> None:
    for bad in ("not-a-uuid", "0e44cc9c-e052-415d-afbf-469b0d384170", "%20"):
        resp = await world.member.get(f"{API}/servers/{bad}")
        assert resp.status_code == 404 and fault_of(resp)[0] == "itemNotFound"


async def _names(client: httpx.AsyncClient, path: str = "servers", headers: dict[str, str] | None = None, **params: Any) -> list[str]:
    resp = await client.get(f"{API}/{path}", params=params, headers=headers or {})
    assert resp.status_code == 200, resp.text
    return [s["name"] for s in resp.json()["servers"]]


async def test_list_filters(world: World) -> None:
    a = await world.active("web-a", tags=["blue", "red"], networks="none", version="2.52")
    b = await world.active("web-b", tags=["blue"], networks="none", version="2.52")
    c = await world.active("db-c")
    assert (await world.action(c["id"], {"os-stop": None})).status_code == 202
    await wait_status(world.member, c["id"], "SHUTOFF")

    assert sorted(await _names(world.member, name="^web")) == ["web-a", "web-b"]
    assert await _names(world.member, name="c$") == ["db-c"]
    assert await _names(world.member, "servers/detail", status="SHUTOFF") == ["db-c"]
    assert sorted(await _names(world.member, status="ACTIVE")) == ["web-a", "web-b"]
    assert sorted(await _names(world.member, image=world.image_id)) == ["db-c", "web-a", "web-b"]
    assert sorted(await _names(world.member, flavor=NANO)) == ["db-c", "web-a", "web-b"]
    assert await _names(world.member, flavor=TINY) == []
    v226 = mv("2.26")
    assert sorted(await _names(world.member, headers=v226, tags="blue")) == ["web-a", "web-b"]
    assert await _names(world.member, headers=v226, tags="blue,red") == ["web-a"]
    assert sorted(await _names(world.member, headers=v226, **{"tags-any": "red,blue"})) == ["web-a", "web-b"]
    assert sorted(await _names(world.member, headers=v226, **{"not-tags": "blue,red"})) == ["db-c", "web-b"]
    assert await _names(world.member, headers=v226, **{"not-tags-any": "blue"}) == ["db-c"]
    # Before 2.26 the tag filters are unknown, and unknown filters are ignored for non-admins.
    assert len(await _names(world.member, headers=mv("2.25"), tags="blue")) == 3
    assert len(await _names(world.member, host="nowhere", vm_state="error")) == 3
    # ... and rejected from 2.75.
    resp = await world.member.get(f"{API}/servers", params={"bogus": "1"}, headers=mv("2.75"))
    assert resp.status_code == 400 and "bogus" in resp.text
    resp = await world.member.get(f"{API}/servers", params={"status": "NOPE"}, headers=mv("2.38"))
    assert resp.status_code == 400 and "Invalid status value" in resp.text
    assert await _names(world.member, status="NOPE") == []

    assert (await world.action(b["id"], {"lock": None})).status_code == 202
    assert await _names(world.member, headers=mv("2.73"), locked="true") == ["web-b"]
    resp = await world.member.get(f"{API}/servers", params={"locked": "maybe"}, headers=mv("2.73"))
    assert resp.status_code == 400

    # changes-since includes deleted servers, shown as DELETED.
    since = (await world.member.get(f"{API}/servers/{a['id']}")).json()["server"]["created"]
    assert (await world.member.delete(f"{API}/servers/{a['id']}")).status_code == 204
    await wait_gone(world.member, a["id"])
    listed = (await world.member.get(f"{API}/servers/detail", params={"changes-since": since})).json()["servers"]
    by_name = {s["name"]: s["status"] for s in listed}
    assert by_name["web-a"] == "DELETED"
    assert "web-a" not in await _names(world.member)
    resp = await world.member.get(f"{API}/servers", params={"changes-since": "yesterday"})
    assert resp.status_code == 400
    # Non-admins may not list deleted servers by status.
    resp = await world.member.get(f"{API}/servers", params={"status": "DELETED"})
    assert resp.status_code == 403


async def test_all_tenants_and_admin_filters(world: World) -> None:
    mine = await world.create("mine")
    theirs = await (world.other.post(f"{API}/servers", json={"server": {"name": "theirs", "imageRef": world.image_id, "flavorRef": NANO}}))
    # B cannot use A's private image.
    assert theirs.status_code == 400
    other_image = await upload_image(world.other)
    theirs = await world.other.post(f"{API}/servers", json={"server": {"name": "theirs", "imageRef": other_image, "flavorRef": NANO}})
    assert theirs.status_code == 202
    tid = theirs.json()["server"]["id"]

    assert await _names(world.member) == ["mine"]
    resp = await world.member.get(f"{API}/servers", params={"all_tenants": "1"})
    assert resp.status_code == 403
    assert await _names(world.member, all_tenants="0") == ["mine"]
    assert await _names(world.admin) == []  # an admin without all_tenants sees its own project
    both = await _names(world.admin, all_tenants="1")
    assert "mine" in both and "theirs" in both
    assert await _names(world.admin, all_tenants="true", project_id=world.project_id) == ["mine"]
    await wait_status(world.member, mine["id"], "ACTIVE")
    host = (await world.admin.get(f"{API}/servers/{mine['id']}")).json()["server"]["OS-EXT-SRV-ATTR:host"]
    assert "mine" in await _names(world.admin, all_tenants="1", host=host)
    assert await _names(world.admin, all_tenants="1", host="no-such-host") == []
    resp = await world.admin.get(f"{API}/servers", params={"all_tenants": "1", "metadata": "x"})
    assert resp.status_code == 400 and "Invalid filter field: metadata." in resp.text
    resp = await world.member.get(f"{API}/servers", params={"sort_key": "host"})
    assert resp.status_code == 403
    await wait_status(world.other, tid, "ACTIVE")


async def test_pagination_links_and_sorting(world: World) -> None:
    names = [f"p{i}" for i in range(7)]
    for n in names:
        await world.create(n)
    seen: list[str] = []
    url: str | None = f"{API}/servers?limit=3&sort_key=display_name&sort_dir=asc"
    pages = 0
    while url:
        resp = await world.member.get(url)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        seen += [s["name"] for s in body["servers"]]
        links = body.get("servers_links")
        pages += 1
        if links:
            assert links[0]["rel"] == "next" and "marker=" in links[0]["href"] and "limit=3" in links[0]["href"]
            url = links[0]["href"].replace("http://cumulo.test", "")
        else:
            url = None
    assert seen == names and pages == 3
    assert await _names(world.member, sort_key="display_name", sort_dir="desc") == names[::-1]
    # Default order: newest first.
    assert await _names(world.member) == names[::-1]
    detail = (await world.member.get(f"{API}/servers/detail", params={"limit": 2})).json()
    assert len(detail["servers"]) == 2 and "servers/detail?" in detail["servers_links"][0]["href"]
    assert (await world.member.get(f"{API}/servers", params={"limit": 0})).json() == {"servers": []}
    for params, message in (
        ({"marker": "0e44cc9c-e052-415d-afbf-469b0d384170"}, "marker [0e44cc9c-e052-415d-afbf-469b0d384170] not found"),
        ({"limit": "-1"}, "Invalid input for query parameters limit"),
        ({"limit": "abc"}, "Invalid input for query parameters limit"),
        ({"sort_key": "bogus"}, "Invalid input for query parameters sort_key"),
        ({"sort_dir": "sideways"}, "Unknown sort direction, must be 'desc' or 'asc'"),
    ):
        resp = await world.member.get(f"{API}/servers", params=params)
        assert resp.status_code == 400, (params, resp.text)
        assert message in fault_of(resp)[2]
    # Ignored sort keys are dropped, not rejected (before 2.75).
    assert len(await _names(world.member, sort_key="vcpus")) == 7
    # Two sort keys: the second breaks ties of the first.
    assert await _names(world.member, sort_key=["vm_state", "display_name"], sort_dir=["asc", "asc"]) == sorted(names)


async def test_isolation_and_reader(world: World) -> None:
    server = await world.active("private")
    sid = server["id"]
    for method, path, body in (
        ("GET", f"/servers/{sid}", None),
        ("PUT", f"/servers/{sid}", {"server": {"name": "x"}}),
        ("DELETE", f"/servers/{sid}", None),
        ("POST", f"/servers/{sid}/action", {"os-stop": None}),
        ("GET", f"/servers/{sid}/metadata", None),
        ("GET", f"/servers/{sid}/os-instance-actions", None),
    ):
        resp = await world.other.request(method, API + path, json=body)
        assert resp.status_code == 404, (method, path, resp.text)
    assert await _names(world.other) == []
    # A reader sees but cannot change.
    assert (await world.reader.get(f"{API}/servers/{sid}")).status_code == 200
    assert await _names(world.reader) == ["private"]
    for method, path, body in (
        ("POST", "/servers", {"server": {"name": "r", "imageRef": world.image_id, "flavorRef": NANO}}),
        ("PUT", f"/servers/{sid}", {"server": {"name": "x"}}),
        ("DELETE", f"/servers/{sid}", None),
        ("POST", f"/servers/{sid}/action", {"os-stop": None}),
        ("POST", f"/servers/{sid}/metadata", {"metadata": {"a": "b"}}),
    ):
        resp = await world.reader.request(method, API + path, json=body)
        assert resp.status_code == 403, (method, path, resp.text)
        assert fault_of(resp)[0] == "forbidden"


async def test_versions_documents(world: World) -> None:
    root = (await world.member.get("/compute/")).json()
    assert [v["id"] for v in root["versions"]] == ["v2.0", "v2.1"]
    current = root["versions"][1]
    assert current["status"] == "CURRENT" and current["version"] == "2.79" and current["min_version"] == "2.1"
    assert current["links"] == [{"rel": "self", "href": "http://cumulo.test/compute/v2.1/"}]
    for path in ("/compute/v2.1", "/compute/v2.1/"):
        doc = (await world.member.get(path)).json()["version"]
        assert doc["id"] == "v2.1" and doc["links"][0] == {"rel": "self", "href": "http://cumulo.test/compute/v2.1/"}
        assert doc["media-types"][0]["type"] == "application/vnd.openstack.compute+json;version=2.1"
    # Every advertised link is followable and describes itself with the same self link (Tempest's
    # test_get_version_details), the legacy v2.0 one included.
    for listed in root["versions"]:
        href = listed["links"][0]["href"]
        resp = await world.member.get(href.replace("http://cumulo.test", ""))
        assert resp.status_code == 200, (href, resp.text)
        assert [x for x in resp.json()["version"]["links"] if x["rel"] == "self"] == listed["links"]


async def test_legacy_v2_endpoint_serves_the_api_at_2_1(world: World) -> None:
    server = await world.create("legacy")
    for prefix in ("/compute/v2", f"/compute/v2/{world.project_id}"):
        resp = await world.member.get(f"{prefix}/servers/{server['id']}", headers=mv("2.79"))
        assert resp.status_code == 200, resp.text
        assert "openstack-api-version" not in resp.headers  # no microversions on v2
        assert "OS-EXT-STS:vm_state" in resp.json()["server"] and "tags" not in resp.json()["server"]
    assert (await world.member.get("/compute/v2/servers/nope")).status_code == 404


async def test_unauthenticated_requests_are_401(anon_client: httpx.AsyncClient) -> None:
    resp = await anon_client.get(f"{API}/servers")
    assert resp.status_code == 401 and fault_of(resp)[0] == "unauthorized"
    assert (await anon_client.get("/compute/")).status_code == 200  # version discovery is public


async def test_member_of_project_sees_servers_of_other_users(world: World) -> None:
    server = await world.create("shared")
    colleague = world.as_ctx(make_ctx(world.project_id, "member"))
    assert (await colleague.get(f"{API}/servers/{server['id']}")).status_code == 200


async def test_host_targeting_is_admin_only(world: World) -> None:
    base = {"name": "t", "imageRef": world.image_id, "flavorRef": NANO}
    new = {**base, "networks": "none"}
    resp = await world.member.post(f"{API}/servers", json={"server": {**base, "availability_zone": "nova:fake-host-2"}})
    assert resp.status_code == 403
    resp = await world.member.post(f"{API}/servers", json={"server": {**new, "host": "fake-host-2"}}, headers=mv("2.74"))
    assert resp.status_code == 403
    resp = await world.admin.post(f"{API}/servers", json={"server": {**new, "host": "nowhere"}}, headers=mv("2.74"))
    assert resp.status_code == 400 and "Compute host nowhere could not be found." in resp.text
    resp = await world.admin.post(f"{API}/servers", json={"server": {**new, "host": "fake-host-1", "availability_zone": "nova:fake-host-2"}}, headers=mv("2.74"))
    assert resp.status_code == 400 and "mutually exclusive" in resp.text
    for body, headers, host in (
        ({**base, "availability_zone": "nova:fake-host-2"}, {}, "fake-host-2"),
        ({**new, "host": "fake-host-1"}, mv("2.74"), "fake-host-1"),
    ):
        resp = await world.admin.post(f"{API}/servers", json={"server": body}, headers=headers)
        assert resp.status_code == 202, resp.text
        shown = await wait_status(world.admin, resp.json()["server"]["id"], "ACTIVE")
        assert shown["OS-EXT-SRV-ATTR:host"] == host


async def test_extensions_list_and_show(world: World, anon_client: httpx.AsyncClient) -> None:
    resp = await world.member.get(f"{API}/extensions")
    assert resp.status_code == 200, resp.text
    listed = resp.json()["extensions"]
    assert "Hosts" in [e["name"] for e in listed]
    assert all(set(e) == {"alias", "description", "links", "name", "namespace", "updated"} for e in listed)
    one = (await world.member.get(f"{API}/extensions/os-consoles")).json()["extension"]
    assert one["alias"] == "os-consoles" and one in listed
    missing = await world.member.get(f"{API}/extensions/os-nope")
    assert missing.status_code == 404 and fault_of(missing)[0] == "itemNotFound"
    assert (await anon_client.get(f"{API}/extensions")).status_code == 401
