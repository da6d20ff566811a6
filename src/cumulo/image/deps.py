"""What the image API reaches: its app factory's dependencies and the handlers' typed accessor.

The image service (records, data path and store), handed over by the family's app factory; handlers
read it back with `services_of(request)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import Request

from cumulo.web.http import deps_of

if TYPE_CHECKING:
    from cumulo.image.service import ImageService


@dataclass(frozen=True)
class ImageDeps:
    images: ImageService


def services_of(request: Request) -> ImageDeps:
    """The dependencies the image app serving this request was built with."""
    return deps_of(request, ImageDeps)
