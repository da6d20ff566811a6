"""Server sub-resources: metadata (with its quota), tags, os-instance-actions with events,
diagnostics and ips."""

from __future__ import annotations

from typing import Any

import pytest
from servers_support import (  # noqa: F401  (settings is a fixture override)
    API,
    World,
    fault_of,
    make_world,
    mv,
    settings,
    wait_gone,
    wait_status,
)


@pytest.fixture
async def world(cloud: Any, as_ctx: Any) -> World:
    return await make_world(cloud, as_ctx)


async def test_metadata(world: World) -> None:
    sid = (await world.active(metadata={"a": "1"}))["id"]
    base = f"{API}/servers/{sid}/metadata"
    assert (await world.member.get(base)).json() == {"metadata": {"a": "1"}}
    resp = await world.member.post(base, json={"metadata": {"b": "2"}})
    assert resp.status_code == 200 and resp.json() == {"metadata": {"a": "1", "b": "2"}}
    resp = await world.member.put(base, json={"metadata": {"c": "3"}})
    assert resp.status_code == 200 and resp.json() == {"metadata": {"c": "3"}}
    assert (await world.member.get(f"{base}/c")).json() == {"meta": {"c": "3"}}
    resp = await world.member.get(f"{base}/zz")
    assert resp.status_code == 404 and fault_of(resp)[2] == "Metadata item was not found"
    resp = await world.member.put(f"{base}/d", json={"meta": {"d": "4"}})
    assert resp.status_code == 200 and resp.json() == {"meta": {"d": "4"}}
    resp = await world.member.put(f"{base}/d", json={"meta": {"e": "5"}})
    assert resp.status_code == 400 and fault_of(resp)[2] == "Request body and URI mismatch"
    resp = await world.member.put(f"{base}/d", json={"meta": {"d": "4", "e": "5"}})
    assert resp.status_code == 400
    assert (await world.member.delete(f"{base}/c")).status_code == 204
    assert (await world.member.delete(f"{base}/c")).status_code == 404
    assert (await world.member.get(base)).json() == {"metadata": {"d": "4"}}
    for bad in ({"metadata": {"k": 1}}, {"metadata": {"": "v"}}, {"metadata": {"k" * 256: "v"}}, {"meta": {}}, {}):
        assert (await world.member.post(base, json=bad)).status_code == 400, bad
    # The server view shows the metadata too.
    assert (await world.member.get(f"{API}/servers/{sid}")).json()["server"]["metadata"] == {"d": "4"}


async def test_metadata_quota_and_state(world: World) -> None:
    sid = (await world.active())["id"]
    # (Set directly: os-quota-sets is tested with the resources; here only the enforcement matters.)
    async with world.cloud.db.write() as conn:
        await world.cloud.services.compute.quotas.set_limits(conn, world.project_id, {"metadata_items": 2})
    base = f"{API}/servers/{sid}/metadata"
    assert (await world.member.post(base, json={"metadata": {"a": "1", "b": "2"}})).status_code == 200
    resp = await world.member.post(base, json={"metadata": {"c": "3"}})
    assert resp.status_code == 403
    assert fault_of(resp) == ("forbidden", 403, "Maximum number of metadata items exceeds 2")
    resp = await world.member.post(
        f"{API}/servers", json={"server": {"name": "m", "imageRef": world.image_id, "flavorRef": "42", "metadata": {"a": "1", "b": "2", "c": "3"}}}
    )
    assert resp.status_code == 403 and "Maximum number of metadata items exceeds 2" in resp.text
    # Metadata changes need a stable vm_state (here: forced back to building).
    from cumulo.compute import instances as inst_db

    async with world.cloud.db.write() as conn:
        assert await inst_db.cas_update(conn, sid, {"vm_state": "building"})
    resp = await world.member.delete(f"{base}/a")
    assert resp.status_code == 409
    assert fault_of(resp)[2] == f"Cannot 'delete metadata' instance {sid} while it is in vm_state building"
    async with world.cloud.db.write() as conn:
        assert await inst_db.cas_update(conn, sid, {"vm_state": "active"})


async def test_tags(world: World) -> None:
    sid = (await world.active())["id"]
    base = f"{API}/servers/{sid}/tags"
    v = mv("2.26")
    assert (await world.member.get(base, headers=mv("2.25"))).status_code == 404
    assert (await world.member.get(base, headers=v)).json() == {"tags": []}
    resp = await world.member.put(base, json={"tags": ["a", "b", "a"]}, headers=v)
    assert resp.status_code == 200 and resp.json() == {"tags": ["a", "b"]}
    assert (await world.member.get(f"{base}/a", headers=v)).status_code == 204
    resp = await world.member.get(f"{base}/zz", headers=v)
    assert resp.status_code == 404 and fault_of(resp)[2] == f"Server {sid} has no tag 'zz'"
    resp = await world.member.put(f"{base}/c", headers=v)
    assert resp.status_code == 201 and resp.headers["location"].endswith(f"/servers/{sid}/tags/c")
    assert (await world.member.put(f"{base}/c", headers=v)).status_code == 204
    resp = await world.member.put(f"{base}/caf\u00e9 \u2603", headers=v)  # non-ASCII tags: Location is quoted
    assert resp.status_code == 201 and resp.headers["location"].endswith("/tags/caf%C3%A9%20%E2%98%83")
    assert (await world.member.delete(f"{base}/caf\u00e9 \u2603", headers=v)).status_code == 204
    resp = await world.member.put(f"{base}/a,b", headers=v)
    assert resp.status_code == 400 and "Tag 'a,b' is invalid" in resp.text
    resp = await world.member.put(f"{base}/{'x' * 61}", headers=v)
    assert resp.status_code == 400
    assert (await world.member.delete(f"{base}/a", headers=v)).status_code == 204
    resp = await world.member.delete(f"{base}/a", headers=v)
    assert resp.status_code == 404 and fault_of(resp)[2] == f"Instance {sid} has no tag 'a'"
    assert (await world.member.get(base, headers=v)).json() == {"tags": ["b", "c"]}
    shown = (await world.member.get(f"{API}/servers/{sid}", headers=v)).json()["server"]
    assert shown["tags"] == ["b", "c"]
    assert (await world.member.put(base, json={"tags": [f"t{i}" for i in range(51)]}, headers=v)).status_code == 400
    assert (await world.member.put(base, json={"tags": [f"t{i}" for i in range(50)]}, headers=v)).status_code == 200
    resp = await world.member.put(f"{base}/one-more", headers=v)
    assert resp.status_code == 400 and "exceeded the per-server limit 50" in resp.text
    assert (await world.member.delete(base, headers=v)).status_code == 204
    assert (await world.member.get(base, headers=v)).json() == {"tags": []}
    assert (await world.reader.put(f"{base}/x", headers=v)).status_code == 403


async def test_instance_actions_and_events(world: World) -> None:
    sid = (await world.active())["id"]
    assert (await world.action(sid, {"os-stop": None})).status_code == 202
    await wait_status(world.member, sid, "SHUTOFF")
    listing = (await world.member.get(f"{API}/servers/{sid}/os-instance-actions")).json()["instanceActions"]
    assert [a["action"] for a in listing] == ["stop", "create"]
    stop = listing[0]
    assert set(stop) == {"action", "instance_uuid", "request_id", "user_id", "project_id", "start_time", "message"}
    assert stop["project_id"] == world.project_id and stop["request_id"].startswith("req-")
    rid = stop["request_id"]
    path = f"{API}/servers/{sid}/os-instance-actions/{rid}"
    # Before 2.51 only admins see events.
    assert "events" not in (await world.member.get(path, headers=mv("2.50"))).json()["instanceAction"]
    member_251 = (await world.member.get(path, headers=mv("2.51"))).json()["instanceAction"]
    assert member_251["events"] and "traceback" not in member_251["events"][0]
    assert member_251["events"][0]["result"] == "Success" and member_251["events"][0]["finish_time"]
    admin_262 = (await world.admin.get(path, headers=mv("2.62"))).json()["instanceAction"]
    event = admin_262["events"][0]
    assert {"traceback", "host", "hostId"} <= set(event) and event["host"]
    member_262 = (await world.member.get(path, headers=mv("2.62"))).json()["instanceAction"]["events"][0]
    assert "hostId" in member_262 and "host" not in member_262
    assert member_262["hostId"] == (await world.member.get(f"{API}/servers/{sid}")).json()["server"]["hostId"]
    assert "updated_at" in (await world.member.get(path, headers=mv("2.58"))).json()["instanceAction"]
    resp = await world.member.get(f"{API}/servers/{sid}/os-instance-actions/req-nope")
    assert resp.status_code == 404 and fault_of(resp)[2] == "Action req-nope not found"

    # 2.58: paging by request id, with a next link.
    paged = (await world.member.get(f"{API}/servers/{sid}/os-instance-actions", params={"limit": 1}, headers=mv("2.58"))).json()
    assert [a["action"] for a in paged["instanceActions"]] == ["stop"] and "updated_at" in paged["instanceActions"][0]
    assert paged["links"][0]["rel"] == "next" and f"marker={rid}" in paged["links"][0]["href"]
    rest = (
        await world.member.get(f"{API}/servers/{sid}/os-instance-actions", params={"marker": rid}, headers=mv("2.58"))
    ).json()["instanceActions"]
    assert [a["action"] for a in rest] == ["create"]
    resp = await world.member.get(f"{API}/servers/{sid}/os-instance-actions", params={"marker": "req-x"}, headers=mv("2.58"))
    assert resp.status_code == 400
    resp = await world.member.get(f"{API}/servers/{sid}/os-instance-actions", params={"limit": 1}, headers=mv("2.57"))
    assert resp.status_code == 200 and len(resp.json()["instanceActions"]) == 2  # no paging before 2.58
    resp = await world.member.get(f"{API}/servers/{sid}/os-instance-actions", params={"bogus": 1}, headers=mv("2.58"))
    assert resp.status_code == 400

    # Deleted servers keep their history from 2.21.
    assert (await world.member.delete(f"{API}/servers/{sid}")).status_code == 204
    await wait_gone(world.member, sid)
    assert (await world.member.get(f"{API}/servers/{sid}/os-instance-actions", headers=mv("2.20"))).status_code == 404
    gone = (await world.member.get(f"{API}/servers/{sid}/os-instance-actions", headers=mv("2.21"))).json()
    assert gone["instanceActions"][0]["action"] == "delete"


async def test_diagnostics_admin_only(world: World) -> None:
    sid = (await world.active())["id"]
    path = f"{API}/servers/{sid}/diagnostics"
    assert (await world.member.get(path)).status_code == 403
    std = (await world.admin.get(path, headers=mv("2.48"))).json()
    assert set(std) == {
        "state", "driver", "hypervisor", "hypervisor_os", "uptime", "config_drive", "num_cpus", "num_nics",
        "num_disks", "disk_details", "cpu_details", "nic_details", "memory_details",
    }
    assert set(std["memory_details"]) == {"maximum", "used"}
    # Only Nova's driver names are valid here; the real one is in "hypervisor".
    assert std["driver"] == "libvirt" and std["hypervisor"] == "fake" and std["state"] == "running"
    legacy = (await world.admin.get(path)).json()
    assert "memory" in legacy and "state" not in legacy


async def test_ips(world: World) -> None:
    sid = (await world.active())["id"]
    resp = await world.member.get(f"{API}/servers/{sid}/ips")
    assert resp.status_code == 200 and set(resp.json()) == {"addresses"}
    addresses = resp.json()["addresses"]
    for net, ips in addresses.items():
        shown = (await world.member.get(f"{API}/servers/{sid}/ips/{net}")).json()
        assert shown == {net: ips}
        assert all(set(ip) == {"version", "addr"} for ip in ips)
    resp = await world.member.get(f"{API}/servers/{sid}/ips/no-such-net")
    assert resp.status_code == 404 and fault_of(resp)[2] == "Instance is not a member of specified network"
