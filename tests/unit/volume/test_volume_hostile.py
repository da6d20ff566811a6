"""Hostile and malformed input: every bad request is a 4xx in Cinder's fault format, never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from vol_support import fault, make_volume

JUNK: list[Any] = [None, [], "x", 1, {}, {"volume": None}, {"volume": []}, {"volume": {"size": "x" * 5000}},
                   {"volume": {"size": -1}}, {"volume": {"size": 0}}, {"volume": {"size": True}},
                   {"volume": {"size": 1.5}}, {"volume": {"size": 10 ** 30}}, {"volume": {"size": 1, "name": 5}},
                   {"volume": {"size": 1, "name": "n" * 256}}, {"volume": {"size": 1, "metadata": "x"}},
                   {"volume": {"size": 1, "metadata": {"k": 1}}}, {"volume": {"size": 1, "metadata": {"": "v"}}},
                   {"volume": {"size": 1, "metadata": {"k" * 300: "v"}}},
                   {"volume": {"size": 1, "snapshot_id": "not-a-uuid"}}, {"volume": {"size": 1, "source_volid": 7}},
                   {"volume": {"size": 1, "imageRef": "../../etc/passwd"}},
                   {"volume": {"size": 1, "availability_zone": "mars"}},
                   {"volume": {"size": 1, "volume_type": {"a": 1}}}, {"volume": {"size": 1, "multiattach": "perhaps"}},
                   {"volume": {"size": 1, "name": "a\u0000b"}},
                   {"volume": {"source_volid": "6f1c1b0e-8d7b-4f42-9a51-5d2d6f0c0a11",
                               "snapshot_id": "6f1c1b0e-8d7b-4f42-9a51-5d2d6f0c0a11"}}]


@pytest.mark.parametrize("body", JUNK)
async def test_bad_volume_create(alice: httpx.AsyncClient, body: Any) -> None:
    r = await alice.post("/volumes", json=body)
    assert 400 <= r.status_code < 500, r.text
    fault(r, r.status_code)


async def test_malformed_bodies(alice: httpx.AsyncClient) -> None:
    vid = (await make_volume(alice))["id"]
    for path in ("/volumes", f"/volumes/{vid}/action", "/snapshots", "/backups", "/attachments", "/types"):
        for raw in (b"{", b"\xff\xfe", b'{"a": "\\ud800"}', b"[" * 100000, b""):
            r = await alice.post(path, content=raw, headers={"Content-Type": "application/json"})
            assert 400 <= r.status_code < 500, (path, raw[:10], r.text)
    r = await alice.post("/volumes", content=b'{"volume": "' + b"a" * (2 << 20) + b'"}')
    fault(r, 413, "overLimit")


ACTIONS: list[Any] = [
    {}, {"a": 1, "b": 2}, {"os-nonsense": {}}, {"os-extend": None}, {"os-extend": []}, {"os-extend": {"new_size": None}},
    {"os-extend": {"new_size": -3}}, {"os-attach": {}}, {"os-attach": {"instance_uuid": "zz", "mountpoint": "/dev/vdb"}},
    {"os-attach": {"instance_uuid": "11111111-2222-4333-8444-555555555555"}},
    {"os-attach": {"instance_uuid": "11111111-2222-4333-8444-555555555555", "mountpoint": "/dev/vdb", "mode": "rx"}},
    {"os-detach": {"attachment_id": "nope"}}, {"os-detach": "x"}, {"os-set_bootable": {}},
    {"os-update_readonly_flag": {"readonly": "sometimes"}}, {"os-retype": {}},
    {"os-retype": {"new_type": "x", "migration_policy": "always"}}, {"os-initialize_connection": {"connector": 5}},
    {"os-volume_upload_image": {}}, {"os-volume_upload_image": {"image_name": "i", "container_format": "ova"}},
]


@pytest.mark.parametrize("body", ACTIONS)
async def test_bad_actions(alice: httpx.AsyncClient, body: Any) -> None:
    vid = (await make_volume(alice))["id"]
    r = await alice.post(f"/volumes/{vid}/action", json=body)
    assert 400 <= r.status_code < 500, r.text
    fault(r, r.status_code)


async def test_admin_reset_status_junk(admin: httpx.AsyncClient) -> None:
    vid = (await make_volume(admin))["id"]
    for value in ({"a": 1}, ["available"], 5, None):
        fault(await admin.post(f"/volumes/{vid}/action", json={"os-reset_status": {"status": value}}), 400)


async def test_bad_ids_and_queries(alice: httpx.AsyncClient) -> None:
    for path in ("/volumes/nope", "/volumes/" + "x" * 1000, "/snapshots/nope", "/backups/nope", "/attachments/nope",
                 "/types/nope", "/volumes/%00"):
        fault(await alice.get(path), 404, "itemNotFound")
    fault(await alice.get("/volumes", params={"name": "a\x00b"}), 400)
    fault(await alice.get("/volumes", params={"sort": "name:asc", "sort_key": "name"}), 400)
    fault(await alice.get("/volumes/detail", params={"offset": "-5"}), 400)
    fault(await alice.get("/nothing-here"), 404)
    for method in ("GET", "PUT", "DELETE"):  # an empty id (Tempest's negative tests): 404, not a redirect
        fault(await alice.request(method, "/volumes/", json={"volume": {"name": "x"}}), 404, "itemNotFound")
    fault(await alice.post("/volumes//action", json={"os-extend": {"new_size": 2}}), 404)
    fault(await alice.patch("/volumes"), 405, "badMethod")


async def test_bad_snapshot_backup_attachment_bodies(alice: httpx.AsyncClient) -> None:
    vid = (await make_volume(alice))["id"]
    body: dict[str, Any]
    for body in ({"snapshot": {}}, {"snapshot": {"volume_id": vid, "force": "kinda"}},
                 {"snapshot": {"volume_id": vid, "metadata": []}}):
        r = await alice.post("/snapshots", json=body)
        assert 400 <= r.status_code < 500, r.text
    for body in ({"backup": {}}, {"backup": {"volume_id": vid, "snapshot_id": "x"}},
                 {"backup": {"volume_id": vid, "name": ["x"]}}):
        r = await alice.post("/backups", json=body)
        assert 400 <= r.status_code < 500, r.text
    for body in ({"attachment": {}}, {"attachment": {"volume_uuid": vid, "instance_uuid": "bad"}},
                 {"attachment": {"volume_uuid": vid, "connector": "x"}},
                 {"attachment": {"volume_uuid": vid, "mode": "xx"}}):
        r = await alice.post("/attachments", json=body)
        assert 400 <= r.status_code < 500, r.text
