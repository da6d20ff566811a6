"""Collecting local image copies nobody needs (issue 8, section 6): the compute agent's periodic job.

Drivers keep local copies of images: the runc driver unpacked roots (`<state>/images/rootfs/<key>`),
the QEMU driver verified bases (`<state>/qemu-base/<key>.<fmt>`). Each copy is keyed by the image
store's content key (the sha256 of the bytes). Every `image_cache_interval` seconds the agent asks
the image service for the keys of the live images and hands them to each driver that implements
`ImageCache`; the driver adds what its own servers stand on (it alone knows: records, mounts,
backing files) and removes the rest, safely against a spawn in progress (the cache's own lock plus
a lease). A server keeps its image's copy for as long as it exists, even after the image is deleted,
as Nova lets servers outlive their image. A host without the image service also keeps the image
files it downloaded (`<state>/image-cache/<key>`, image.remote.RemoteImages.collect_cache): those
of images no longer live go too, after the same lease.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from cumulo.compute.drivers.base import ImageCache
from cumulo.errors import CumuloError

if TYPE_CHECKING:
    from cumulo.compute.agent.node import Node

LOG = logging.getLogger(__name__)


async def collect(node: Node) -> list[str]:
    """One collection on the manager's node; returns what its driver removed."""
    drv = node.driver
    live_keys = getattr(node.images, "live_content_keys", None)
    downloads = getattr(node.images, "collect_cache", None)  # a remote host's downloaded copies
    if not (isinstance(drv, ImageCache) or downloads is not None) or live_keys is None:
        return []
    try:
        keep = set(await live_keys())
        removed = await drv.collect_image_cache(keep) if isinstance(drv, ImageCache) else []
        if downloads is not None:
            removed += await downloads(keep)
    except (CumuloError, OSError) as exc:
        LOG.warning("image cache of node %s: nothing collected: %s", node.name, exc)
        return []
    if removed:
        LOG.info("image cache of node %s: removed %d unused copies: %s", node.name, len(removed), ", ".join(removed))
    return removed
