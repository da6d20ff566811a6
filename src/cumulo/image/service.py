"""The image service: one object over image records, the data path and compute's internal backend.

Glance's images over the DB and the content-addressed store, in three facets, each its own module:

- `records`: image records and their visibility (create, list, show, update, delete, tags);
- `data`: the data path (upload, check, activate, download) and the store's crash reconcile;
- `internal`: the internal backend compute uses (no tenant visibility rules).

Members (`members`), imports (`imports`) and the demo images (`demo`, seeded by `runtime`) use it.
"""

from __future__ import annotations

from cumulo.image.data import ImageData
from cumulo.image.internal import InternalImages


class ImageService(ImageData, InternalImages):
    """Glance's images: records and visibility, the data path, and the internal backend."""
