"""The networks `cumulo up` makes at first start, as DevStack does.

- `public`: a shared external network (router:external) owned by the admin project, with the
  subnet `public-subnet` on `external_cidr` (172.24.4.0/24 by default; gateway .1, which the
  network agent puts on the host's end of the external link; DHCP off, as DevStack's);
- for the demo project: `private` with `private-subnet` on `private_cidr` (10.0.0.0/26), and the
  router `router1` with its gateway on public (SNAT on) and an interface on private-subnet;
- for get-me-a-network: `public` is the default external network (`is_default`), and the shared
  default subnet pool `shared-default-subnetpool-v4` covers `default_subnetpool_cidr` (10.1.0.0/16,
  /26 subnets by default). A cloud whose marker predates subnet pools gets these at its next start.

First start only: a marker file in the state dir records it, so what an admin deletes later stays
deleted and a restart makes nothing twice. Each piece is also looked up by name before it is
made, so a start that died half way finishes the job.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from pathlib import Path
from typing import Any

from cumulo import errors
from cumulo.conf import Settings
from cumulo.context import RequestContext, expand_roles
from cumulo.network.service import NetworkService

LOG = logging.getLogger(__name__)
MARKER = "network-topology.json"
DEFAULT_POOL_NAME = "shared-default-subnetpool-v4"


def _ctx(project_id: str, admin: bool) -> RequestContext:
    return RequestContext(user_id=None, project_id=project_id, roles=expand_roles(["admin" if admin else "member"]))


async def _find(items: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    for item in items:
        if all(item.get(k) == v for k, v in match.items()):
            return item
    return None


def _read_marker(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _write_marker(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


PUBLIC_PHYSNET = "public"


async def ensure_default_topology(service: NetworkService, conf: Settings, *, admin_project: str,
                                  demo_project: str | None) -> dict[str, Any]:
    """Make public (and demo's private + router1) unless a first start did already; the ids."""
    marker = conf.state_dir / MARKER
    done = await asyncio.to_thread(_read_marker, marker)
    if done is not None:
        if "default_subnetpool" not in done and done.get("public"):  # a cloud made before subnet pools
            done["default_subnetpool"] = await _ensure_auto_allocation(service, conf, admin_project, done["public"])
            await asyncio.to_thread(_write_marker, marker, done)
        return done
    admin = _ctx(admin_project, True)
    out: dict[str, Any] = {}
    nets = await service.list_networks(admin)
    public = await _find(nets, name="public", **{"router:external": True})
    if public is None:
        # flat on the physical network "public" (DevStack's PUBLIC_PHYSICAL_NETWORK): hosts that
        # map it (physical_interface_mappings) take servers on it, the L3 host carries it
        public = await service.create_network(admin, {"name": "public", "router:external": True, "shared": True,
                                                      "provider:network_type": "flat",
                                                      "provider:physical_network": PUBLIC_PHYSNET})
    out["public"] = public["id"]
    subs = await service.list_subnets(admin)
    pub_sub = await _find(subs, network_id=public["id"])
    if pub_sub is None:
        cidr = ipaddress.ip_network(conf.external_cidr, strict=True)
        pub_sub = await service.create_subnet(admin, {"network_id": public["id"], "name": "public-subnet",
                                                      "cidr": str(cidr), "ip_version": cidr.version,
                                                      "enable_dhcp": False})
    out["public_subnet"] = pub_sub["id"]
    if demo_project:
        demo = _ctx(demo_project, False)
        demo_admin = _ctx(demo_project, True)
        private = await _find(await service.list_networks(demo), name="private", project_id=demo_project)
        if private is None:
            private = await service.create_network(demo, {"name": "private"})
        out["private"] = private["id"]
        priv_sub = await _find(await service.list_subnets(demo), network_id=private["id"])
        if priv_sub is None:
            cidr = ipaddress.ip_network(conf.private_cidr, strict=True)
            priv_sub = await service.create_subnet(demo, {"network_id": private["id"], "name": "private-subnet",
                                                          "cidr": str(cidr), "ip_version": cidr.version})
        out["private_subnet"] = priv_sub["id"]
        router = await _find(await service.list_routers(demo), name="router1", project_id=demo_project)
        if router is None:
            router = await service.create_router(demo_admin, {
                "name": "router1", "tenant_id": demo_project,
                "external_gateway_info": {"network_id": public["id"], "enable_snat": True}})
            await service.add_router_interface(demo_admin, router["id"], {"subnet_id": priv_sub["id"]})
        out["router"] = router["id"]
    out["default_subnetpool"] = await _ensure_auto_allocation(service, conf, admin_project, public["id"])
    await asyncio.to_thread(_write_marker, marker, out)
    LOG.info("first start: networks public and private, router router1 (%s)", out)
    return out


async def _ensure_auto_allocation(service: NetworkService, conf: Settings, admin_project: str,
                                  public_id: str) -> str | None:
    """What get-me-a-network needs: `public` marked the default external network, and the shared
    default IPv4 subnet pool `shared-default-subnetpool-v4` (as DevStack makes) on
    default_subnetpool_cidr; its id (None when the setting is empty or public is gone)."""
    admin = _ctx(admin_project, True)
    try:
        public = await service.get_network(admin, public_id)
    except errors.NotFound:
        return None
    if not public["is_default"]:
        try:
            await service.update_network(admin, public_id, {"is_default": True})
        except errors.Conflict as exc:  # another external network is the default already: keep it
            LOG.info("public is not the default external network: %s", exc)
    if not conf.default_subnetpool_cidr:
        return None
    pools = await service.list_subnetpools(admin)
    pool = await _find(pools, is_default=True, ip_version=4) or await _find(pools, name=DEFAULT_POOL_NAME)
    if pool is None:
        cidr = ipaddress.ip_network(conf.default_subnetpool_cidr, strict=True)
        pool = await service.create_subnetpool(admin, {
            "name": DEFAULT_POOL_NAME, "prefixes": [str(cidr)], "shared": True, "is_default": True,
            "default_prefixlen": conf.default_subnetpool_prefixlen})
    return str(pool["id"])
