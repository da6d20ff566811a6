"""Collecting the QEMU driver's verified bases (issue 8, section 6), with real qemu-img files and
no guest: a base goes once no live image and no server disk uses it, never while a disk backs onto
it, and never right after a spawn was handed it."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from cumulo.compute.drivers.base import ImageSpec
from cumulo.compute.drivers.qemu import disks

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img is not installed")


def stored_qcow2(tmp: Path, tag: str) -> ImageSpec:
    """A small qcow2 image as the image store keeps it: named by the sha256 of its bytes."""
    made = tmp / f"{tag}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(made), "64M"], check=True)  # noqa: S603, S607
    with open(made, "ab") as fh:  # distinct bytes per tag (qcow2 ignores data past its tables)
        fh.write(tag.encode())
    key = hashlib.sha256(made.read_bytes()).hexdigest()
    dst = tmp / "store" / key
    dst.parent.mkdir(parents=True, exist_ok=True)
    made.rename(dst)
    return ImageSpec(id=f"img-{tag}", path=str(dst), disk_format="qcow2", container_format="bare")


async def test_a_base_goes_once_no_image_and_no_disk_uses_it(tmp_path: Path) -> None:
    base_dir, servers = tmp_path / "qemu-base", tmp_path / "qemu"
    used_img, idle_img = stored_qcow2(tmp_path, "used"), stored_qcow2(tmp_path, "idle")
    used_key, idle_key = Path(used_img.path).name, Path(idle_img.path).name
    base = await disks.cached_base(base_dir, used_img)
    await disks.cached_base(base_dir, idle_img)
    (servers / "srv-1").mkdir(parents=True)
    await disks.create_overlay(servers / "srv-1" / "disk.qcow2", base, 1)
    # Just handed out: both stay whatever keep says.
    assert await disks.collect_bases(base_dir, servers, set()) == []
    # Live images stay; a deleted image a server disk backs onto stays.
    assert await disks.collect_bases(base_dir, servers, {used_key, idle_key}, grace=0) == []
    assert await disks.collect_bases(base_dir, servers, {idle_key}, grace=0) == []
    assert base[0].is_file()
    # A deleted image nobody uses goes, with its record.
    assert await disks.collect_bases(base_dir, servers, {used_key}, grace=0) == [f"{idle_key}.qcow2"]
    assert sorted(p.name for p in base_dir.iterdir()) == [f"{used_key}.qcow2", f"{used_key}.qcow2.json"]
    # The server goes: so does its base once its image is gone too.
    shutil.rmtree(servers / "srv-1")
    assert await disks.collect_bases(base_dir, servers, set(), grace=0) == [f"{used_key}.qcow2"]
    assert list(base_dir.iterdir()) == []
    # A later spawn of a live image verifies and links it again.
    again = await disks.cached_base(base_dir, idle_img)
    assert again[0].is_file()
