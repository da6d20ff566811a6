"""The Python interface other parts of Cumulo call (compute's snapshot and boot paths)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from _disk_images import qcow2_bytes

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.image.service import ImageService


async def test_snapshot_record_upload_and_local_path(svc: ImageService, ctx: Any, tmp_path: Path) -> None:
    owner: RequestContext = ctx("project-a")
    image = await svc.create_snapshot_record(
        owner, "snap", {"image_type": "snapshot", "instance_uuid": "abc", "base_image_ref": None, "n": 3},
        "qcow2", "bare",
    )
    assert image["status"] == "queued" and image["visibility"] == "private" and image["owner"] == "project-a"
    assert image["image_type"] == "snapshot" and image["n"] == "3" and "base_image_ref" not in image

    source = tmp_path / "disk.img"
    source.write_bytes(qcow2_bytes(b"disk contents" * 1000))  # declared qcow2: inspected
    await svc.upload_from_path(image["id"], str(source))
    active = await svc.get(owner, image["id"])
    assert active["status"] == "active"
    assert active["checksum"] == hashlib.md5(source.read_bytes()).hexdigest()
    assert active["os_hash_value"] == hashlib.sha512(source.read_bytes()).hexdigest()
    local = Path(await svc.local_path(image["id"]))
    assert local.read_bytes() == source.read_bytes()
    assert source.exists()  # the caller's file is copied, not taken

    with pytest.raises(errors.NotFound):
        await svc.get(ctx("project-b"), image["id"])
    assert (await svc.get(ctx("project-x", "admin"), image["id"]))["id"] == image["id"]
    with pytest.raises(errors.InvalidState):
        await svc.upload_from_path(image["id"], str(source))


async def test_get_internal_and_missing_images(svc: ImageService, ctx: Any) -> None:
    assert await svc.get_internal("00000000-0000-0000-0000-000000000000") is None
    assert await svc.get_internal("not-a-uuid") is None
    with pytest.raises(errors.NotFound):
        await svc.get(ctx("p"), "not-a-uuid")
    with pytest.raises(errors.NotFound):
        await svc.local_path("00000000-0000-0000-0000-000000000000")
    image = await svc.create_snapshot_record(ctx("p"), "s", {}, "raw", "bare")
    with pytest.raises(errors.InvalidState):
        await svc.local_path(image["id"])
    internal = await svc.get_internal(image["id"])
    assert internal is not None and internal["name"] == "s" and internal["owner"] == "p"


async def test_mark_failed_deletes_the_snapshot(svc: ImageService, ctx: Any) -> None:
    image = await svc.create_snapshot_record(ctx("p"), "s", {}, "raw", "bare")
    await svc.mark_failed(image["id"])
    assert await svc.get_internal(image["id"]) is None
    await svc.mark_failed(image["id"])  # idempotent


async def test_upload_from_missing_path_restores_queued(svc: ImageService, ctx: Any, tmp_path: Path) -> None:
    image = await svc.create_snapshot_record(ctx("p"), "s", {}, "raw", "bare")
    with pytest.raises(FileNotFoundError):
        await svc.upload_from_path(image["id"], str(tmp_path / "nope"))
    assert (await svc.get_internal(image["id"]))["status"] == "queued"


async def test_invalid_snapshot_formats(svc: ImageService, ctx: Any) -> None:
    with pytest.raises(errors.Invalid):
        await svc.create_snapshot_record(ctx("p"), "s", {}, "floppy", "bare")


async def test_describe_snapshot_sets_formats_and_driver_properties(svc: ImageService, ctx: Any) -> None:
    image = await svc.create_snapshot_record(ctx("project-a"), "snap", {"hypervisor_type": "qemu", "keep": "1"}, "raw", "bare")
    await svc.describe_snapshot(image["id"], "raw", "docker", {"hypervisor_type": "container", "id": "evil"})
    got = await svc.get_internal(image["id"])
    assert got is not None
    assert (got["disk_format"], got["container_format"]) == ("raw", "docker")
    assert got["hypervisor_type"] == "container" and got["keep"] == "1"
    assert got["id"] == image["id"]  # a core field is never overwritten by a property
    with pytest.raises(errors.Invalid):
        await svc.describe_snapshot(image["id"], "raw", "nope", {})
