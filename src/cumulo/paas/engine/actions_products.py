"""The product step kinds (PAAS.md 3.6, OWNERS.md PRODUCTS): recipes of one product on one node.

Params of every kind: {"tier", "replica", "node", "product"} (+ "version"). The node's server is its
paas_tier_instances row's server_id (else the "active:<tier>:<r>" step's output); the product's
release (recipes, metadata, attribute defaults) comes from the instance's environment snapshot (the
tier's products, else the snapshot's node_products[<node>][<product>]: a product POST added to one
node, engine/plan_products.py).
Each recipe run goes through paas/exec.py (one paas_exec_records row per run) and keeps what the
recipe wrote to $PAAS_OUTPUT in paas_product_instances.outputs.

- "install": the install recipe (attributes resolved, stored on the product instance); product
  instance INSTALLING. A node booted from a template (params skip / skip_install / from_template /
  template_image, or its row's from_template) runs nothing: the record says skipped_reason
  "template image <id>".
- "configure": re-resolve the attributes, store them, run configure.
- "start": run start; product instance INSTALLED.
- "stop", "uninstall" (params best_effort: a failure, or a server that is gone or not running, is
  recorded and reported in the output instead of failing the step); uninstall -> UNINSTALLED.
- "reconfigure" (after a scale, and at the end of a deploy for MEMBERS refs): re-resolve, configure,
  then the product's "reload" recipe when it has one, else "start".
- "deploy_artifact" (params application): the application's tarball (stored by the API at
  <state_dir>/paas/artifacts/<sha256>, read in a thread) unpacked on the node, put into the
  product's `artifact_dir` (default $PAAS_ROOT/<product>/www), then the product's "deploy" recipe.
  "undeploy_artifact": that dir emptied, then the product's "undeploy" recipe if any.
A failed recipe: product instance ERROR and StepFailed (product, step, exit code, output tail).
Recipe steps a product does not have are skipped (no record).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.db import new_uuid, utcnow
from cumulo.paas import attributes as attrs
from cumulo.paas import exec as px
from cumulo.paas import guest
from cumulo.paas.artifacts import artifact_path
from cumulo.paas.engine.base import Status, StepFailed, StepRun, action
from cumulo.paas.models import paas_applications, paas_product_instances, paas_tier_instances
from cumulo.paas.products import builtin

PI = paas_product_instances.c
TI = paas_tier_instances.c


@dataclass
class ProductOnNode:
    """What a product step works on."""

    release: Mapping[str, Any]  # recipes, metadata, attributes (defaults)
    spec: Mapping[str, Any]  # the tier's product entry (name, version, attributes, release)
    node: dict[str, Any]  # the paas_tier_instances row
    pi: dict[str, Any]  # the paas_product_instances row
    target: px.Target
    server_id: str | None


def _find(items: Any, name: str) -> Mapping[str, Any] | None:
    return next((i for i in items or [] if str(i.get("name")) == name), None)


async def _product_instance(run: StepRun, node: Mapping[str, Any], product: str, version: str) -> dict[str, Any]:
    """The node's row for the product (the plan inserts it; made here when it did not)."""
    q = sa.select(paas_product_instances).where(PI.tier_instance_id == node["id"], PI.product == product)
    async with run.services.db.read() as conn:
        row = (await conn.execute(q)).mappings().first()
    if row is None:
        try:
            async with run.services.db.write() as conn:
                await conn.execute(sa.insert(paas_product_instances).values(
                    id=new_uuid(), tier_instance_id=node["id"], env_instance_id=run.instance_id, product=product,
                    version=version, status=str(Status.INIT), attributes={}, outputs={}))
        except sa.exc.IntegrityError:
            pass  # made meanwhile by another attempt
        async with run.services.db.read() as conn:
            row = (await conn.execute(q)).mappings().one()
    return dict(row)


async def load(run: StepRun) -> ProductOnNode:
    params = run.step["params"]
    tier, replica, product = str(params["tier"]), int(params["replica"]), str(params["product"])
    instance = await run.instance()
    env = instance.get("environment") or {}
    tier_spec = _find(env.get("tiers"), tier)
    spec = _find((tier_spec or {}).get("products"), product)
    if spec is None and tier_spec is not None:  # a product POST added to this node alone (plan_products)
        spec = ((env.get("node_products") or {}).get(str(params.get("node") or "")) or {}).get(product)
    if tier_spec is None or spec is None:
        raise StepFailed(f"product {product} is not in tier {tier} of {instance['name']}")
    async with run.services.db.read() as conn:
        found = (await conn.execute(sa.select(paas_tier_instances).where(
            TI.env_instance_id == run.instance_id, TI.tier == tier, TI.replica == replica))).mappings().first()
    if found is None:
        raise StepFailed(f"node {tier}-{replica} is not in the inventory")
    node = dict(found)
    server_id = node["server_id"]
    if not server_id:
        try:
            server_id = run.output_of(f"active:{tier}:{replica}").get("server_id")
        except KeyError:
            server_id = None
    version = str(spec.get("version") or params.get("version") or "")
    pi = await _product_instance(run, node, product, version)
    target = px.Target(product=product, version=version, tier=tier, node=str(node["name"]), ip=str(node["ip"] or ""))
    return ProductOnNode(release=spec.get("release") or {}, spec=spec, node=node, pi=pi, target=target,
                         server_id=str(server_id) if server_id else None)


# A node's own status follows its products' (node_follows); these node states are left alone.
_NODE_LEAVING = (str(Status.UNINSTALLING), str(Status.UNDEPLOYED), str(Status.UNINSTALLED), str(Status.UNDEPLOYING))


async def node_follows(conn: Any, node_id: str, status: Status) -> None:
    """The node (paas_tier_instances row) after one of its products went `status`: ERROR with it;
    INSTALLING from DEPLOYED; INSTALLED once every product of the node is INSTALLED (Pegasus's
    tierInstance INSTALLED), also from ERROR when the failed product was uninstalled. A node leaving
    its tier keeps its state."""
    now = utcnow()
    mine = sa.and_(TI.id == node_id, TI.status.not_in(_NODE_LEAVING))
    if status == Status.ERROR:
        await conn.execute(sa.update(paas_tier_instances).where(mine).values(status=str(Status.ERROR), updated_at=now))
    elif status == Status.INSTALLING:
        await conn.execute(sa.update(paas_tier_instances).where(mine, TI.status == str(Status.DEPLOYED))
                           .values(status=str(Status.INSTALLING), updated_at=now))
    elif status in (Status.INSTALLED, Status.UNINSTALLED):
        pending = (await conn.execute(sa.select(sa.func.count()).where(
            PI.tier_instance_id == node_id, PI.status.not_in((str(Status.INSTALLED), str(Status.UNINSTALLED)))))).scalar()
        was = [str(Status.DEPLOYED), str(Status.INSTALLING), str(Status.CONFIGURING)]
        if status == Status.UNINSTALLED:  # the failed product taken away (a DELETE productInstance)
            was.append(str(Status.ERROR))
        if not pending:
            await conn.execute(sa.update(paas_tier_instances).where(mine, TI.status.in_(was))
                               .values(status=str(Status.INSTALLED), updated_at=now))


async def set_status(run: StepRun, pi_id: str, status: Status, **values: Any) -> None:
    """The product instance's status, and its node's after it (node_follows)."""
    async with run.services.db.write() as conn:
        await conn.execute(sa.update(paas_product_instances).where(PI.id == pi_id)
                           .values(status=str(status), updated_at=utcnow(), **values))
        node_id = (await conn.execute(sa.select(PI.tier_instance_id).where(PI.id == pi_id))).scalar()
        if node_id is not None:
            await node_follows(conn, str(node_id), status)


async def _exec_fn(run: StepRun, p: ProductOnNode) -> px.ExecFn:
    """An ExecFn on the node's server; p.target's PAAS_ROOT follows the server's kind (a VM keeps
    it on its persistent root disk)."""
    if not p.server_id:
        raise StepFailed(f"node {p.target.node} has no server")
    try:
        server = await run.services.compute.get(run.ctx, p.server_id)
    except errors.NotFound:
        raise StepFailed(f"the server {p.server_id} of node {p.target.node} is gone") from None
    if str(server.get("hypervisor_type") or "").upper() == "QEMU":
        p.target = dataclasses.replace(p.target, root=px.VM_ROOT)
    return px.server_exec(run.services, run.ctx, server)


async def _resolved(run: StepRun, p: ProductOnNode) -> dict[str, str]:
    where = f"tier {p.target.tier}, product {p.target.product}"
    try:
        values = await attrs.resolve(run.services.db, run.instance_id, p.spec, where=where)
    except (StepFailed, errors.CumuloError) as exc:
        await set_status(run, str(p.pi["id"]), Status.ERROR)
        raise StepFailed(str(exc)) from exc
    await attrs.store(run.services.db, str(p.pi["id"]), values)
    p.pi["attributes"] = values
    return values


async def run_step(run: StepRun, p: ProductOnNode, step: str, recipe: str, values: Mapping[str, str], *,
                   part: str = "", best_effort: bool = False) -> px.RecipeRun | None:
    """Run one recipe on the node, record it, keep its outputs; StepFailed (product instance ERROR)
    when it fails, unless best_effort (then the failed run is returned)."""
    key = str(run.step["key"])
    try:
        fn = await _exec_fn(run, p)
        timeout = px.timeout_for(run.services.conf.paas.exec_timeout, p.release.get("metadata"))
        res = await px.run_recipe(fn, p.target, step, values, recipe, run=px.run_id(run.task.get("id"), key, part),
                                  timeout=timeout,
                                  extra_env=px.fake_env(run.services.conf.local_driver, values))
    except (StepFailed, errors.CumuloError) as exc:
        # kept like a run: the product instance's records say why nothing ran
        failed = px.RecipeRun(step=step, exit_code=None, stderr=f"not run: {exc}", started_at=utcnow(),
                              ended_at=utcnow())
        await px.record(run.services.db, str(p.pi["id"]), task_id=run.task.get("id"), step=step,
                        attempt=int(run.step.get("attempt") or 1), run=failed)
        if best_effort:
            return failed
        await set_status(run, str(p.pi["id"]), Status.ERROR)
        if isinstance(exc, StepFailed):
            raise
        raise StepFailed(f"the {step} recipe of {p.target.product} on {p.target.node} could not run: {exc}"
                         ) from exc
    await px.record(run.services.db, str(p.pi["id"]), task_id=run.task.get("id"), step=step,
                    attempt=int(run.step.get("attempt") or 1), run=res)
    if res.outputs:
        outputs = {**(p.pi.get("outputs") or {}), **res.outputs}
        async with run.services.db.write() as conn:
            await conn.execute(sa.update(paas_product_instances).where(PI.id == p.pi["id"])
                               .values(outputs=outputs, updated_at=utcnow()))
        p.pi["outputs"] = outputs
    if not res.ok and not best_effort:
        await set_status(run, str(p.pi["id"]), Status.ERROR)
        raise px.failure(p.target, res)
    return res


def _recipe(p: ProductOnNode, step: str) -> str:
    return str((p.release.get("recipes") or {}).get(step) or "")


def _summary(res: px.RecipeRun | None) -> dict[str, Any]:
    if res is None:
        return {"ran": False}
    return {"ran": True, "exit_code": res.exit_code, "timed_out": res.timed_out, "seconds": round(res.seconds, 3),
            **({"outputs": res.outputs} if res.outputs else {})}


def _template_skip(params: Mapping[str, Any], node: Mapping[str, Any]) -> str | None:
    """The skipped_reason of an install on a node booted from a template, else None."""
    skip = params.get("skip")
    if isinstance(skip, str) and skip:
        return skip
    image = params.get("template_image") or params.get("from_template") or node.get("from_template")
    if image or params.get("skip_install"):
        return f"template image {image or 'unknown'}"
    return None


@action("install")
async def install(run: StepRun) -> Mapping[str, Any]:
    p = await load(run)
    reason = _template_skip(run.step["params"], p.node)
    await set_status(run, str(p.pi["id"]), Status.INSTALLING, version=p.target.version)
    if reason is not None:
        await px.record(run.services.db, str(p.pi["id"]), task_id=run.task.get("id"), step="install",
                        attempt=int(run.step.get("attempt") or 1), skipped_reason=reason)
        return {"ran": False, "skipped": reason}
    values = await _resolved(run, p)
    recipe = _recipe(p, "install")
    package = await asyncio.to_thread(builtin.payload, p.target.product, p.target.version) \
        if recipe and p.release.get("builtin") else None
    if package:  # a built-in product's package: unpacked on the node, checked and moved by the recipe
        try:
            fn = await _exec_fn(run, p)
            staging = await px.put_payload(
                fn, package, run=px.run_id(run.task.get("id"), str(run.step["key"]), "payload"), root=p.target.root,
                timeout=px.timeout_for(run.services.conf.paas.exec_timeout, p.release.get("metadata")))
        except (StepFailed, errors.CumuloError) as exc:
            await set_status(run, str(p.pi["id"]), Status.ERROR)
            raise StepFailed(f"the package of {p.target.product} could not be unpacked: {exc}") from exc
        recipe = f"export PAAS_PAYLOAD={shlex.quote(staging)}\n" + recipe
    res = await run_step(run, p, "install", recipe, values) if recipe else None
    return {**_summary(res), **({"package_bytes": len(package)} if package else {})}


async def _run_if(run: StepRun, p: ProductOnNode, step: str, values: Mapping[str, str], *, part: str = "",
                  best_effort: bool = False) -> px.RecipeRun | None:
    recipe = _recipe(p, step)
    if not recipe:
        return None
    return await run_step(run, p, step, recipe, values, part=part, best_effort=best_effort)


def _at_boot(run: StepRun, res: px.RecipeRun | None) -> dict[str, Any]:
    """For a step of a node that ran it at boot (params boot: a template VM node with
    bootstrap=user_data, paas/guest.py): {"at_boot": True} when the exec only collected the boot's
    run, False when the boot had not run it and the exec did."""
    if not run.step["params"].get("boot"):
        return {}
    return {"at_boot": res is not None and guest.collected_at_boot(res)}


@action("configure")
async def configure(run: StepRun) -> Mapping[str, Any]:
    p = await load(run)
    values = await _resolved(run, p)
    res = await _run_if(run, p, "configure", values)
    return {**_summary(res), **_at_boot(run, res), "attributes": sorted(values)}


@action("start")
async def start(run: StepRun) -> Mapping[str, Any]:
    p = await load(run)
    values = dict(p.pi.get("attributes") or {}) or await _resolved(run, p)
    res = await _run_if(run, p, "start", values)
    await set_status(run, str(p.pi["id"]), Status.INSTALLED)
    return {**_summary(res), **_at_boot(run, res)}


async def _ending(run: StepRun, step: str) -> tuple[ProductOnNode, dict[str, Any]]:
    p = await load(run)
    best = bool(run.step["params"].get("best_effort"))
    values = dict(p.pi.get("attributes") or {})
    res = await _run_if(run, p, step, values, best_effort=best)
    out = _summary(res)
    if res is not None and not res.ok:
        out["failed"] = res.outcome() + (f": {res.tail(5)}" if res.tail(5) else "")
    return p, out


@action("stop")
async def stop(run: StepRun) -> Mapping[str, Any]:
    _p, out = await _ending(run, "stop")
    return out


@action("uninstall")
async def uninstall(run: StepRun) -> Mapping[str, Any]:
    p, out = await _ending(run, "uninstall")
    await set_status(run, str(p.pi["id"]), Status.UNINSTALLED)
    return out


@action("reconfigure")
async def reconfigure(run: StepRun) -> Mapping[str, Any]:
    p = await load(run)
    values = await _resolved(run, p)
    configured = await _run_if(run, p, "configure", values, part="configure")
    then = "reload" if _recipe(p, "reload") else "start"
    restarted = await _run_if(run, p, then, values, part=then)
    return {"configure": _summary(configured), then: _summary(restarted), "attributes": sorted(values)}


async def _application(run: StepRun, name: str) -> dict[str, Any]:
    async with run.services.db.read() as conn:
        row = (await conn.execute(sa.select(paas_applications).where(
            paas_applications.c.env_instance_id == run.instance_id, paas_applications.c.name == name))).mappings().first()
    if row is None:
        raise StepFailed(f"application {name} is not in the inventory")
    return dict(row)


async def _set_app(run: StepRun, app_id: str, status: Status) -> None:
    async with run.services.db.write() as conn:
        await conn.execute(sa.update(paas_applications).where(paas_applications.c.id == app_id)
                           .values(status=str(status), updated_at=utcnow()))


@action("deploy_artifact")
async def deploy_artifact(run: StepRun) -> Mapping[str, Any]:
    p = await load(run)
    app = await _application(run, str(run.step["params"]["application"]))
    sha = str((app.get("artifact") or {}).get("sha256") or "")
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise StepFailed(f"application {app['name']} has no stored artifact")
    path = artifact_path(run.services.conf, sha)
    try:
        tarball = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        await _set_app(run, str(app["id"]), Status.ERROR)
        raise StepFailed(f"the artifact of application {app['name']} cannot be read: {exc.strerror}") from None
    key = str(run.step["key"])
    try:
        fn = await _exec_fn(run, p)
        dest = px.artifact_dir(p.target, p.release.get("metadata"))
        timeout = px.timeout_for(run.services.conf.paas.exec_timeout, p.release.get("metadata"))
        staging = await px.put_payload(fn, tarball, run=px.run_id(run.task.get("id"), key, "payload"), timeout=timeout,
                                       root=p.target.root)
        recipe = px.artifact_recipe(staging, dest, _recipe(p, "deploy"))
        values = dict(p.pi.get("attributes") or {})
        res = await run_step(run, p, "deploy", recipe, values)
    except (StepFailed, errors.CumuloError) as exc:
        await _set_app(run, str(app["id"]), Status.ERROR)
        if isinstance(exc, StepFailed):
            raise
        raise StepFailed(f"the application {app['name']} could not be deployed on {p.target.node}: {exc}") from exc
    await _set_app(run, str(app["id"]), Status.ARTEFACT_DEPLOYED)
    return {**_summary(res), "artifact_dir": dest, "sha256": sha, "bytes": len(tarball)}


@action("undeploy_artifact")
async def undeploy_artifact(run: StepRun) -> Mapping[str, Any]:
    p = await load(run)
    app = await _application(run, str(run.step["params"]["application"]))
    await _exec_fn(run, p)  # PAAS_ROOT of this server
    dest = px.artifact_dir(p.target, p.release.get("metadata"))
    recipe = px.unartifact_recipe(dest, _recipe(p, "undeploy"))
    res = await run_step(run, p, "undeploy", recipe, dict(p.pi.get("attributes") or {}))
    await _set_app(run, str(app["id"]), Status.ARTEFACT_UNDEPLOYED)
    return _summary(res)
