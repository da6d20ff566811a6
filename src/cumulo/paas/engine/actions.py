"""The infrastructure step kinds of a deploy (DEPLOY's): "server", "active" and "fip" (network
and security groups: actions_net.py; the destroy kinds: actions_destroy.py). Each goes through the
service layer with the task's RequestContext, exactly as the OpenStack APIs do (ComputeService +
server_create, NetworkService), so scoping, policy and quotas are the cloud's own, and a node is an
ordinary server in `openstack server list`.

Idempotent under resume: every create first asks `run.ledger.adopt(type, name)` (what a crashed
attempt made, by its deterministic name), else `intend` -> create -> `created`. Undo (rollback and
destroy) is ENGINE's reverter over the same ledger (engine/ledger.py `delete_resource`).

- "server" (params tier, replica, node, server; image / from_template for a template node): a
  server named `paas-<inst8>-<tier>-<r>` with metadata {"paas_instance", "paas_node"}, the tier's
  flavour and image (name or id; params "image" wins), keypair, security groups (the instance's and
  the tier's, plus the tier's `security_group` when it names one), on the tier's network
  (actions_net). The requested groups are put on the ports the create made (as Nova's API does),
  again on an adopted server. An adopted server in ERROR is deleted and made again. With params
  bootstrap=user_data (a template VM node, paas/guest.py) its user_data configures and starts its
  products at boot (actions_vm.boot_user_data). A tier with an `affinity` policy: the scheduler
  hint of the tier's server group (actions_group.py). Writes the node's server_id (status DEPLOYING).
  Output {"server_id"}.
- "active" (params tier, replica, node): polls the server (backoff 0.5 -> 2 s) until ACTIVE, up to
  conf.paas.boot_timeout; ERROR fails the step with the server's fault message; then waits until
  an exec of `/bin/sh -c true` answers 0 (the recipes' channel). Writes server_id, ip (the first
  IPv4 address of its first port), status DEPLOYED (ERROR when the step fails; INSTALLED for a tier
  without products: the product actions move it INSTALLING -> INSTALLED | ERROR). Output
  {"server_id", "ip"}.
- "fip" (params tier, replica, node): a floating IP from the external network (actions_net),
  description = its ledger name `paas-<inst8>-<tier>-<r>`, on the node's port; an adopted one is
  re-associated when needed. Writes floating_ip. Output {"floating_ip"}.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.compute import states as st
from cumulo.compute.service import flavors as flavor_db
from cumulo.compute.service import server_create
from cumulo.compute.service.boot import CreateRequest
from cumulo.compute.service.security_groups import SecurityGroupService
from cumulo.compute.service.servers import ServiceUnavailable
from cumulo.db import utcnow
from cumulo.paas.engine import actions_group, actions_net, actions_vm, plan
from cumulo.paas.engine.base import Status, StepFailed, StepRun, action
from cumulo.paas.engine.ledger import delete_resource, server_gone
from cumulo.paas.models import paas_tier_instances

EXEC_CHECK = ["/bin/sh", "-c", "true"]
FIRST_DELAY, MAX_DELAY = 0.5, 2.0


async def set_node(run: StepRun, tier: str, replica: int, **values: Any) -> None:
    """Update the node's paas_tier_instances row (this instance, tier, replica)."""
    t = paas_tier_instances.c
    async with run.services.db.write() as conn:
        await conn.execute(sa.update(paas_tier_instances).where(
            t.env_instance_id == run.instance_id, t.tier == tier, t.replica == replica,
        ).values(updated_at=utcnow(), **values))


def _node(run: StepRun) -> tuple[str, int, str]:
    params = run.step["params"]
    return str(params["tier"]), int(params["replica"]), str(params.get("node") or "")


# ---- flavour and image ---------------------------------------------------------------------------

async def resolve_flavor(run: StepRun, ref: str) -> str:
    """The flavorid of flavour `ref` (an id, else a name the project sees)."""
    async with run.services.db.read() as conn:
        with contextlib.suppress(errors.NotFound, errors.Invalid):
            return str((await flavor_db.get_flavor_for(conn, run.ctx, ref))["flavorid"])
        rows = await flavor_db.list_rows(conn, run.ctx, is_public=None, min_ram=None, min_disk=None,
                                         sort_key="flavorid", sort_dir="asc", limit=1000, marker=None)
    named = [r for r in rows if r.get("name") == ref]
    if len(named) != 1:
        raise StepFailed(f"flavour {ref!r} " + ("is not a flavor of the cloud" if not named else
                                                 "names several flavors: use an id"))
    return str(named[0]["flavorid"])


async def resolve_image(run: StepRun, ref: str) -> str:
    """The id of image `ref` (an id, else a name the project sees, active)."""
    with contextlib.suppress(errors.NotFound, errors.Invalid):
        return str((await run.services.images.get(run.ctx, ref))["id"])
    page, _marker = await run.services.images.list_images(run.ctx, [("name", ref)])
    named = [i for i in page if i.get("name") == ref and i.get("status") == "active"]
    if len(named) != 1:
        raise StepFailed(f"image {ref!r} " + ("is not an active image the project sees" if not named else
                                               "names several images: use an id"))
    return str(named[0]["id"])


# ---- server ----------------------------------------------------------------------------------------

async def _made_ports(run: StepRun, server_id: str) -> list[dict[str, Any]]:
    return [p for p in await run.services.network.ports_of_device(server_id)
            if str(p.get("device_owner") or "").startswith("compute:")]


async def _keep_adopted(run: StepRun, server_id: str) -> str | None:
    """An adopted server, or None when it must be made again: it went to ERROR (e.g. its build was
    interrupted twice by restarts) and is deleted here, waited until gone (PAAS.md 3.5)."""
    try:
        row = await run.services.compute.get(run.ctx, server_id)
    except errors.NotFound:
        return None
    if row["vm_state"] != st.ERROR:
        return server_id
    await delete_resource(run.services, run.ctx, "server", server_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + float(run.services.conf.paas.boot_timeout)
    delay = FIRST_DELAY
    while not await server_gone(run.services, run.ctx, server_id):
        if loop.time() >= deadline:
            raise StepFailed(f"server {row.get('display_name')} ({server_id}) in ERROR is not gone after "
                             f"{run.services.conf.paas.boot_timeout:.0f} s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_DELAY)
    return None


@action("server")
async def create_server(run: StepRun) -> Mapping[str, Any]:
    """Step "server:<tier>:<r>" (module docstring)."""
    tier_name, replica, node = _node(run)
    params = run.step["params"]
    name = str(params.get("server") or plan.server_name(run.instance_id, tier_name, replica))
    instance = await run.instance()
    tier = actions_net.tier_spec(instance, tier_name)
    groups = [plan.secgroup_name(run.instance_id), plan.secgroup_name(run.instance_id, tier_name)]
    group_ids = [await actions_net.group_id(run, None), await actions_net.group_id(run, tier_name)]
    sgs = SecurityGroupService(run.services.db, run.services.network)
    if tier.get("security_group"):  # the tier names a group of the project's own too
        own = str(tier["security_group"])
        try:
            found = await sgs.by_name(run.ctx.project_id or "", [own])
        except errors.Conflict as exc:
            raise StepFailed(f"tier {tier_name}: security group {own!r}: {exc}") from exc
        if own not in found:
            raise StepFailed(f"tier {tier_name}: security group {own!r} is not a group of the project")
        groups.append(own)
        group_ids.append(str(found[own]["id"]))
    server_id = await run.ledger.adopt("server", name)
    if server_id is not None:
        server_id = await _keep_adopted(run, server_id)
    if server_id is None:
        flavor = await resolve_flavor(run, str(tier.get("flavour") or ""))
        image = await resolve_image(run, str(params.get("image") or tier.get("image") or ""))
        nets = None
        with contextlib.suppress(KeyError):
            nets = list(run.output_of("net")["networks"].get(tier_name) or [])
        if nets is None:
            nets = await actions_net.tier_networks(run, tier)
        user_data = None
        if params.get("bootstrap") == "user_data":  # a template VM node: configure+start at boot
            user_data = await actions_vm.boot_user_data(run, tier_name, replica, node)
        group = await actions_group.ensure(run, tier_name, tier)  # the tier's affinity, if any
        req = CreateRequest(
            name=name, flavor_ref=flavor, image_ref=image, key_name=tier.get("keypair") or None,
            scheduler_hints={"group": group} if group else {},
            description=f"PaaS node {node} of environment instance {instance.get('name')}",
            metadata={"paas_instance": run.instance_id, "paas_node": node},
            security_groups=groups, requested_networks=[{"uuid": n} for n in nets] or None, user_data=user_data,
        )
        await run.ledger.intend("server", name)
        try:
            rows, _resv = await server_create.create_servers(run.services.compute, run.ctx, req)
        except errors.CumuloError as exc:
            raise StepFailed(f"server {name} refused: {exc}") from exc
        server_id = str(rows[0]["uuid"])
        await run.ledger.created("server", name, server_id)
    # the groups on the ports the create made (idempotent: a resumed step sets them again)
    for port in await _made_ports(run, server_id):
        if sorted(port.get("security_groups") or []) != sorted(group_ids):
            await run.services.network.update_port(run.ctx, str(port["id"]), {"security_groups": group_ids})
    await set_node(run, tier_name, replica, server_id=server_id, status=str(Status.DEPLOYING),
                   from_template=params.get("from_template"))
    return {"server_id": server_id}


# ---- active ----------------------------------------------------------------------------------------

def _server_id_of(run: StepRun, tier: str, replica: int) -> str:
    try:
        return str(run.output_of(f"server:{tier}:{replica}")["server_id"])
    except KeyError:
        raise StepFailed(f"node {tier}:{replica} has no server step output") from None


async def node_address(run: StepRun, server_id: str) -> tuple[str | None, str | None]:
    """(the first IPv4 fixed address of the server's first port, that port's id)."""
    for port in await run.services.network.ports_of_device(server_id):
        for fixed in port.get("fixed_ips") or []:
            address = str(fixed.get("ip_address") or "")
            if address and ipaddress.ip_address(address).version == 4:
                return address, str(port["id"])
    return None, None


async def wait_active(run: StepRun, server_id: str, deadline: float) -> dict[str, Any]:
    """The server row once ACTIVE with no task running; StepFailed on ERROR (with its fault), gone,
    or the deadline (loop time)."""
    loop = asyncio.get_running_loop()
    delay = FIRST_DELAY
    while True:
        try:
            row = await run.services.compute.get(run.ctx, server_id)
        except errors.NotFound:
            raise StepFailed(f"server {server_id} is gone") from None
        if row["vm_state"] == st.ERROR:
            fault, _status = await run.services.compute.extras_for(row, with_host_status=False)
            why = (fault or {}).get("message") or "no fault recorded"
            raise StepFailed(f"server {row.get('display_name')} ({server_id}) went to ERROR: {why}")
        if row.get("deleted") or row.get("task_state") in (st.DELETING, st.SOFT_DELETING):
            raise StepFailed(f"server {server_id} is being deleted")
        if row["vm_state"] == st.ACTIVE and not row.get("task_state"):
            return row
        if loop.time() >= deadline:
            raise StepFailed(f"server {row.get('display_name')} ({server_id}) not ACTIVE after "
                             f"{run.services.conf.paas.boot_timeout:.0f} s (vm_state {row['vm_state']}, "
                             f"task_state {row.get('task_state')})")
        await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
        delay = min(delay * 2, MAX_DELAY)


async def wait_exec(run: StepRun, row: dict[str, Any], deadline: float) -> None:
    """Until an exec of `true` in the server answers 0 (the guest's exec channel is up)."""
    loop = asyncio.get_running_loop()
    delay = FIRST_DELAY
    last = ""
    while True:
        try:
            res = await run.services.compute.exec_in_server(run.ctx, row, list(EXEC_CHECK), timeout=30.0,
                                                           output_limit=4096)
            if res.get("exit_code") == 0:
                return
            last = f"exit {res.get('exit_code')}: {str(res.get('stderr') or '')[-200:]}"
        except (errors.Conflict, errors.InvalidState, errors.NotFound, ServiceUnavailable, TimeoutError) as exc:
            last = str(exc)  # not running yet, or its host is busy: ask again
        except errors.CumuloError as exc:  # e.g. a driver without exec: nothing to wait for
            raise StepFailed(f"server {row.get('display_name')} ({row['uuid']}) does not run commands: {exc}") from exc
        if loop.time() >= deadline:
            raise StepFailed(f"server {row.get('display_name')} ({row['uuid']}) does not answer exec: {last}")
        await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
        delay = min(delay * 2, MAX_DELAY)


@action("active")
async def wait_node_active(run: StepRun) -> Mapping[str, Any]:
    """Step "active:<tier>:<r>" (module docstring)."""
    tier_name, replica, _node_name = _node(run)
    server_id = _server_id_of(run, tier_name, replica)
    deadline = asyncio.get_running_loop().time() + float(run.services.conf.paas.boot_timeout)
    try:
        row = await wait_active(run, server_id, deadline)
        await wait_exec(run, row, deadline)
    except StepFailed:  # the node failed (a scale-in takes failed nodes first; keep_on_failure shows it)
        await set_node(run, tier_name, replica, server_id=server_id, status=str(Status.ERROR))
        raise
    ip, _port = await node_address(run, server_id)
    tier = next((t for t in plan.tiers_of((await run.instance()).get("environment") or {})
                 if str(t.get("name")) == tier_name), {})
    done = Status.DEPLOYED if tier.get("products") else Status.INSTALLED  # no products: nothing to install
    await set_node(run, tier_name, replica, server_id=server_id, ip=ip, status=str(done))
    return {"server_id": server_id, "ip": ip}


# ---- floating IP ---------------------------------------------------------------------------------

@action("fip")
async def attach_floating_ip(run: StepRun) -> Mapping[str, Any]:
    """Step "fip:<tier>:<r>" (module docstring)."""
    tier_name, replica, _node_name = _node(run)
    name = plan.server_name(run.instance_id, tier_name, replica)
    server_id = _server_id_of(run, tier_name, replica)
    _ip, port_id = await node_address(run, server_id)
    if port_id is None:
        raise StepFailed(f"server {name} ({server_id}) has no port with an IPv4 address for a floating IP")
    net = run.services.network
    fip_id = await run.ledger.adopt("floating_ip", name)
    if fip_id is None:
        external = await actions_net.external_network(run)
        if external is None:
            raise StepFailed(f"tier {tier_name} wants floating IPs but the cloud has no external network")
        await run.ledger.intend("floating_ip", name)
        try:
            fip = await net.create_floatingip(run.ctx, {"floating_network_id": external, "port_id": port_id,
                                                        "description": name})
        except errors.CumuloError as exc:
            raise StepFailed(f"floating IP for server {name} refused: {exc}") from exc
        await run.ledger.created("floating_ip", name, str(fip["id"]))
    else:
        fip = await net.get_floatingip(run.ctx, fip_id)
        if fip.get("port_id") != port_id:
            fip = await net.update_floatingip(run.ctx, fip_id, {"port_id": port_id})
    address = str(fip["floating_ip_address"])
    await set_node(run, tier_name, replica, floating_ip=address)
    return {"floating_ip": address}
