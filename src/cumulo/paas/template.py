"""Template images: a scalable tier's first configured node, snapshotted, so new nodes skip install.

Pegasus called `ImageScalability` after a tier's first replica was installed, but its OpenStack client's
`createImage` returned null: every new node was a full install. Cumulo takes the image for real.

When (`wants_template`, which the deploy plan asks): the tier is scalable (max > min, or it has a scaling policy:
Pegasus's "scalable"), the `templates` setting is "on" and no product of the tier says `template=no`
in its metadata. The deploy plan then holds one "template:<tier>" step after the first node's
products started (it should also wait for the reconfigures of that node: a snapshot pauses a
container, and an exec into a paused container is refused); a scale of a tier that has none yet
plans it after its first new node (engine/plan_scale.py).

The step (`take_template`, kind "template"), idempotent under resume:
1. a `paas_templates` row already active for the tier, with its image active -> nothing to do; a
   row left "stale" or "error", or whose image is gone (deleted by a rollback), first has its old
   image deleted, so the new one can take the name;
2. the ledger: an image of the deterministic name `paas-<inst8>-<tier>-template` that an earlier
   attempt made is adopted; else `sync` in the node (best effort: a runc snapshot reads the host's
   overlay, a VM's disk needs the guest's cache flushed), then `ComputeService.snapshot` with
   properties {paas_instance, paas_tier}, recorded in the ledger (type "image": intend, created), so a
   rollback or the instance's destroy deletes it;
3. wait until the image service says the image is active (poll with backoff, deadline
   conf.paas.boot_timeout). A snapshot refused (image quota, a driver without snapshots) or failed
   ("killed"/"deleted"/gone, or past the deadline) does not fail the step: the template row says
   "error", the failed image is deleted, the step's output says why, and new nodes get fresh
   installs until a later scale takes a template (a speed-up must not undo a working deploy);
4. the `paas_templates` row: status active, image_id, source_node, app_generation = the newest
   application generation of the instance when the snapshot was taken (its own counter, or the
   newest of its applications' rows).

What the image holds. runc: one flattened layer of the container's merged root (image layers plus
everything the recipes wrote, so /opt/paas with the products' files), the original image config
(command, env); processes are not kept: "start" runs on the new node. The first boot from a template
image pays its unpack into the host's image cache. tiny VM: the qcow2 of its disks, with the
persistent root the recipes wrote to.

Applications: the template row keeps the application generation it contains. A node booted from it
gets the applications of a newer generation deployed (the scale plan's "artifact:" steps,
cumulo.paas.engine.plan_scale). An application taken away after the template was taken stays in
the image's files: undeploying one should `mark_stale` the tiers holding its product, which makes
the next scale take a new template (the engine's undeploy does not call it yet).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo import errors
from cumulo.db import utcnow
from cumulo.paas import models
from cumulo.paas.engine.base import StepFailed, StepRun, action

log = logging.getLogger(__name__)

# The template row's states (paas_templates.status).
CREATING = "creating"
ACTIVE = "active"
ERROR = "error"
STALE = "stale"  # the image no longer matches the instance (e.g. an application was taken away)
DELETED = "deleted"

IMAGE_TYPE = "image"  # the ledger type
_SYNC = ["/bin/sh", "-c", "if command -v sync >/dev/null 2>&1; then sync; else busybox sync; fi"]
_TEMPLATE_NS = uuid.UUID("6f1d0c54-5a8e-4b87-9d7b-1b0e5a2f3c11")


def template_id(instance_id: str, tier: str) -> str:
    """The `paas_templates` row id: one row per (instance, tier), the same on every attempt."""
    return str(uuid.uuid5(_TEMPLATE_NS, f"{instance_id}/{tier}"))


def image_name(instance_id: str, tier: str) -> str:
    """The template image's deterministic name (OWNERS: `paas-<inst8>-<tier>-template`; the same
    as engine/plan.py `template_name`)."""
    return f"paas-{instance_id.replace('-', '')[:8]}-{tier}-template"


def _metadata(product: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    release = product.get("release") or {}
    return list(release.get("metadata") or product.get("metadata") or [])


def template_forbidden(tier: Mapping[str, Any]) -> str | None:
    """The product of the tier whose metadata says `template=no`, else None."""
    for product in tier.get("products") or []:
        for meta in _metadata(product):
            if meta.get("key") == "template" and str(meta.get("value") or "").strip().lower() == "no":
                return str(product.get("name"))
    return None


def is_scalable(tier: Mapping[str, Any]) -> bool:
    """Pegasus's "scalable" tier (max > min), or one with autoscaling policies."""
    return int(tier.get("max") or 0) > int(tier.get("min") or 0) or bool(tier.get("policies"))


def wants_template(tier: Mapping[str, Any], setting: str = "on") -> bool:
    """Whether `tier` gets a template image: templates "on", scalable, and no product forbids it."""
    return str(setting).strip().lower() == "on" and is_scalable(tier) and template_forbidden(tier) is None


def usable_template(template: Mapping[str, Any] | None, tier: Mapping[str, Any], *, use_template: bool,
                    setting: str = "on", resources: Sequence[Mapping[str, Any]] | None = None) -> str | None:
    """The image id a new node of `tier` boots from, or None for a fresh install. With the
    instance's ledger (`resources`), the image must also be live there: a rollback that deleted it
    leaves the template row as it was."""
    if not use_template or template is None or str(setting).strip().lower() != "on":
        return None
    if template_forbidden(tier) is not None:
        return None
    if template.get("status") != ACTIVE or not template.get("image_id"):
        return None
    image_id = str(template["image_id"])
    if resources is not None and not any(
        r.get("type") == IMAGE_TYPE and r.get("resource_id") == image_id and r.get("state") == "created"
        for r in resources
    ):
        return None
    return image_id


async def mark_stale(conn: AsyncConnection, instance_id: str, tiers: Iterable[str]) -> int:
    """In the caller's write: the tiers' template images no longer match the instance (an
    application was taken away: its files are in the image), so the next scale takes new ones
    (the old image is deleted first). The number of rows changed."""
    t = models.paas_templates
    names = list(tiers)
    if not names:
        return 0
    done = await conn.execute(sa.update(t).where(t.c.env_instance_id == instance_id, t.c.tier.in_(names))
                              .values(status=STALE, updated_at=utcnow()))
    return int(done.rowcount or 0)


# ---------------------------------------------------------------------------------------------
# The step


async def _template_row(run: StepRun, tier: str) -> dict[str, Any] | None:
    t = models.paas_templates
    async with run.services.db.read() as conn:
        row = (await conn.execute(
            sa.select(t).where(t.c.env_instance_id == run.instance_id, t.c.tier == tier)
        )).mappings().first()
    return dict(row) if row else None


async def _save_template(run: StepRun, tier: str, **values: Any) -> None:
    """Insert or update the tier's template row (one per instance and tier)."""
    t = models.paas_templates
    async with run.services.db.write() as conn:
        found = (await conn.execute(
            sa.select(t.c.id).where(t.c.env_instance_id == run.instance_id, t.c.tier == tier)
        )).first()
        if found:
            await conn.execute(sa.update(t).where(t.c.id == found[0]).values(updated_at=utcnow(), **values))
        else:
            await conn.execute(sa.insert(t).values(
                id=template_id(run.instance_id, tier), env_instance_id=run.instance_id, tier=tier, **values
            ))


async def _source_node(run: StepRun, tier: str, replica: int) -> dict[str, Any]:
    ti = models.paas_tier_instances
    async with run.services.db.read() as conn:
        row = (await conn.execute(
            sa.select(ti).where(ti.c.env_instance_id == run.instance_id, ti.c.tier == tier, ti.c.replica == replica)
        )).mappings().first()
    if row is None:
        raise StepFailed(f"template of tier {tier}: its node {replica} is not in the inventory")
    return dict(row)


async def _server_of(run: StepRun, tier: str, replica: int, node: Mapping[str, Any]) -> dict[str, Any]:
    server_id = node.get("server_id")
    if not server_id:
        try:
            server_id = run.output_of(f"active:{tier}:{replica}")["server_id"]
        except KeyError:
            raise StepFailed(f"template of tier {tier}: node {node['name']} has no server") from None
    try:
        return await run.services.compute.get(run.ctx, str(server_id))
    except errors.NotFound:
        raise StepFailed(f"template of tier {tier}: the server {server_id} of node {node['name']} is gone") from None


async def _sync(run: StepRun, server: dict[str, Any]) -> None:
    """Flush the guest's writes before the snapshot (best effort: a failure is logged, not fatal)."""
    try:
        res = await run.services.compute.exec_in_server(run.ctx, server, list(_SYNC), timeout=60.0, output_limit=4096)
        if res.get("exit_code") != 0:
            log.warning("paas template: sync in %s exited %s", server["uuid"], res.get("exit_code"))
    except errors.CumuloError as exc:
        log.warning("paas template: sync in %s failed: %s", server["uuid"], exc)


async def wait_image_active(run: StepRun, image_id: str, timeout: float) -> dict[str, Any]:
    """Poll the image service until the image is active (backoff 0.5 -> 2 s, deadline `timeout`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.5
    while True:
        try:
            image = await run.services.images.get(run.ctx, image_id)
        except errors.NotFound:
            raise StepFailed(f"template image {image_id} is gone (its snapshot failed)") from None
        status = image.get("status")
        if status == "active":
            return image
        if status in ("killed", "deleted", "deactivated"):
            raise StepFailed(f"template image {image_id} is {status}: the snapshot failed")
        if loop.time() >= deadline:
            raise StepFailed(f"template image {image_id} still {status} after {timeout:.0f} s")
        await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
        delay = min(delay * 2, 2.0)


async def _app_generation(run: StepRun) -> int:
    """The newest application generation the instance has: what an image taken now holds."""
    instance = await run.instance()
    apps = models.paas_applications
    async with run.services.db.read() as conn:
        newest = (await conn.execute(
            sa.select(sa.func.max(apps.c.generation)).where(apps.c.env_instance_id == run.instance_id)
        )).scalar()
    return max(int(instance.get("app_generation") or 0), int(newest or 0))


async def _image_status(run: StepRun, image_id: str) -> str | None:
    """The image's status as its owner sees it, None when it is gone."""
    try:
        return str((await run.services.images.get(run.ctx, image_id)).get("status"))
    except errors.NotFound:
        return None


async def _drop_image(run: StepRun, image_id: str) -> None:
    """Delete an old template image (gone already is fine)."""
    try:
        await run.services.images.delete(run.ctx, image_id)
    except errors.NotFound:
        pass


async def _give_up(run: StepRun, tier: str, name: str, image_id: str | None, node: Mapping[str, Any],
                   reason: str) -> Mapping[str, Any]:
    """No template this time: the tier's new nodes get fresh installs (and a later scale tries
    again). A template is a speed-up: an image quota, a driver without snapshots or a snapshot that
    failed must not fail the deploy and undo a working environment."""
    log.warning("paas template of tier %s of instance %s not taken: %s", tier, run.instance_id, reason)
    gone = True
    if image_id:
        try:
            await _drop_image(run, image_id)
        except errors.CumuloError as exc:  # the ledger keeps it: the destroy deletes it
            gone = False
            log.warning("paas template: cannot delete the failed image %s: %s", image_id, exc)
    deleted = getattr(run.ledger, "deleted", None)  # the engine's ledger has it (not the Protocol)
    if gone and deleted is not None:
        await deleted(IMAGE_TYPE, name)
    await _save_template(run, tier, status=ERROR, image_id=None, source_node=node["name"])
    return {"image_id": None, "source_node": node["name"], "error": reason}


@action("template")
async def take_template(run: StepRun) -> Mapping[str, Any]:
    """Step "template:<tier>": snapshot the tier's first node into its template image (module docstring).
    Params: tier, replica (the source node's, default 1). Output: {image_id, source_node, app_generation}."""
    params = run.step["params"]
    tier = str(params["tier"])
    replica = int(params.get("replica", 1))
    existing = await _template_row(run, tier)
    if existing and existing["image_id"]:
        alive = await _image_status(run, str(existing["image_id"]))
        if existing["status"] == ACTIVE and alive == "active":
            return {"image_id": existing["image_id"], "source_node": existing["source_node"],
                    "app_generation": existing["app_generation"]}
        if existing["status"] != CREATING or alive in (None, "killed", "deleted", "deactivated"):
            # stale, failed, or its image is gone (a rollback deleted it): a new one takes the name
            await _drop_image(run, str(existing["image_id"]))
            await _save_template(run, tier, status=CREATING, image_id=None)
    node = await _source_node(run, tier, replica)
    generation = await _app_generation(run)
    name = str(params.get("image_name") or image_name(run.instance_id, tier))
    image_id = await run.ledger.adopt(IMAGE_TYPE, name)
    if image_id is None:
        server = await _server_of(run, tier, replica, node)
        await _sync(run, server)
        await _save_template(run, tier, status=CREATING, image_id=None, source_node=node["name"],
                             app_generation=generation)
        await run.ledger.intend(IMAGE_TYPE, name)
        try:
            image_id = await run.services.compute.snapshot(
                run.ctx, server, name, {"paas_instance": run.instance_id, "paas_tier": tier}
            )
        except errors.CumuloError as exc:
            return await _give_up(run, tier, name, None, node, f"the snapshot of node {node['name']} was refused: {exc}")
        await run.ledger.created(IMAGE_TYPE, name, image_id)
    await _save_template(run, tier, status=CREATING, image_id=image_id, source_node=node["name"],
                         app_generation=generation)
    try:
        await wait_image_active(run, image_id, run.services.conf.paas.boot_timeout)
    except StepFailed as exc:
        return await _give_up(run, tier, name, image_id, node, str(exc))
    await _save_template(run, tier, status=ACTIVE)
    return {"image_id": image_id, "source_node": node["name"], "app_generation": generation}
