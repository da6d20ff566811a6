"""Unsafe qcow2 images and volumes, through the whole cloud (the image service's format inspector,
the runtime's image adapter, the real volume worker on a file store): an uploaded qcow2 that names
a backing file never becomes active, so no volume can be made from it (Cinder's 400 "is not
active"); a volume's upload to image is inspected like any upload, so a raw volume whose guest
wrote an unsafe qcow2 header at its start cannot become such an image, while ordinary raw and
qcow2 uploads of volumes still go active."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from _disk_images import qcow2_header
from fuzz_support import World, assert_fault, start_world

pytestmark = pytest.mark.asyncio(loop_scope="module")

IMG = "/image/v2/images"
OCTET = {"Content-Type": "application/octet-stream"}
MV = {"OpenStack-API-Version": "volume 3.70"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async for w in start_world(tmp_path_factory.mktemp("vol-unsafe")):
        yield w


async def _until(client: httpx.AsyncClient, url: str, key: str | None, status: str) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for _ in range(500):
        r = await client.get(url, headers=MV)
        assert r.status_code == 200, r.text
        body = r.json()[key] if key else r.json()
        if body["status"] == status:
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"{url} never {status}: {body}")


def _backed_qcow2(tmp: Path) -> bytes:
    """A qcow2 whose backing file is /etc/shadow: made by qemu-img when it is there, else by hand."""
    if shutil.which("qemu-img") is None:
        return qcow2_header(backing_file=b"/etc/shadow")
    path = tmp / "backed.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", "/etc/shadow", "-F", "raw",  # noqa: S603, S607
                    str(path), "64M"], check=True, capture_output=True, timeout=60)
    return path.read_bytes()


async def test_no_volume_from_an_image_that_names_a_backing_file(world: World, tmp_path: Path) -> None:
    m = world.member
    r = await m.post(IMG, json={"name": "shadow", "disk_format": "qcow2", "container_format": "bare"})
    assert r.status_code == 201, r.text
    image_id = r.json()["id"]
    r = await m.put(f"{IMG}/{image_id}/file", content=_backed_qcow2(tmp_path), headers=OCTET)
    assert r.status_code == 415 and "backing file" in r.json()["message"], r.text
    assert (await m.get(f"{IMG}/{image_id}")).json()["status"] == "queued"

    before = (await m.get(f"/volume/v3/{world.project}/volumes", headers=MV)).json()["volumes"]
    r = await m.post(f"/volume/v3/{world.project}/volumes",
                     json={"volume": {"size": 1, "name": "from-shadow", "imageRef": image_id}}, headers=MV)
    assert_fault(r, 400, "is not active")
    after = (await m.get(f"/volume/v3/{world.project}/volumes", headers=MV)).json()["volumes"]
    assert after == before  # no volume record was made
    assert (await m.delete(f"{IMG}/{image_id}")).status_code == 204


async def _blank_volume(world: World) -> str:
    r = await world.member.post(f"/volume/v3/{world.project}/volumes",
                                json={"volume": {"size": 1, "name": "up"}}, headers=MV)
    assert r.status_code == 202, r.text
    vid: str = r.json()["volume"]["id"]
    await _until(world.member, f"/volume/v3/{world.project}/volumes/{vid}", "volume", "available")
    return vid


async def _upload(world: World, vid: str, disk_format: str) -> str:
    body = {"os-volume_upload_image": {"image_name": f"up-{disk_format}", "disk_format": disk_format}}
    r = await world.member.post(f"/volume/v3/{world.project}/volumes/{vid}/action", json=body, headers=MV)
    assert r.status_code == 202, r.text
    return str(r.json()["os-volume_upload_image"]["image_id"])


async def test_volume_upload_to_image_is_inspected(world: World) -> None:
    w, m = world, world.member
    vid = await _blank_volume(w)
    for disk_format in ("raw", "qcow2"):  # ordinary uploads still go active
        image_id = await _upload(w, vid, disk_format)
        image = await _until(m, f"{IMG}/{image_id}", None, "active")
        assert image["disk_format"] == disk_format
        await _until(m, f"/volume/v3/{w.project}/volumes/{vid}", "volume", "available")
        assert (await m.delete(f"{IMG}/{image_id}")).status_code == 204

    # What a guest could write at the start of its disk: an unsafe qcow2 header.
    (volume_file,) = Path(w.cloud.conf.state_dir).rglob(f"{vid}.raw")
    with volume_file.open("r+b") as fh:
        fh.write(qcow2_header(backing_file=b"/etc/shadow"))
    image_id = await _upload(w, vid, "raw")
    for _ in range(500):  # the refused image is dropped (the worker's failure path)
        if (await m.get(f"{IMG}/{image_id}")).status_code == 404:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError(f"image {image_id} outlived its refused upload")
    volume = await _until(m, f"/volume/v3/{w.project}/volumes/{vid}", "volume", "available")
    assert volume["id"] == vid
    # As a qcow2, the same volume is converted into a clean image: that upload goes active.
    image_id = await _upload(w, vid, "qcow2")
    await _until(m, f"{IMG}/{image_id}", None, "active")
    assert (await m.delete(f"{IMG}/{image_id}")).status_code == 204
    assert (await m.delete(f"/volume/v3/{w.project}/volumes/{vid}", headers=MV)).status_code == 202
