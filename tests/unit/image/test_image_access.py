"""Who sees and changes what: project isolation, visibility, roles, protected images, members."""

from __future__ import annotations

from typing import Any

import httpx

PATCH = {"Content-Type": "application/openstack-images-v2.1-json-patch"}


async def test_private_and_shared_images_are_404_to_other_projects(
    alice: httpx.AsyncClient, bob: httpx.AsyncClient, make_image: Any
) -> None:
    for visibility in ("private", "shared"):
        image = await make_image(alice, b"secret", name=visibility, visibility=visibility)
        iid = image["id"]
        assert (await bob.get(f"/v2/images/{iid}")).status_code == 404
        assert (await bob.get(f"/v2/images/{iid}/file")).status_code == 404
        assert (await bob.delete(f"/v2/images/{iid}")).status_code == 404
        r = await bob.patch(f"/v2/images/{iid}", json=[{"op": "replace", "path": "/name", "value": "x"}], headers=PATCH)
        assert r.status_code == 404
        assert (await bob.get("/v2/images")).json()["images"] == []
        assert (await bob.get("/v2/images?visibility=all")).json()["images"] == []
        assert (await alice.get(f"/v2/images/{iid}")).status_code == 200


async def test_public_image_is_readable_but_not_writable_by_others(
    alice: httpx.AsyncClient, bob: httpx.AsyncClient, admin: httpx.AsyncClient, make_image: Any
) -> None:
    # Only the admin may publish (Glance's publicize_image default).
    r = await alice.post("/v2/images", json={"name": "p", "visibility": "public"})
    assert r.status_code == 403
    image = await make_image(admin, b"public bytes", name="pub", visibility="public")
    iid = image["id"]
    assert (await bob.get(f"/v2/images/{iid}")).json()["name"] == "pub"
    assert (await bob.get(f"/v2/images/{iid}/file")).content == b"public bytes"
    assert [i["id"] for i in (await bob.get("/v2/images")).json()["images"]] == [iid]
    r = await bob.patch(f"/v2/images/{iid}", json=[{"op": "replace", "path": "/name", "value": "x"}], headers=PATCH)
    assert r.status_code == 403
    assert (await bob.delete(f"/v2/images/{iid}")).status_code == 403
    assert (await bob.put(f"/v2/images/{iid}/tags/t")).status_code == 403


async def test_community_images_listed_only_when_asked(
    alice: httpx.AsyncClient, bob: httpx.AsyncClient, make_image: Any
) -> None:
    image = await make_image(alice, name="comm", visibility="community")
    assert [i["name"] for i in (await alice.get("/v2/images")).json()["images"]] == ["comm"]
    assert (await bob.get("/v2/images")).json()["images"] == []
    listed = (await bob.get("/v2/images?visibility=community")).json()["images"]
    assert [i["id"] for i in listed] == [image["id"]]
    assert (await bob.get(f"/v2/images/{image['id']}")).status_code == 200


async def test_admin_sees_every_project(alice: httpx.AsyncClient, admin: httpx.AsyncClient, make_image: Any) -> None:
    image = await make_image(alice, name="mine", visibility="private")
    assert (await admin.get(f"/v2/images/{image['id']}")).status_code == 200
    assert [i["id"] for i in (await admin.get("/v2/images")).json()["images"]] == [image["id"]]
    r = await admin.patch(
        f"/v2/images/{image['id']}", json=[{"op": "replace", "path": "/visibility", "value": "public"}], headers=PATCH
    )
    assert r.status_code == 200 and r.json()["visibility"] == "public"


async def test_reader_lists_but_cannot_change(
    alice: httpx.AsyncClient, reader: httpx.AsyncClient, make_image: Any
) -> None:
    image = await make_image(alice, b"bytes", name="r")
    iid = image["id"]
    assert (await reader.get("/v2/images")).status_code == 200
    assert (await reader.get(f"/v2/images/{iid}")).json()["name"] == "r"
    assert (await reader.post("/v2/images", json={"name": "no"})).status_code == 403
    r = await reader.patch(f"/v2/images/{iid}", json=[{"op": "replace", "path": "/name", "value": "x"}], headers=PATCH)
    assert r.status_code == 403
    assert (await reader.delete(f"/v2/images/{iid}")).status_code == 403
    assert (await reader.put(f"/v2/images/{iid}/tags/x")).status_code == 403
    # Glance's download_image default needs the member role.
    assert (await reader.get(f"/v2/images/{iid}/file")).status_code == 403
    assert (await reader.get(f"/v2/images/{iid}")).json()["name"] == "r"


async def test_owner_cannot_be_another_project(alice: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    assert (await alice.post("/v2/images", json={"owner": "project-b"})).status_code == 403
    r = await admin.post("/v2/images", json={"owner": "project-b"})
    assert r.status_code == 201 and r.json()["owner"] == "project-b"


async def test_protected_image_cannot_be_deleted(alice: httpx.AsyncClient, make_image: Any) -> None:
    image = await make_image(alice, name="keep", protected=True)
    r = await alice.delete(f"/v2/images/{image['id']}")
    assert r.status_code == 403
    assert "protected" in r.json()["message"]
    await alice.patch(
        f"/v2/images/{image['id']}", json=[{"op": "replace", "path": "/protected", "value": False}], headers=PATCH
    )
    assert (await alice.delete(f"/v2/images/{image['id']}")).status_code == 204
    assert (await alice.get(f"/v2/images/{image['id']}")).status_code == 404


async def test_members_share_an_image(alice: httpx.AsyncClient, bob: httpx.AsyncClient, make_image: Any) -> None:
    image = await make_image(alice, b"shared bytes", name="s")  # visibility defaults to "shared"
    iid = image["id"]
    assert (await bob.post(f"/v2/images/{iid}/members", json={"member": "project-b"})).status_code == 404
    r = await alice.post(f"/v2/images/{iid}/members", json={"member": "project-b"})
    assert r.status_code == 200
    assert r.json()["status"] == "pending" and r.json()["member_id"] == "project-b"
    assert r.json()["schema"] == "/v2/schemas/member"
    assert (await alice.post(f"/v2/images/{iid}/members", json={"member": "project-b"})).status_code == 409

    # Pending: showable and downloadable by id, but not in the default list.
    assert (await bob.get(f"/v2/images/{iid}")).status_code == 200
    assert (await bob.get(f"/v2/images/{iid}/file")).content == b"shared bytes"
    assert (await bob.get("/v2/images")).json()["images"] == []
    assert len((await bob.get("/v2/images?member_status=pending")).json()["images"]) == 1

    # The owner cannot accept for the member; the member can.
    assert (await alice.put(f"/v2/images/{iid}/members/project-b", json={"status": "accepted"})).status_code == 403
    r = await bob.put(f"/v2/images/{iid}/members/project-b", json={"status": "accepted"})
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    assert [i["id"] for i in (await bob.get("/v2/images")).json()["images"]] == [iid]
    assert (await bob.put(f"/v2/images/{iid}/members/project-b", json={"status": "bogus"})).status_code == 400
    # The member still cannot change the image.
    r = await bob.patch(f"/v2/images/{iid}", json=[{"op": "replace", "path": "/name", "value": "x"}], headers=PATCH)
    assert r.status_code == 403

    members = (await alice.get(f"/v2/images/{iid}/members")).json()
    assert [m["member_id"] for m in members["members"]] == ["project-b"]
    assert members["schema"] == "/v2/schemas/members"
    assert (await alice.delete(f"/v2/images/{iid}/members/project-b")).status_code == 204
    assert (await bob.get(f"/v2/images/{iid}")).status_code == 404

    private = await make_image(alice, name="p", visibility="private")
    r = await alice.post(f"/v2/images/{private['id']}/members", json={"member": "project-b"})
    assert r.status_code == 403
