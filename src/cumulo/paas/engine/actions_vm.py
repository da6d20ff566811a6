"""The step kinds of PaaS nodes on QEMU VMs (paas/guest.py): "prepare", and the user_data a
template node boots with.

- "prepare" (params tier, replica, node; VM tiers only, after "active"): runs guest.prepare_script
  through exec (it waits for the end of the guest's boot, then mounts the persistent disk labelled
  cumulo-root on /mnt/root, formatting the VM's root disk only when it is blank), so PAAS_ROOT
  (/mnt/root/paas) persists and a template image carries the installs. A server that is not a QEMU
  VM (its image said hw_qemu_guest_agent but it runs elsewhere) skips it. Output {"disk", "formatted"}
  (+ "skipped"). Idempotent: a resumed step finds the disk mounted.
- `boot_user_data(run, tier, replica, node)`: for the "server" step of a node with params
  bootstrap=user_data: the products' configure and start with their attributes resolved now, as
  one `#!/bin/sh` user_data (guest.boot_user_data), with the run ids of this task's configure and
  start steps, which then collect the boot's results through exec (actions_products).
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Mapping
from typing import Any

from cumulo import errors
from cumulo.paas import attributes as attrs
from cumulo.paas import exec as px
from cumulo.paas import guest
from cumulo.paas.engine import plan
from cumulo.paas.engine.base import StepFailed, StepRun, action

log = logging.getLogger(__name__)
WAIT_MARGIN = 30.0  # seconds of the exec timeout left after the wait for the guest's boot


def _tier(instance: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    for tier in (instance.get("environment") or {}).get("tiers") or []:
        if str(tier.get("name")) == name:
            return dict(tier)
    raise StepFailed(f"tier {name} is not in the environment of {instance.get('name')}")


@action("prepare")
async def prepare(run: StepRun) -> Mapping[str, Any]:
    """Step "prepare:<tier>:<r>" (module docstring)."""
    params = run.step["params"]
    tier, replica = str(params["tier"]), int(params["replica"])
    try:
        server_id = str(run.output_of(f"active:{tier}:{replica}")["server_id"])
    except KeyError:
        raise StepFailed(f"node {tier}:{replica} has no active step output") from None
    try:
        server = await run.services.compute.get(run.ctx, server_id)
    except errors.NotFound:
        raise StepFailed(f"the server {server_id} of node {params.get('node')} is gone") from None
    if str(server.get("hypervisor_type") or "").upper() != "QEMU":
        return {"skipped": "not a QEMU VM: PAAS_ROOT is the container's own root"}
    timeout = float(run.services.conf.paas.exec_timeout)
    script = guest.prepare_script(wait_boot=max(timeout - WAIT_MARGIN, 0.0)).encode()
    try:
        res = await run.services.compute.exec_in_server(run.ctx, server, ["/bin/sh", "-s"], env=dict(px.BASE_ENV),
                                                       stdin=script, timeout=timeout, output_limit=16384)
    except errors.CumuloError as exc:
        raise StepFailed(f"prepare of node {params.get('node')} could not run: {exc}") from exc
    out, err = str(res.get("stdout") or ""), str(res.get("stderr") or "")
    if res.get("exit_code") != 0 or res.get("timed_out"):
        how = "timed out" if res.get("timed_out") else f"exited {res.get('exit_code')}"
        raise StepFailed(f"prepare of node {params.get('node')} (the persistent disk for PAAS_ROOT) {how}",
                         exit_code=res.get("exit_code"), output=(out + err)[-4000:])
    disk = re.search(r"^PAAS_DISK=(\S+)$", out, re.MULTILINE)
    return {"disk": disk.group(1) if disk else None, "formatted": "paas: formatted " in out,
            "mount": guest.MOUNT}


async def boot_user_data(run: StepRun, tier_name: str, replica: int, node: str) -> str | None:
    """The base64 user_data of a node that boots with its configure+start (module docstring), or None
    when it cannot have one (no products, an attribute that does not resolve yet, or a script over
    the size a user_data may hold: the steps then run through exec as usual)."""
    instance = await run.instance()
    tier = _tier(instance, tier_name)
    timeout = float(run.services.conf.paas.exec_timeout)
    steps: list[guest.BootStep] = []
    for product in plan.product_order(tier):
        name = str(product["name"])
        release = product.get("release") or {}
        recipes = release.get("recipes") or {}
        version = str(product.get("version") or "")
        try:
            values = await attrs.resolve(run.services.db, run.instance_id, product,
                                         where=f"tier {tier_name}, product {name}")
        except (StepFailed, errors.CumuloError) as exc:  # the configure step fails on it, with its records
            log.warning("paas: node %s boots without user_data: %s", node, exc)
            return None
        target = px.Target(product=name, version=version, tier=tier_name, node=node, root=px.VM_ROOT)
        limit = px.timeout_for(timeout, release.get("metadata"))
        for kind in ("configure", "start"):
            if recipes.get(kind):
                steps.append(guest.BootStep(kind, f"{kind}:{tier_name}:{replica}:{name}", target, values,
                                            str(recipes[kind]), run.task.get("id"), int(limit) + px.GUARD_MARGIN))
    if not steps:
        return None
    try:
        data = guest.boot_user_data(steps)
    except ValueError as exc:  # too big for a user_data: configure and start run through exec
        log.warning("paas: node %s boots without user_data: %s", node, exc)
        return None
    return base64.b64encode(data).decode()
