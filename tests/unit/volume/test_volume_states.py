"""Cinder's state machine through the API: attach/detach actions, the 3.27 attachments API,
extend, delete refusals, and compare-and-swap races answered 409."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
import sqlalchemy as sa
from _asgi_ctx import ctx_for
from fake_worker import FakeWorker
from vol_support import act, fault, make_volume, show

from cumulo import errors
from cumulo.volume import states
from cumulo.volume.models import volumes
from cumulo.volume.service import VolumeService

Client = Callable[..., httpx.AsyncClient]
SERVER = "11111111-2222-4333-8444-555555555555"
SERVER2 = "11111111-2222-4333-8444-666666666666"


async def test_old_attach_detach_cycle(alice: httpx.AsyncClient) -> None:
    vid = (await make_volume(alice))["id"]
    assert (await act(alice, vid, "os-reserve")).status_code == 202
    assert (await show(alice, vid))["status"] == "attaching"
    assert (await act(alice, vid, "os-unreserve")).status_code == 202
    assert (await show(alice, vid))["status"] == "available"
    assert (await act(alice, vid, "os-reserve")).status_code == 202
    r = await act(alice, vid, "os-attach", {"instance_uuid": SERVER, "mountpoint": "/dev/vdb"})
    assert r.status_code == 202, r.text
    vol = await show(alice, vid)
    assert vol["status"] == "in-use"
    (att,) = vol["attachments"]
    assert att["server_id"] == SERVER and att["device"] == "/dev/vdb" and att["volume_id"] == vid
    assert (await act(alice, vid, "os-begin_detaching")).status_code == 202
    assert (await show(alice, vid))["status"] == "detaching"
    assert (await act(alice, vid, "os-roll_detaching")).status_code == 202
    assert (await show(alice, vid))["status"] == "in-use"
    assert (await act(alice, vid, "os-begin_detaching")).status_code == 202
    assert (await act(alice, vid, "os-detach", {"attachment_id": att["attachment_id"]})).status_code == 202
    vol = await show(alice, vid)
    assert vol["status"] == "available" and vol["attachments"] == []


async def test_attach_in_use_needs_multiattach(alice: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    vid = (await make_volume(alice))["id"]
    assert (await act(alice, vid, "os-attach", {"instance_uuid": SERVER, "mountpoint": "/dev/vdb"})).status_code == 202
    fault(await act(alice, vid, "os-attach", {"instance_uuid": SERVER2, "mountpoint": "/dev/vdc"}), 400, "badRequest")
    fault(await act(alice, vid, "os-reserve"), 400)
    r = await alice.post("/attachments", json={"attachment": {"volume_uuid": vid, "instance_uuid": SERVER2}})
    fault(r, 400)
    # a multiattach type lets a second server attach
    r = await admin.post("/types", json={"volume_type": {"name": "multi", "extra_specs": {"multiattach": "<is> True"}}})
    assert r.status_code == 200
    multi = await make_volume(alice, volume_type="multi")
    assert multi["multiattach"] is True
    for server, dev in ((SERVER, "/dev/vdb"), (SERVER2, "/dev/vdc")):
        r = await act(alice, multi["id"], "os-attach", {"instance_uuid": server, "mountpoint": dev})
        assert r.status_code == 202, r.text
    vol = await show(alice, multi["id"])
    assert vol["status"] == "in-use" and len(vol["attachments"]) == 2
    fault(await act(alice, multi["id"], "os-detach", {}), 400)  # which one?
    aid = vol["attachments"][0]["attachment_id"]
    assert (await act(alice, multi["id"], "os-detach", {"attachment_id": aid})).status_code == 202
    assert (await show(alice, multi["id"]))["status"] == "in-use"


async def test_attachments_api(alice: httpx.AsyncClient, client: Client) -> None:
    vid = (await make_volume(alice))["id"]
    r = await alice.post("/attachments", json={"attachment": {"volume_uuid": vid, "instance_uuid": SERVER}})
    assert r.status_code == 200, r.text
    att = r.json()["attachment"]
    assert set(att) == {"id", "status", "instance", "volume_id", "attached_at", "detached_at", "attach_mode",
                        "connection_info"}
    assert att["status"] == "reserved" and att["connection_info"] is None
    assert (await show(alice, vid))["status"] == "reserved"
    r = await alice.put(f"/attachments/{att['id']}", json={"attachment": {"connector": {"host": "h1", "mountpoint": "/dev/vdb"}}})
    assert r.status_code == 200
    assert r.json()["attachment"]["connection_info"]["data"]["volume_id"] == vid
    assert (await show(alice, vid))["status"] == "attaching"
    r = await alice.post(f"/attachments/{att['id']}/action", json={"os-complete": None})
    assert r.status_code == 204
    vol = await show(alice, vid)
    assert vol["status"] == "in-use" and vol["attachments"][0]["attachment_id"] == att["id"]
    r = await alice.get("/attachments")
    assert [a["id"] for a in r.json()["attachments"]] == [att["id"]]
    assert set(r.json()["attachments"][0]) == {"id", "status", "instance", "volume_id"}
    fault(await alice.delete(f"/volumes/{vid}"), 400)  # in use
    r = await alice.delete(f"/attachments/{att['id']}")
    assert r.status_code == 200
    assert (await show(alice, vid))["status"] == "available"
    fault(await alice.get(f"/attachments/{att['id']}"), 404)


async def test_attachments_need_3_27(client: Client) -> None:
    old = client(ctx_for("project-a", "member"), "3.26")
    fault(await old.get("/attachments"), 404)


async def test_extend(alice: httpx.AsyncClient, worker: FakeWorker, client: Client) -> None:
    vid = (await make_volume(alice, size=2))["id"]
    fault(await act(alice, vid, "os-extend", {"new_size": 2}), 400)
    fault(await act(alice, vid, "os-extend", {"new_size": 1}), 400)
    fault(await act(alice, vid, "os-extend", {"new_size": "big"}), 400)
    fault(await act(alice, vid, "os-extend", {}), 400)
    assert (await act(alice, vid, "os-extend", {"new_size": 3})).status_code == 202
    assert (await show(alice, vid))["size"] == 3
    # attached: only from 3.42 (online extend)
    assert (await act(alice, vid, "os-attach", {"instance_uuid": SERVER, "mountpoint": "/dev/vdb"})).status_code == 202
    old = client(ctx_for("project-a", "member"), "3.41")
    fault(await act(old, vid, "os-extend", {"new_size": 4}), 400)
    assert (await act(alice, vid, "os-extend", {"new_size": 4})).status_code == 202
    assert worker.casts[-1] == ("extend_volume", {"volume_id": vid, "new_size_gb": 4, "attached": True})
    vol = await show(alice, vid)
    assert vol["size"] == 4 and vol["status"] == "in-use"


async def test_delete_refusals(alice: httpx.AsyncClient, worker: FakeWorker) -> None:
    vid = (await make_volume(alice))["id"]
    r = await alice.post("/snapshots", json={"snapshot": {"volume_id": vid}})
    assert r.status_code == 202
    msg = fault(await alice.delete(f"/volumes/{vid}"), 400, "badRequest")
    assert "snapshots" in msg
    assert (await alice.delete(f"/volumes/{vid}", params={"cascade": "true"})).status_code == 202
    fault(await alice.get(f"/volumes/{vid}"), 404)
    worker.hold = True
    vid = (await make_volume(alice))["id"]
    assert (await show(alice, vid))["status"] == "creating"
    fault(await alice.delete(f"/volumes/{vid}"), 400)  # creating
    fault(await act(alice, vid, "os-extend", {"new_size": 5}), 400)


async def test_cas_race_is_409(svc: VolumeService, alice: httpx.AsyncClient) -> None:
    vid = (await make_volume(alice))["id"]
    async with svc.db.write() as conn:
        await states.transition(conn, volumes, vid, {"available"}, {"status": "attaching"})
    with pytest.raises(errors.Conflict):
        async with svc.db.write() as conn:
            await states.transition(conn, volumes, vid, {"available"}, {"status": "deleting"})
    async with svc.db.read() as conn:
        assert await conn.scalar(sa.select(volumes.c.status).where(volumes.c.id == vid)) == "attaching"


async def test_concurrent_reserves_one_wins(alice: httpx.AsyncClient) -> None:
    vid = (await make_volume(alice))["id"]
    results = await asyncio.gather(*(act(alice, vid, "os-reserve") for _ in range(4)))
    codes = sorted(r.status_code for r in results)
    assert codes.count(202) == 1 and all(c in (400, 409) for c in codes[1:]), codes


async def test_lost_race_between_check_and_write_is_409(svc: VolumeService, alice: httpx.AsyncClient,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A request that saw `available` but lost the row to another writer before its CAS answers 409."""
    vid = (await make_volume(alice))["id"]
    real = states.check_status

    def check_then_lose(status: str, allowed: object, **kw: object) -> None:
        real(status, allowed, **kw)  # type: ignore[arg-type]
        raise_later.append(True)

    raise_later: list[bool] = []
    monkeypatch.setattr("cumulo.volume.attachments.states.check_status", check_then_lose)
    orig = states.transition

    async def interleaved(conn: object, table: object, row_id: str, expected: object, values: object, **kw: object) -> None:
        if raise_later:
            await conn.execute(volumes.update().where(volumes.c.id == row_id).values(status="deleting"))  # type: ignore[attr-defined]
        await orig(conn, table, row_id, expected, values, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr("cumulo.volume.attachments.states.transition", interleaved)
    fault(await act(alice, vid, "os-reserve"), 409, "conflictingRequest")


async def test_reset_status_and_force_delete_are_admin(alice: httpx.AsyncClient, admin: httpx.AsyncClient,
                                                      client: Client) -> None:
    vid = (await make_volume(alice))["id"]
    fault(await act(alice, vid, "os-reset_status", {"status": "error"}), 403, "forbidden")
    fault(await act(alice, vid, "os-force_delete"), 403, "forbidden")
    root = client(ctx_for("project-a", "admin"))
    fault(await act(root, vid, "os-reset_status", {"status": "bogus"}), 400)
    assert (await act(root, vid, "os-reset_status", {"status": "error"})).status_code == 202
    assert (await show(alice, vid))["status"] == "error"
    assert (await act(root, vid, "os-force_delete")).status_code == 202
    fault(await alice.get(f"/volumes/{vid}"), 404)


async def test_unreachable_worker_leaves_error(alice: httpx.AsyncClient, worker: FakeWorker) -> None:
    worker.fail = True
    vol = await make_volume(alice)
    worker.fail = False
    assert (await show(alice, vol["id"]))["status"] == "error"
