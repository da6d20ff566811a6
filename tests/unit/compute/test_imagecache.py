"""The compute agent's image cache job (compute/agent/imagecache.py): it hands the live images' content
keys to a driver that collects, skips drivers that do not, and a failure costs one round only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cumulo.compute.agent import imagecache
from cumulo.compute.drivers.base import ImageCache
from cumulo.errors import DriverError


class Images:
    def __init__(self, keys: set[str]) -> None:
        self.keys = keys

    async def live_content_keys(self) -> set[str]:
        return set(self.keys)


@dataclass
class CollectingDriver:
    cached: set[str]
    calls: list[set[str]] = field(default_factory=list)
    fail: bool = False

    async def collect_image_cache(self, keep: set[str]) -> list[str]:
        self.calls.append(keep)
        if self.fail:
            raise DriverError("cannot tell which image root servers x use")
        gone = sorted(self.cached - keep)
        self.cached -= set(gone)
        return gone


@dataclass
class Node:
    driver: Any
    images: Any
    name: str = "node-1"


async def test_the_driver_gets_the_live_keys_and_removes_the_rest() -> None:
    drv = CollectingDriver(cached={"a" * 64, "b" * 64})
    assert isinstance(drv, ImageCache)
    removed = await imagecache.collect(Node(drv, Images({"a" * 64})))  # type: ignore[arg-type]
    assert removed == ["b" * 64]
    assert drv.calls == [{"a" * 64}] and drv.cached == {"a" * 64}


async def test_drivers_without_the_capability_or_agents_without_images_are_skipped() -> None:
    class Plain:
        pass

    assert await imagecache.collect(Node(Plain(), Images(set()))) == []  # type: ignore[arg-type]
    drv = CollectingDriver(cached={"a" * 64})
    assert await imagecache.collect(Node(drv, None)) == []  # type: ignore[arg-type]
    assert drv.calls == []


async def test_a_driver_that_cannot_tell_removes_nothing_and_the_job_goes_on() -> None:
    drv = CollectingDriver(cached={"a" * 64}, fail=True)
    assert await imagecache.collect(Node(drv, Images(set()))) == []  # type: ignore[arg-type]
    assert drv.cached == {"a" * 64}
