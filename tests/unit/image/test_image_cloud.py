"""The image service inside the whole in-process cloud (shared `cloud`/`as_ctx` fixtures): the
/image prefix and catalog, project isolation, and the compute snapshot path through ImageService."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from cumulo.context import RequestContext, expand_roles

OCTET = {"Content-Type": "application/octet-stream"}


def _ctx(project: str, role: str = "member") -> RequestContext:
    return RequestContext(user_id=uuid.uuid4().hex, project_id=project, roles=expand_roles([role]))


async def test_catalog_advertises_image_and_round_trip(
    cloud: Any, as_ctx: Callable[[RequestContext], httpx.AsyncClient]
) -> None:
    assert any(e.type == "image" and e.path == "/image" for e in cloud.services.catalog)
    a = as_ctx(_ctx(uuid.uuid4().hex))
    b = as_ctx(_ctx(uuid.uuid4().hex))
    data = b"cloud bytes" * 4096
    r = await a.post("/image/v2/images", json={"name": "c", "disk_format": "raw", "container_format": "bare"})
    assert r.status_code == 201
    iid = r.json()["id"]
    assert (await a.put(f"/image/v2/images/{iid}/file", content=data, headers=OCTET)).status_code == 204
    r = await a.get(f"/image/v2/images/{iid}/file")
    assert r.content == data and r.headers["content-md5"] == hashlib.md5(data).hexdigest()
    assert (await b.get(f"/image/v2/images/{iid}")).status_code == 404
    # b sees only public images (the busybox demo image registered at start-up), not a's.
    assert iid not in [i["id"] for i in (await b.get("/image/v2/images")).json()["images"]]
    assert all(i["visibility"] == "public" for i in (await b.get("/image/v2/images")).json()["images"])
    # The state dir holds the bytes at their content address.
    path = Path(await cloud.services.images.local_path(iid))
    assert path.is_relative_to(cloud.conf.state_dir) and path.name == hashlib.sha256(data).hexdigest()


async def test_snapshot_interface_in_the_cloud(cloud: Any, tmp_path: Path) -> None:
    images = cloud.services.images
    ctx = _ctx(uuid.uuid4().hex)
    record = await images.create_snapshot_record(ctx, "snap", {"instance_uuid": "i-1"}, "raw", "bare")
    assert record["status"] == "queued" and record["owner"] == ctx.project_id
    disk = tmp_path / "disk"
    disk.write_bytes(b"snapshot")
    await images.upload_from_path(record["id"], str(disk))
    shown = await images.get(ctx, record["id"])
    assert shown["status"] == "active" and shown["instance_uuid"] == "i-1"
    assert Path(await images.local_path(record["id"])).read_bytes() == b"snapshot"
