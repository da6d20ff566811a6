"""The runc driver's image cache collection (issue 8, section 6): an unpacked root goes once no live
image and no server uses it, never while a server stands on it, never under a spawn in progress."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_runc_driver import RUNC_MISSING, _busybox_image, assert_nothing_left, runc_exec, spec_for

from cumulo import conf as conf_mod
from cumulo.compute.drivers import load_driver
from cumulo.compute.drivers.base import ImageCache, ImageSpec
from cumulo.compute.drivers.runc import RuncDriver

pytestmark = pytest.mark.skipif(bool(RUNC_MISSING), reason=RUNC_MISSING or "runc present")


def stored_image(tmp: Path) -> ImageSpec:
    """The busybox image as the image store keeps it: a file named by the sha256 of its bytes."""
    src = Path(_busybox_image(tmp).path)
    key = hashlib.sha256(src.read_bytes()).hexdigest()
    dst = tmp / "store" / key
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return ImageSpec(id="img-1", path=str(dst), disk_format="raw", container_format="docker")


async def make_driver(tmp_path: Path, min_age: float) -> RuncDriver:
    settings = conf_mod.load(env={}, state_dir=tmp_path / "state").replace(
        extra={"runc_stop_grace": 0.5}, image_cache_min_age=min_age)
    drv = load_driver("runc", settings, "runc-host", local=True)
    assert isinstance(drv, RuncDriver) and isinstance(drv, ImageCache)
    await drv.init_host()
    return drv


@pytest.fixture
async def drv(tmp_path: Path) -> AsyncIterator[RuncDriver]:
    driver = await make_driver(tmp_path, 0.0)
    yield driver
    for st in await driver.list_instances():
        await driver.destroy(st.uuid)
    assert_nothing_left(driver, tmp_path)


async def test_a_root_goes_once_no_image_and_no_server_uses_it(drv: RuncDriver, tmp_path: Path) -> None:
    image = stored_image(tmp_path)
    key = Path(image.path).name
    root = drv.images / "rootfs" / key
    spec = dataclasses.replace(spec_for(tmp_path, "user"), image=image)
    await drv.spawn(spec)
    assert (root / "rootfs" / "bin").is_dir()
    # The image lives: kept.
    assert await drv.collect_image_cache({key}) == []
    # The image is deleted, a server stands on it: kept, and the server still runs and reads it.
    assert await drv.collect_image_cache(set()) == []
    assert root.is_dir()
    assert runc_exec(drv, spec.uuid, "ls", "/bin/busybox") == "/bin/busybox"
    # Even a server whose overlay is not mounted (after a host reboot) keeps it: its record says.
    await drv.power_off(spec.uuid)
    assert await drv.collect_image_cache(set()) == []
    await drv.power_on(spec)
    # The server goes: so does the root.
    await drv.destroy(spec.uuid)
    assert await drv.collect_image_cache(set()) == [key]
    assert not root.exists()
    # A later spawn of a live image unpacks it again.
    again = dataclasses.replace(spec_for(tmp_path, "again"), image=image)
    await drv.spawn(again)
    assert root.is_dir()
    await drv.destroy(again.uuid)


async def test_a_root_just_handed_to_a_spawn_is_kept(tmp_path: Path) -> None:
    drv = await make_driver(tmp_path, 600.0)
    image = stored_image(tmp_path)
    key = Path(image.path).name
    spec = dataclasses.replace(spec_for(tmp_path, "leased"), image=image)
    await drv.spawn(spec)
    await drv.destroy(spec.uuid)
    # No server, no live image, but handed out moments ago (a spawn may be about to mount it).
    assert await drv.collect_image_cache(set()) == []
    assert (drv.images / "rootfs" / key).is_dir()
    assert_nothing_left(drv, tmp_path)


async def test_collection_racing_spawns_never_pulls_a_root_from_under_one(tmp_path: Path) -> None:
    """With the default min age, a collection running between a spawn's unpack and its mount (the
    window no record or mount covers yet) leaves the root alone: the lease holds it."""
    drv = await make_driver(tmp_path, conf_mod.Settings().image_cache_min_age)
    image = stored_image(tmp_path)
    key = Path(image.path).name
    specs = [dataclasses.replace(spec_for(tmp_path, f"race{i}"), image=image) for i in range(3)]

    async def collect_often() -> None:
        for _ in range(50):
            assert await drv.collect_image_cache(set()) == []
            await asyncio.sleep(0)

    await asyncio.gather(collect_often(), *(drv.spawn(s) for s in specs))
    for s in specs:
        assert runc_exec(drv, s.uuid, "ls", "/bin/busybox") == "/bin/busybox"
    for s in specs:
        await drv.destroy(s.uuid)
    assert (drv.images / "rootfs" / key).is_dir()  # handed out moments ago: still leased
    assert_nothing_left(drv, tmp_path)
