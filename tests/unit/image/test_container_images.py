"""Container images in the image service: docker/OCI uploads are checked before they go active,
bad ones end `killed` with the reason; the busybox demo image is registered once at start-up."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from cumulo.context import RequestContext, expand_roles
from cumulo.image.data import ERROR_PROPERTY
from cumulo.image.demo import busybox
from cumulo.image.service import ImageService
from cumulo.oci import write_docker_archive

OCTET = {"Content-Type": "application/octet-stream"}


def make_ctx(project_id: str = "some-other-project", roles: tuple[str, ...] = ("member",)) -> RequestContext:
    return RequestContext(user_id=f"user-{project_id}", project_id=project_id, roles=expand_roles(list(roles)))


def _layer(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _docker(tmp_path: Path, files: dict[str, bytes]) -> bytes:
    config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]}}
    return write_docker_archive(tmp_path / "img.tar", [_layer(files)], config, "t:latest").read_bytes()


async def _create(c: httpx.AsyncClient, container_format: str = "docker") -> str:
    r = await c.post("/v2/images", json={"name": "c", "disk_format": "raw", "container_format": container_format})
    assert r.status_code == 201, r.text
    image_id: str = r.json()["id"]
    return image_id


def _blobs(svc: ImageService) -> list[Path]:
    return [p for p in svc.store.data_dir.rglob("*") if p.is_file()] + list(svc.store.tmp_dir.iterdir())


async def test_valid_docker_save_upload_becomes_active(alice: httpx.AsyncClient, tmp_path: Path) -> None:
    image_id = await _create(alice)
    r = await alice.put(f"/v2/images/{image_id}/file", content=_docker(tmp_path, {"hello": b"hi"}), headers=OCTET)
    assert r.status_code == 204, r.text
    image = (await alice.get(f"/v2/images/{image_id}")).json()
    assert image["status"] == "active" and ERROR_PROPERTY not in image


@pytest.mark.parametrize(
    ("container_format", "payload"),
    [
        ("docker", "escape"),
        ("docker", b"this is not a tar archive at all"),
        ("oci", b"\x00" * 4096),
    ],
)
async def test_bad_container_upload_is_killed_with_reason(
    alice: httpx.AsyncClient, svc: ImageService, tmp_path: Path, container_format: str, payload: Any
) -> None:
    data = _docker(tmp_path, {"../../etc/evil": b"x"}) if payload == "escape" else payload
    image_id = await _create(alice, container_format)
    r = await alice.put(f"/v2/images/{image_id}/file", content=data, headers=OCTET)
    assert r.status_code == 400, r.text
    assert f"not a valid {container_format} image" in r.text
    image = (await alice.get(f"/v2/images/{image_id}")).json()
    assert image["status"] == "killed"
    assert image[ERROR_PROPERTY]
    if payload == "escape":
        assert ".." in image[ERROR_PROPERTY] and "../../etc/evil" in r.text
    assert image["size"] is None and image["checksum"] is None
    assert _blobs(svc) == []
    assert not (tmp_path / "etc" / "evil").exists()
    # A killed image takes no more data, and can be deleted.
    r = await alice.put(f"/v2/images/{image_id}/file", content=_docker(tmp_path, {"a": b"a"}), headers=OCTET)
    assert r.status_code == 409
    assert (await alice.delete(f"/v2/images/{image_id}")).status_code == 204


async def test_raw_bare_upload_is_not_checked(alice: httpx.AsyncClient) -> None:
    image_id = await _create(alice, "bare")
    r = await alice.put(f"/v2/images/{image_id}/file", content=b"not a tar", headers=OCTET)
    assert r.status_code == 204
    assert (await alice.get(f"/v2/images/{image_id}")).json()["status"] == "active"


async def test_upload_from_path_checks_container_images(
    alice: httpx.AsyncClient, svc: ImageService, tmp_path: Path
) -> None:
    image_id = await _create(alice)
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"garbage")
    with pytest.raises(Exception, match="not a valid docker image"):
        await svc.upload_from_path(image_id, str(bad))
    assert (await alice.get(f"/v2/images/{image_id}")).json()["status"] == "killed"
    assert _blobs(svc) == []


async def test_released_bytes_keep_the_unpacked_root_for_running_servers(
    alice: httpx.AsyncClient, svc: ImageService, tmp_path: Path
) -> None:
    from cumulo.oci.unpack import cached_rootfs

    image_id = await _create(alice)
    r = await alice.put(f"/v2/images/{image_id}/file", content=_docker(tmp_path, {"f": b"1"}), headers=OCTET)
    assert r.status_code == 204
    row_key = next(p.name for p in svc.store.data_dir.rglob("*") if p.is_file())
    root, _config = await cached_rootfs(svc.store.root, row_key, Path(await svc.local_path(image_id)))
    assert (root / "f").read_bytes() == b"1"
    stale = svc.store.root / "rootfs" / ".unpack-x-1"
    stale.mkdir()
    assert (await alice.delete(f"/v2/images/{image_id}")).status_code == 204
    assert _blobs(svc) == []  # the bytes go with the last image that uses them
    assert (root / "f").read_bytes() == b"1"  # a server booted from it may still run on it
    await svc.bootstrap()
    assert not stale.exists()  # an interrupted unpack is always removed
    assert root.exists()


# ---- the demo image -----------------------------------------------------------------------------


def _demo(images: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [i for i in images if i["name"] == "busybox"]


@pytest.mark.skipif(not busybox.BUSYBOX.is_file(), reason="busybox-static is not installed")
async def test_demo_image_is_public_and_registered_once(cloud: Any, as_ctx: Any) -> None:
    from cumulo.runtime import Cloud

    other = as_ctx(make_ctx())  # a member of some other project
    images = _demo((await other.get("/image/v2/images")).json()["images"])
    assert len(images) == 1
    demo = images[0]
    assert demo["status"] == "active" and demo["visibility"] == "public"
    assert demo["container_format"] == "docker" and demo["disk_format"] == "raw"
    assert demo["hypervisor_type"] == "container"
    admin = await cloud.services.identity.directory.list_projects({"name": "admin"})
    assert demo["owner"] == admin[0]["id"]
    assert (cloud.conf.state_dir / "images" / "demo" / "busybox.tar").is_file()

    second = Cloud(cloud.conf)
    await second.start()
    try:
        page = await second.services.images.list_images(make_ctx(roles=("admin",)), [])
        assert [i["id"] for i in _demo(page[0])] == [demo["id"]]
    finally:
        await second.stop()


async def test_missing_busybox_skips_the_demo_image(settings: Any, monkeypatch: Any, caplog: Any) -> None:
    from cumulo.runtime import Cloud

    monkeypatch.setattr(busybox, "BUSYBOX", Path("/nonexistent/busybox"))
    monkeypatch.setattr(busybox.busybox_layer, "__defaults__", (Path("/nonexistent/busybox"),))
    monkeypatch.setattr(busybox.build_busybox, "__defaults__", (Path("/nonexistent/busybox"),))
    c = Cloud(settings)
    await c.start()
    try:
        page, _ = await c.services.images.list_images(make_ctx(roles=("admin",)), [])
        assert _demo(page) == []
        assert "no busybox demo image" in caplog.text
    finally:
        await c.stop()
