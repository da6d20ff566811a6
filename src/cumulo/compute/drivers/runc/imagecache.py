"""The image cache of a runc node: unpacked image roots (`<state>/images/rootfs/<key>`) go once no
live image and no server of this node stands on them."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cumulo.compute.drivers.files import read_json
from cumulo.compute.drivers.local import RECORD
from cumulo.compute.drivers.runc import overlay
from cumulo.compute.drivers.runc.core import RuncCore
from cumulo.errors import DriverError
from cumulo.oci.unpack import collect_unpacked


def _roots_in_use(instances: Path) -> tuple[set[str], list[str]]:
    """Cache keys of the image roots the servers of this node stand on (from their records, else
    their mounted overlays), and the servers for which neither tells (blocking)."""
    used: set[str] = set()
    unknown: list[str] = []
    if not instances.is_dir():
        return used, unknown
    for idir in instances.iterdir():
        if not idir.is_dir():
            continue
        if not (idir / RECORD).exists():
            continue  # a spawn under way (its root is leased) or one a crash cut short (an orphan)
        key = (read_json(idir / RECORD) or {}).get("rootfs_key")
        if not key:
            lower = overlay.lower_of_sync(idir / "rootfs")
            key = Path(lower).parent.name if lower else None
        if key:
            used.add(str(key))
        else:
            unknown.append(idir.name)
    return used, unknown


class ImageCache(RuncCore):
    async def collect_image_cache(self, keep: set[str]) -> list[str]:
        """Remove unpacked image roots that no live image (`keep`) and no server of this node uses.
        A server whose root cannot be told (a record older than `rootfs_key`, not mounted) makes it
        remove nothing."""
        used, unknown = await asyncio.to_thread(_roots_in_use, self.dir)
        if unknown:
            raise DriverError(f"cannot tell which image root servers {', '.join(sorted(unknown))} use; "
                              "no image root is collected")
        return await collect_unpacked(self.images, keep | used, grace=self.conf.image_cache_min_age)
