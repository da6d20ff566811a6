"""Nova response shapes of the deprecated image proxy and image metadata [images.inc,
image-metadata.inc] (max_version 2.35 and 2.38 in parameters.yaml) and os-server-password
[os-server-password.inc]."""

from __future__ import annotations

from ._common import (
    INT,
    NEXT_LINKS,
    STR,
    TS,
    UUID,
    Schema,
    array,
    enum,
    envelope,
    link,
    links,
    nullable,
    obj,
    str_map,
)

# "links": self, bookmark and an "alternate" link to Glance with "type": application/vnd.openstack.image.
_IMAGE_LINKS: Schema = array(link(enum("self", "bookmark", "alternate"), with_type=True), minItems=3, maxItems=3)
_SERVER_REF = obj({"id": UUID, "links": links("self", "bookmark")})

IMAGE_BRIEF = obj({"id": UUID, "name": nullable(STR), "links": _IMAGE_LINKS})
# "Show Image Details": server and OS-DCF:diskConfig only when the image says so.
IMAGE = obj(
    {
        "id": UUID, "name": nullable(STR), "minRam": INT, "minDisk": INT, "metadata": str_map(STR),
        "created": TS, "updated": nullable(TS), "status": enum("ACTIVE", "SAVING", "DELETED", "ERROR", "UNKNOWN"),
        "progress": enum(0, 25, 50, 100), "OS-EXT-IMG-SIZE:size": INT, "links": _IMAGE_LINKS,
        "server": _SERVER_REF, "OS-DCF:diskConfig": enum("AUTO", "MANUAL"),
    },
    optional=["server", "OS-DCF:diskConfig"],
)

RESOURCES = {
    "image": lambda v, a: envelope("image", IMAGE),
    "images": lambda v, a: envelope("images", array(IMAGE_BRIEF), images_links=NEXT_LINKS),
    "images_detail": lambda v, a: envelope("images", array(IMAGE), images_links=NEXT_LINKS),
    "image_metadata": lambda v, a: envelope("metadata", str_map(STR)),
    "image_metadata_item": lambda v, a: envelope("meta", {**str_map(STR), "minProperties": 1, "maxProperties": 1}),
    "server_password": lambda v, a: envelope("password", STR),
}
