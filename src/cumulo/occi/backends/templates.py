"""The template mixins that come from the cloud's data (GFD.224 §3.5): one os_tpl mixin per image the
caller sees (containers and VMs alike) and one resource_tpl mixin per flavor, the way ooi and
OCCI-OS name them.

- os_tpl: scheme http://schemas.openstack.org/template/os#, term = the image id, title
  "<image name> (container|vm)", and the attribute `cumulo.compute.instance_type` (immutable,
  default "container" or "vm") so a client can filter the two kinds of image. Only active images
  are templates (a snapshot still uploading is not yet one). Location /os_tpl/<image id>/.
- resource_tpl: scheme http://schemas.openstack.org/template/resource#, term = the flavor id,
  title = the flavor name, attributes occi.compute.cores and occi.compute.memory (GiB) with the
  flavor's values as defaults. Location /resource_tpl/<term>/. A flavor id that is not an OCCI
  term (Text Rendering: letters, digits, "-" and "_") gets the term "flavor-<sha1 of the id>".

Both go through the services with the caller's context: the image service's visibility rules and
the flavors a project may use (public ones and those granted to it).
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cumulo import errors
from cumulo.compute.service import flavors as flavor_db
from cumulo.context import RequestContext
from cumulo.occi.model import INFRA, Attribute, Mixin

if TYPE_CHECKING:
    from cumulo.db import Database
    from cumulo.image.service import ImageService
    from cumulo.occi.deps import OcciServices

OS_SCHEME = "http://schemas.openstack.org/template/os#"
RESOURCE_SCHEME = "http://schemas.openstack.org/template/resource#"
OS_TPL = INFRA + "os_tpl"
RESOURCE_TPL = INFRA + "resource_tpl"
COMPUTE = INFRA + "compute"
INSTANCE_TYPE = "cumulo.compute.instance_type"
_TERM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_CONTAINER_FORMATS = frozenset({"docker", "oci"})
_VM_TYPES = frozenset({"qemu", "kvm"})
_PAGE = 1000


def instance_type(image: dict[str, Any]) -> str:
    """"container" or "vm": the image's hypervisor_type when it names one, else its formats (as
    the scheduler's ImagePropertiesFilter decides where an image can run)."""
    hv = str(image.get("hypervisor_type") or image.get("img_hv_type") or "").strip().lower()
    if hv:
        return "vm" if hv in _VM_TYPES else "container" if hv == "container" else hv
    return "container" if str(image.get("container_format") or "").lower() in _CONTAINER_FORMATS else "vm"


def os_tpl_of(image: dict[str, Any]) -> Mixin:
    kind = instance_type(image)
    return Mixin(
        scheme=OS_SCHEME,
        term=str(image["id"]),
        title=f"{image.get('name') or image['id']} ({kind})",
        attributes=(
            Attribute(INSTANCE_TYPE, "string", mutable=False, default=kind,
                      description="where the image runs: container (runc) or vm (QEMU)"),
        ),
        depends=(OS_TPL,),
        applies=(COMPUTE,),
        location=f"/os_tpl/{image['id']}/",
    )


def flavor_term(flavorid: str) -> str:
    return flavorid if _TERM.match(flavorid) else "flavor-" + hashlib.sha1(flavorid.encode()).hexdigest()


def memory_gib(memory_mb: Any) -> float:
    return round(int(memory_mb or 0) / 1024, 3)


def resource_tpl_of(flavor: dict[str, Any]) -> Mixin:
    term = flavor_term(str(flavor["flavorid"]))
    return Mixin(
        scheme=RESOURCE_SCHEME,
        term=term,
        title=str(flavor.get("name") or term),
        attributes=(
            Attribute("occi.compute.cores", "integer", mutable=False, default=int(flavor["vcpus"]),
                      description="Number of virtual CPU cores of this template"),
            Attribute("occi.compute.memory", "number", mutable=False, default=memory_gib(flavor["memory_mb"]),
                      description="Memory of this template, in GiB"),
        ),
        depends=(RESOURCE_TPL,),
        applies=(COMPUTE,),
        location=f"/resource_tpl/{term}/",
    )


async def visible_images(images: ImageService, ctx: RequestContext) -> list[dict[str, Any]]:
    """Every active image the caller sees (Glance's visibility: public, shared, community, own)."""
    out: list[dict[str, Any]] = []
    marker: str | None = None
    while True:
        params = [("status", "active"), ("limit", str(_PAGE))] + ([("marker", marker)] if marker else [])
        page, marker = await images.list_images(ctx, params)
        out.extend(page)
        if marker is None:
            return out


async def visible_flavors(db: Database, ctx: RequestContext) -> list[dict[str, Any]]:
    """The flavors the caller's project may boot (enabled public ones and those granted to it),
    smallest first."""
    async with db.read() as conn:
        rows = await flavor_db.list_rows(
            conn, ctx, is_public=None if not ctx.is_admin else True, min_ram=None, min_disk=None,
            sort_key="memory_mb", sort_dir="asc", limit=10_000, marker=None,
        )
    return [r for r in rows if not r.get("disabled")]


# Images read by `lookup` for the request that is validating its mixins, so that the compute create
# of the same request (`image_for`) does not read them again: keyed by (request id, image id), so
# only the same request of the same caller ever finds one; a few entries, the oldest dropped.
_SEEN: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
_SEEN_MAX = 32
_FLAVORS: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()  # request id -> the flavors its lookup read


def _remember(ctx: RequestContext, image: dict[str, Any]) -> None:
    if ctx.request_id:
        _SEEN[(ctx.request_id, str(image["id"]))] = image
        while len(_SEEN) > _SEEN_MAX:
            _SEEN.popitem(last=False)


class OsTemplates:
    """MixinSource: one os_tpl mixin per image the caller sees."""

    def __init__(self, images: ImageService) -> None:
        self.images = images

    async def mixins(self, ctx: RequestContext) -> list[Mixin]:
        return [os_tpl_of(image) for image in await visible_images(self.images, ctx)]

    async def lookup(self, ctx: RequestContext, mixin_ids: Sequence[str]) -> list[Mixin]:
        """The os_tpl mixins among `mixin_ids` the caller sees (one image read each, not a listing)."""
        out = []
        for mid in dict.fromkeys(mixin_ids):
            if not mid.startswith(OS_SCHEME):
                continue
            try:
                image = await self.images.get(ctx, mid.removeprefix(OS_SCHEME))
            except (errors.NotFound, errors.Invalid):
                continue
            if image.get("status") == "active":
                out.append(os_tpl_of(image))
                _remember(ctx, image)
        return out

    async def image_for(self, ctx: RequestContext, mixin_id: str) -> dict[str, Any]:
        """The image an os_tpl mixin id names; Invalid (400) naming the mixin when the caller does
        not see it or it is not active."""
        term = mixin_id.removeprefix(OS_SCHEME)
        seen = _SEEN.pop((ctx.request_id, term), None) if ctx.request_id else None
        if seen is not None:
            return seen  # read (active, visible to this caller) by this same request's lookup
        try:
            image = await self.images.get(ctx, term)
        except errors.NotFound:
            raise errors.Invalid(f"os_tpl mixin {mixin_id} does not exist") from None
        if image.get("status") != "active":
            raise errors.Invalid(f"os_tpl mixin {mixin_id}: image {term} is not active")
        return image


class ResourceTemplates:
    """MixinSource: one resource_tpl mixin per flavor the caller may use."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def mixins(self, ctx: RequestContext) -> list[Mixin]:
        return [resource_tpl_of(f) for f in await visible_flavors(self.db, ctx)]

    async def lookup(self, ctx: RequestContext, mixin_ids: Sequence[str]) -> list[Mixin]:
        """The resource_tpl mixins among `mixin_ids` the caller may use."""
        wanted = {m for m in mixin_ids if m.startswith(RESOURCE_SCHEME)}
        if not wanted:
            return []
        flavors = await visible_flavors(self.db, ctx)
        if ctx.request_id:  # for this request's compute create (flavor_for), as _SEEN does for images
            _FLAVORS[ctx.request_id] = flavors
            while len(_FLAVORS) > _SEEN_MAX:
                _FLAVORS.popitem(last=False)
        return [m for m in map(resource_tpl_of, flavors) if m.id in wanted]

    async def flavors(self, ctx: RequestContext) -> list[dict[str, Any]]:
        return await visible_flavors(self.db, ctx)

    async def flavor_for(self, ctx: RequestContext, mixin_id: str) -> dict[str, Any]:
        """The flavor a resource_tpl mixin id names; Invalid (400) naming the mixin otherwise."""
        term = mixin_id.removeprefix(RESOURCE_SCHEME)
        seen = _FLAVORS.pop(ctx.request_id, None) if ctx.request_id else None
        for flavor in seen if seen is not None else await visible_flavors(self.db, ctx):
            if flavor_term(str(flavor["flavorid"])) == term:
                return flavor
        raise errors.Invalid(f"resource_tpl mixin {mixin_id} does not exist")


def make(svc: OcciServices) -> list[OsTemplates | ResourceTemplates]:
    """The provider's template mixin sources: os_tpl (images) and resource_tpl (flavors)."""
    return [OsTemplates(svc.images), ResourceTemplates(svc.db)]
