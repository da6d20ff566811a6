"""The format inspector of image uploads (Glance's require_image_format_match and safety checks):
a qcow2 naming a backing or external data file, or data that is not its disk_format, is refused
with Glance's 415 while it streams in; the image goes back to queued and no byte of it is kept."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from _disk_images import QCOW2_INCOMPAT_DATA_FILE, qcow2_bytes, qcow2_header

from cumulo.image.inspector import INSPECT_BYTES, BadImageData, detect, inspect
from cumulo.image.service import ImageService

OCTET = {"Content-Type": "application/octet-stream"}
SHADOW = qcow2_header(backing_file=b"/etc/shadow")
DATA_FILE = qcow2_header(incompatible=QCOW2_INCOMPAT_DATA_FILE)
needs_qemu_img = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img is not installed")


def _qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True, timeout=60)  # noqa: S603, S607


def _iso_head() -> bytes:
    pvd = bytearray(2048)
    pvd[0], pvd[1:6] = 1, b"CD001"
    struct.pack_into("<L", pvd, 80, 100)  # 100 blocks
    struct.pack_into("<H", pvd, 128, 2048)
    return bytes(32 * 1024) + bytes(pvd)


# ---- the inspector alone --------------------------------------------------------------------


@pytest.mark.parametrize(("head", "problem"), [
    (SHADOW, "Image failed safety checks (qcow2): it names a backing file"),
    (qcow2_header(version=2, backing_file=b"/dev/sda"), "Image failed safety checks (qcow2): it names a backing file"),
    (DATA_FILE, "Image failed safety checks (qcow2): it names an external data file"),
    (qcow2_header(incompatible=1 << 4), "Image failed safety checks (qcow2): it has unknown incompatible features"),
    (qcow2_header(version=1), "Image failed safety checks (qcow2): its qcow2 version 1 is not supported"),
    (b"QED\x00".ljust(512, b"\0"), "Image disk_format qcow2 does not match stream data qed"),
    (b"plain bytes" * 100, "Image disk_format qcow2 does not match stream data raw"),
])
def test_unsafe_or_mismatched_qcow2_is_refused(head: bytes, problem: str) -> None:
    verdict = inspect(head, len(head), "qcow2", "bare")
    assert verdict.problem is not None and verdict.problem.startswith(problem), verdict


def test_a_clean_qcow2_passes_with_its_virtual_size() -> None:
    verdict = inspect(qcow2_bytes(b"x" * 1000, virtual_size=5 << 30), 1512, "qcow2", "bare")
    assert (verdict.detected, verdict.virtual_size, verdict.problem) == ("qcow2", 5 << 30, None)


def test_declared_raw_takes_anything_safe() -> None:
    """Glance reads a declared raw as raw (a clean qcow2 inside is only bytes to it: its virtual size
    is the file size), but still runs the detected format's safety checks."""
    assert inspect(qcow2_bytes(), 512, "raw", "bare").problem is None
    assert inspect(qcow2_bytes(), 512, "raw", "bare").virtual_size == 512
    assert "backing file" in str(inspect(SHADOW, 512, "raw", "bare").problem)
    assert "external data file" in str(inspect(DATA_FILE, 512, "raw", "bare").problem)
    assert inspect(b"\x01" * 4096, 4096, "raw", "bare").problem is None


def test_a_qcow2_is_not_an_iso_nor_an_ami() -> None:
    assert inspect(qcow2_bytes(), 512, "iso", "bare").problem == "Image disk_format iso does not match stream data qcow2"
    assert inspect(qcow2_bytes(), 512, "ami", "bare").problem == "Image disk_format ami does not match stream data qcow2"
    assert inspect(b"kernel" * 100, 600, "aki", "bare").problem is None  # no inspector for aki: unrecognised is fine
    iso = _iso_head()
    assert inspect(iso, len(iso), "iso", "bare") == inspect(iso, len(iso), "iso", "bare")
    assert inspect(iso, len(iso), "iso", "bare").virtual_size == 100 * 2048
    assert inspect(iso, len(iso), "qcow2", "bare").problem == "Image disk_format qcow2 does not match stream data iso"


def test_one_header_hidden_in_another_is_refused() -> None:
    """A qcow2 that is also an MBR disk (0x55AA at 510): two formats at once, whatever is declared."""
    both = bytearray(qcow2_bytes())
    both[510:512] = b"\x55\xaa"
    for disk_format in ("qcow2", "raw"):
        assert inspect(bytes(both), 512, disk_format, "bare").problem == "Multiple formats detected: qcow2,gpt"


def test_vmdk_descriptor_naming_a_host_file_is_refused() -> None:
    desc = b'# Disk DescriptorFile\nversion=1\ncreateType="monolithicFlat"\nRW 2048 FLAT "/etc/shadow" 0\n'
    assert detect(desc.ljust(512, b" ")) == ["vmdk"]
    assert "subformat 'monolithicflat'" in str(inspect(desc.ljust(512, b" "), 512, "raw", "bare").problem)
    sparse = bytearray(struct.pack("<4sIIQQQQ", b"KDMV", 1, 0, 2048, 128, 1, 1).ljust(512, b"\0"))
    sparse += b'createType="monolithicSparse"\nRW 2048 SPARSE "../../etc/shadow"\n'.ljust(512, b"\0")
    assert "extent names a path" in str(inspect(bytes(sparse), len(sparse), "vmdk", "bare").problem)


def test_non_bare_images_are_only_held_to_qcow2_safety() -> None:
    """Glance inspects bare images only; Cumulo still refuses an unsafe qcow2 in any disk container."""
    assert inspect(b"\x7fELF" + bytes(600), 604, "aki", "aki").problem is None
    assert inspect(qcow2_bytes(), 512, "vmdk", "ovf").problem is None
    assert "backing file" in str(inspect(SHADOW, 512, "qcow2", "ovf").problem)


@needs_qemu_img
def test_qemu_img_made_images(tmp_path: Path) -> None:
    """Images made by qemu-img itself: a clean one passes, a backing file or an external data file does not."""
    clean, backed, data = tmp_path / "clean.qcow2", tmp_path / "backed.qcow2", tmp_path / "data.qcow2"
    _qemu_img("create", "-q", "-f", "qcow2", str(clean), "64M")
    _qemu_img("create", "-q", "-f", "qcow2", "-u", "-b", "/etc/shadow", "-F", "raw", str(backed), "64M")
    _qemu_img("create", "-q", "-f", "qcow2", "-o", f"data_file={tmp_path / 'data.raw'}", str(data), "64M")
    for path, problem in ((clean, None), (backed, "it names a backing file"), (data, "it names an external data file")):
        head = path.read_bytes()[:INSPECT_BYTES]
        verdict = inspect(head, path.stat().st_size, "qcow2", "bare")
        assert (verdict.problem or "").endswith(problem or ""), (path.name, verdict)
        assert (verdict.problem is None) == (problem is None)
    assert inspect(clean.read_bytes()[:INSPECT_BYTES], clean.stat().st_size, "qcow2", "bare").virtual_size == 64 << 20


# ---- through the API ------------------------------------------------------------------------


async def _create(c: httpx.AsyncClient, disk_format: str, container_format: str = "bare") -> str:
    r = await c.post("/v2/images", json={"name": "x", "disk_format": disk_format, "container_format": container_format})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _no_bytes_kept(svc: ImageService) -> None:
    assert [p.name for p in svc.store.tmp_dir.iterdir()] == []
    assert not any(p.is_file() for p in svc.store.data_dir.rglob("*"))


@pytest.mark.parametrize(("data", "disk_format", "reason"), [
    (SHADOW + b"\0" * 4096, "qcow2", "it names a backing file"),
    (DATA_FILE, "qcow2", "it names an external data file"),
    (SHADOW, "raw", "it names a backing file"),
    (qcow2_bytes(), "iso", "Image disk_format iso does not match stream data qcow2"),
    (b"raw disk bytes" * 100, "qcow2", "Image disk_format qcow2 does not match stream data raw"),
])
async def test_put_file_refuses_with_415_and_keeps_nothing(
    alice: httpx.AsyncClient, svc: ImageService, data: bytes, disk_format: str, reason: str
) -> None:
    image_id = await _create(alice, disk_format)
    r = await alice.put(f"/v2/images/{image_id}/file", content=data, headers=OCTET)
    assert r.status_code == 415, r.text
    assert r.json()["code"] == "415 Unsupported Media Type" and reason in r.json()["message"]
    shown = (await alice.get(f"/v2/images/{image_id}")).json()
    assert (shown["status"], shown["size"], shown["checksum"]) == ("queued", None, None)
    _no_bytes_kept(svc)
    assert (await alice.get(f"/v2/images/{image_id}/file")).status_code == 204  # no data
    # The image is queued again: good data may follow.
    good = qcow2_bytes(b"ok") if disk_format == "qcow2" else (b"\0" * 1024 if disk_format == "raw" else _iso_head())
    assert (await alice.put(f"/v2/images/{image_id}/file", content=good, headers=OCTET)).status_code == 204
    assert (await alice.get(f"/v2/images/{image_id}")).json()["status"] == "active"


async def test_a_large_unsafe_upload_is_refused_once_its_head_arrived(alice: httpx.AsyncClient, svc: ImageService) -> None:
    """The head is inspected as it streams: from then on nothing more is written, the body is drained."""
    image_id = await _create(alice, "qcow2")
    sent: list[int] = []
    tmp_sizes: list[int] = []

    async def body() -> Any:
        yield SHADOW
        for _ in range(3):
            sent.append(1)
            yield b"\0" * (1 << 20)
            tmp_sizes.append(sum(p.stat().st_size for p in svc.store.tmp_dir.iterdir()))

    r = await alice.put(f"/v2/images/{image_id}/file", content=body(), headers=OCTET)
    assert r.status_code == 415 and "backing file" in r.json()["message"]
    assert len(sent) == 3 and tmp_sizes[-1] == 0  # drained, not stored
    assert (await alice.get(f"/v2/images/{image_id}")).json()["status"] == "queued"
    _no_bytes_kept(svc)


async def test_clean_qcow2_and_qcow2_declared_raw_go_active(alice: httpx.AsyncClient) -> None:
    for disk_format, data, vsize in (("qcow2", qcow2_bytes(b"z" * 2 * INSPECT_BYTES, 8 << 30), 8 << 30),
                                     ("raw", qcow2_bytes(b"z" * 100), 612)):
        image_id = await _create(alice, disk_format)
        r = await alice.put(f"/v2/images/{image_id}/file", content=data, headers=OCTET)
        assert r.status_code == 204, r.text
        shown = (await alice.get(f"/v2/images/{image_id}")).json()
        assert (shown["status"], shown["virtual_size"], shown["size"]) == ("active", vsize, len(data))


async def test_stage_refuses_an_unsafe_qcow2(alice: httpx.AsyncClient, svc: ImageService) -> None:
    """glance-direct: the staged bytes are inspected as they stream in (see docs/api-coverage.md)."""
    image_id = await _create(alice, "qcow2")
    r = await alice.put(f"/v2/images/{image_id}/stage", content=DATA_FILE, headers=OCTET)
    assert r.status_code == 415 and "external data file" in r.json()["message"]
    assert (await alice.get(f"/v2/images/{image_id}")).json()["status"] == "queued"
    _no_bytes_kept(svc)
    r = await alice.post(f"/v2/images/{image_id}/import", json={"method": {"name": "glance-direct"}})
    assert r.status_code == 409  # nothing staged
    assert (await alice.put(f"/v2/images/{image_id}/stage", content=qcow2_bytes(), headers=OCTET)).status_code == 204
    r = await alice.post(f"/v2/images/{image_id}/import", json={"method": {"name": "glance-direct"}})
    assert r.status_code == 202
    assert (await alice.get(f"/v2/images/{image_id}")).json()["status"] == "active"


async def test_upload_from_path_is_inspected_too(svc: ImageService, ctx: Any, tmp_path: Path) -> None:
    """Snapshots and volume uploads come in as local files: the same inspection applies."""
    image = await svc.create_snapshot_record(ctx("project-a"), "snap", {}, "qcow2", "bare")
    source = tmp_path / "disk.qcow2"
    source.write_bytes(SHADOW)
    with pytest.raises(BadImageData, match="backing file"):
        await svc.upload_from_path(image["id"], str(source))
    assert (await svc.get_internal(image["id"]) or {})["status"] == "queued"
    _no_bytes_kept(svc)
