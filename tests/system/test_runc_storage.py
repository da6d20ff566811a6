"""Storage of runc servers through a real `cumulo up` (issue 8: 1.6 and section 6).

- A server on m1.nano (1 GB disk) that writes 1.5 GB gets ENOSPC after about 1 GB; the host's
  filesystem grows by no more than that, and the cloud still answers.
- An unpacked image root is collected once its image is deleted and no server stands on it, never
  while one does, and after that server is deleted.

One cloud for the module (runc only), collecting image copies every half second with no minimum
age. Everything is looked up by this cloud's state dir and its servers' ids.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from _runc_util import _layer, inside, launch_runc, leftovers, runc, wait_for, wait_gone, wait_status

if TYPE_CHECKING:
    from conftest import CumuloCloud

GIB = 1 << 30
MIB = 1 << 20


@pytest.fixture(scope="module")
def cloud(cumulo_launcher: Callable[..., CumuloCloud], tmp_path_factory: pytest.TempPathFactory) -> Iterator[CumuloCloud]:
    tmp = tmp_path_factory.mktemp("runc-storage")
    c = launch_runc(cumulo_launcher, tmp, settings={"image_cache_interval": 0.5, "image_cache_min_age": 0})
    yield c
    c.close()


def host_bytes(path: Path) -> int:
    """Blocks the host filesystem holds below `path`, not crossing into mounts (a server's disk
    counts once, as its image file's blocks)."""
    dev = os.lstat(path).st_dev
    total = 0
    for dirpath, dirs, names in os.walk(path):
        dirs[:] = [d for d in dirs if os.lstat(os.path.join(dirpath, d)).st_dev == dev]
        for n in names:
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except OSError:
                continue
            if st.st_dev == dev:
                total += st.st_blocks * 512
    return total


def loop_devices_under(path: Path) -> list[str]:
    found = []
    for f in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            if f.read_text().strip().startswith(str(path)):
                found.append(f.parent.parent.name)
        except OSError:
            pass
    return found


def boot(cloud: CumuloCloud, name: str, image: str, flavor: str = "m1.nano") -> str:
    made = cloud.osc("server", "create", "--image", image, "--flavor", flavor, name)
    uuid = str(made["id"])
    wait_status(cloud, uuid, "ACTIVE")
    return uuid


def delete(cloud: CumuloCloud, uuid: str) -> None:
    cloud.osc_run("server", "delete", uuid)
    wait_gone(cloud, uuid)
    assert leftovers(cloud, uuid) == []


def test_a_full_root_disk_is_enospc_and_the_host_is_unharmed(cloud: CumuloCloud) -> None:
    uuid = boot(cloud, "filler", "busybox")
    try:
        assert len(loop_devices_under(cloud.state_dir)) == 1
        before = host_bytes(cloud.state_dir)
        done = runc(cloud, "exec", f"cumulo-{uuid}", "/bin/sh", "-c",
                    "dd if=/dev/zero of=/fill bs=1M count=1536 2>&1; echo rc=$?", timeout=300)
        assert "No space left on device" in done.stdout, done.stdout + done.stderr
        assert "rc=0" not in done.stdout
        written = int(inside(cloud, uuid, "stat -c %s /fill"))
        assert 0.8 * GIB < written <= GIB
        grown = host_bytes(cloud.state_dir) - before
        assert grown <= GIB + 16 * MIB, f"the host filesystem grew by {grown} bytes for a 1 GB disk"
        # The cloud still answers, and the server is still ACTIVE.
        t0 = time.monotonic()
        shown = cloud.osc("server", "show", uuid)
        assert shown["status"] == "ACTIVE"
        assert time.monotonic() - t0 < 30
    finally:
        delete(cloud, uuid)
    assert loop_devices_under(cloud.state_dir) == []


def tagged_image(out: Path, tag: str) -> str:
    """A busybox image with a file of its own (distinct bytes, so its own cache key); its sha256."""
    from cumulo.image.demo.busybox import busybox_layer
    from cumulo.oci.docker import write_docker_archive
    from cumulo.oci.layout import host_arch

    config = {"architecture": host_arch(), "os": "linux",
              "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sleep", "3600"]}}
    write_docker_archive(out, [busybox_layer(), _layer({"tag.txt": tag.encode()})], config, f"cumulo/{tag}:test")
    return hashlib.sha256(out.read_bytes()).hexdigest()


def test_an_unpacked_root_goes_once_no_image_and_no_server_uses_it(cloud: CumuloCloud, tmp_path: Path) -> None:
    roots = cloud.state_dir / "images" / "rootfs"
    keys = {}
    images = {}
    for tag in ("gc-idle", "gc-used"):
        keys[tag] = tagged_image(tmp_path / f"{tag}.tar", tag)
        made = cloud.osc("image", "create", "--container-format", "docker", "--disk-format", "raw",
                         "--property", "hypervisor_type=container", "--file", str(tmp_path / f"{tag}.tar"), tag)
        images[tag] = str(made["id"])
    # Both roots get unpacked: one by a server deleted at once, one by a server that stays.
    delete(cloud, boot(cloud, "gc-idle-1", images["gc-idle"]))
    user = boot(cloud, "gc-used-1", images["gc-used"])
    try:
        assert (roots / keys["gc-idle"]).is_dir() and (roots / keys["gc-used"]).is_dir()
        # Live images: kept through collections (several run while these servers boot).
        for tag in images:
            cloud.osc_run("image", "delete", images[tag])
        # The unused one goes: that is a collection after the deletes ...
        wait_for(lambda: not (roots / keys["gc-idle"]).exists(), timeout=60, what="the idle root collected")
        # ... which kept the one a server stands on; the server still reads its root.
        assert (roots / keys["gc-used"] / "rootfs" / "tag.txt").is_file()
        assert inside(cloud, user, "cat /tag.txt") == "gc-used"
    finally:
        delete(cloud, user)
    wait_for(lambda: not (roots / keys["gc-used"]).exists(), timeout=60, what="the used root collected")
    # The demo image lives: its root (if unpacked) is never collected.
    assert any(roots.iterdir()), "the live demo image's root was collected"
