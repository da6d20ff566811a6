"""What the scheduler reasons about: the request (RequestSpec) and each compute node (HostState)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from cumulo.db import Database
from cumulo.hosts.models import compute_nodes, services
from cumulo.placement import pools
from cumulo.placement.inventory import Inventory, Resources
from cumulo.placement.pools import PoolState
from cumulo.placement.service import Placement, ProviderSummary, resources_from_flavor

# Image properties the ImagePropertiesFilter understands, with their legacy/short aliases.
_IMAGE_KEYS = (
    "hypervisor_type", "img_hv_type", "architecture", "hw_architecture", "vm_mode", "hw_vm_mode",
    "img_hv_requested_version", "hypervisor_version_requires",
)


@dataclass
class RequestSpec:
    """The scheduler's view of a request; built from the JSON the conductor sends.

    Keys read (all optional): resources {rc: n} or flavor {vcpus, memory_mb, root_gb, ephemeral_gb,
    swap, extra_specs}; availability_zone ("az", "az:host" or "az:host:node" to force a host);
    force_host, force_node; image {id, properties{...}} and/or image_properties {...};
    ignore_hosts [host...]; instance_uuid. image {disk_format, container_format} say what kind of
    guest an image without hypervisor_type makes (see filters.builtin.ImagePropertiesFilter).
    network_metadata {physnets [...]} (Nova's name): the physical networks of the server's flat
    networks, which a host must carry (filters.builtin.PhysicalNetworkFilter).
    """

    resources: Resources = field(default_factory=dict)
    availability_zone: str | None = None
    force_host: str | None = None
    force_node: str | None = None
    image_properties: dict[str, Any] = field(default_factory=dict)
    flavor_extra_specs: dict[str, str] = field(default_factory=dict)
    ignore_hosts: set[str] = field(default_factory=set)
    instance_uuid: str | None = None
    # The image's formats: what kind of guest it makes when it names no hypervisor_type.
    disk_format: str | None = None
    container_format: str | None = None
    # The server group the instance joined: {uuid, policy, rules, hosts (one per placed member)}.
    instance_group: dict[str, Any] | None = None
    # The physical networks the server's ports are on (network_metadata.physnets).
    physnets: frozenset[str] = frozenset()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RequestSpec:
        flavor = d.get("flavor") or {}
        resources = d.get("resources")
        if not resources:
            resources = resources_from_flavor(flavor) if flavor else {}
        az, host, node = _split_az(d.get("availability_zone"))
        image = d.get("image") or {}
        props: dict[str, Any] = {}
        if isinstance(image, Mapping):
            props.update(image.get("properties") or {})
            props.update({k: image[k] for k in _IMAGE_KEYS if k in image and image[k] is not None})
        props.update(d.get("image_properties") or {})
        return cls(
            resources={str(k): int(v) for k, v in dict(resources).items() if int(v) > 0},
            availability_zone=az,
            force_host=d.get("force_host") or host,
            force_node=d.get("force_node") or node,
            image_properties=props,
            flavor_extra_specs={str(k): str(v) for k, v in (flavor.get("extra_specs") or {}).items()},
            ignore_hosts=set(d.get("ignore_hosts") or ()),
            instance_uuid=d.get("instance_uuid"),
            disk_format=(image.get("disk_format") or None) if isinstance(image, Mapping) else None,
            container_format=(image.get("container_format") or None) if isinstance(image, Mapping) else None,
            instance_group=dict(d["instance_group"]) if d.get("instance_group") else None,
            physnets=frozenset(str(p) for p in (d.get("network_metadata") or {}).get("physnets") or ()),
        )


def _split_az(value: Any) -> tuple[str | None, str | None, str | None]:
    """Nova's "az", "az:host", "az:host:node" (and ":host") forms."""
    if not value:
        return None, None, None
    parts = str(value).split(":")
    az = parts[0] or None
    host = parts[1] if len(parts) > 1 and parts[1] else None
    node = parts[2] if len(parts) > 2 and parts[2] else None
    return az, host, node


@dataclass
class HostState:
    host: str
    node: str
    provider_uuid: str
    hypervisor_type: str
    hypervisor_version: int
    instance_types: tuple[str, ...]
    cpu_info: dict[str, Any]
    details: dict[str, Any]
    availability_zone: str | None
    service: dict[str, Any] | None
    inventory: dict[str, Inventory]
    usage: Resources
    # The host's shared pool this node draws from (one object for all its nodes), or None.
    pool: PoolState | None = None

    def free(self, rc: str) -> int:
        """What the node may still take: its own capacity, bounded by what its pool has left."""
        inv = self.inventory.get(rc)
        if inv is None:
            return 0
        own = inv.capacity - self.usage.get(rc, 0)
        shared = self.pool.free_for(rc, inv.allocation_ratio) if self.pool is not None else None
        return own if shared is None else min(own, shared)

    def consume(self, resources: Mapping[str, int]) -> None:
        """Account for a pick within one request, so several instances do not all land on one host
        (nor on two nodes of one pool)."""
        for rc, n in resources.items():
            self.usage[rc] = self.usage.get(rc, 0) + n
            if self.pool is not None:
                inv = self.inventory.get(rc)
                self.pool.consume(rc, n, inv.allocation_ratio if inv is not None else 1.0)

    def destination(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "node": self.node,
            "provider_uuid": self.provider_uuid,
            "availability_zone": self.availability_zone,
            "hypervisor_type": self.hypervisor_type,
        }


def _service_view(r: Mapping[str, Any]) -> dict[str, Any] | None:
    """What ComputeFilter reads of a node's service, from a row with the svc_* labels."""
    if r["svc_id"] is None:
        return None
    return {
        "disabled": bool(r["svc_disabled"]),
        "forced_down": bool(r["svc_forced_down"]),
        "last_seen_up": r["svc_last_seen_up"],
    }


def _node_service_query(*columns: Any) -> sa.Select[Any]:
    """`columns` of each compute node with its service's state (svc_* labels)."""
    return (
        sa.select(
            *columns,
            services.c.disabled.label("svc_disabled"),
            services.c.forced_down.label("svc_forced_down"),
            services.c.last_seen_up.label("svc_last_seen_up"),
            services.c.availability_zone.label("svc_az"),
            services.c.id.label("svc_id"),
        )
        .select_from(
            # A node's own service (one per local node, see compute.agent.manager.ComputeHost); rows
            # from before that have only the host's.
            compute_nodes.outerjoin(
                services,
                sa.or_(
                    services.c.id == compute_nodes.c.service_id,
                    sa.and_(
                        compute_nodes.c.service_id.is_(None),
                        services.c.host == compute_nodes.c.host,
                        services.c.binary == "nova-compute",
                    ),
                ),
            )
        )
        .order_by(compute_nodes.c.host, compute_nodes.c.hypervisor_hostname)
    )


async def load_services(db: Database, provider_uuids: list[str]) -> dict[str, tuple[dict[str, Any] | None, str | None]]:
    """{provider uuid: (its service view, its availability zone)}, read now: what the host-state
    cache checks afresh for the hosts it is about to answer (scheduler/cache.py). The join on the
    node's own service is the fast one (the OR join below costs a scan per node); a node row
    from before nodes had their own service goes the long way."""
    svc = (services.c.disabled.label("svc_disabled"), services.c.forced_down.label("svc_forced_down"),
           services.c.last_seen_up.label("svc_last_seen_up"), services.c.availability_zone.label("svc_az"),
           services.c.id.label("svc_id"))
    q = (
        sa.select(compute_nodes.c.uuid, *svc)
        .select_from(compute_nodes.outerjoin(services, services.c.id == compute_nodes.c.service_id))
        .where(compute_nodes.c.uuid.in_(provider_uuids))
    )
    async with db.read() as conn:
        rows: list[Any] = list((await conn.execute(q)).mappings().all())
        legacy = [r["uuid"] for r in rows if r["svc_id"] is None]
        if legacy:
            rows = [r for r in rows if r["svc_id"] is not None] + list((await conn.execute(
                _node_service_query(compute_nodes.c.uuid).where(compute_nodes.c.uuid.in_(legacy))
            )).mappings().all())
    return {r["uuid"]: (_service_view(r), r["svc_az"]) for r in rows}


async def load_host_states(db: Database, placement: Placement) -> list[HostState]:
    if db.is_sqlite:
        async with db.read() as conn:
            rows = (await conn.execute(_node_service_query(compute_nodes))).mappings().all()
            # The same read transaction: nodes, their providers and pools are one consistent view.
            summaries, shared = await placement.summaries_and_pools([r["uuid"] for r in rows], conn=conn)
    else:
        rows, summaries, shared = await _read_concurrently(db, placement)
    out: list[HostState] = []
    for r in rows:
        summary = summaries.get(r["uuid"])
        service = _service_view(r)
        out.append(
            HostState(
                host=r["host"],
                node=r["hypervisor_hostname"],
                provider_uuid=r["uuid"],
                hypervisor_type=r["hypervisor_type"],
                hypervisor_version=int(r["hypervisor_version"] or 0),
                instance_types=tuple(str(t).lower() for t in (r["instance_types"] or ())),
                cpu_info=dict(r["cpu_info"] or {}),
                details=dict(r["details"] or {}),
                availability_zone=r["svc_az"],
                service=service,
                inventory=dict(summary.inventory) if summary else {},
                usage=dict(summary.usage) if summary else {},
                pool=shared.get(r["uuid"]),
            )
        )
    return out


async def _read_concurrently(
    db: Database, placement: Placement
) -> tuple[Sequence[Any], dict[str, ProviderSummary], dict[str, PoolState]]:
    """PostgreSQL: the nodes, the providers' inventory and usage, and the pools, read at once on
    three pooled connections (five statements in sequence were five round trips per request below
    host_cache_min_hosts; now two deep). Reads run in autocommit, each statement its own snapshot
    under READ COMMITTED as before, so the view is no less consistent than read one after the other;
    every provider is read (the nodes' are looked up by uuid), so none waits for the nodes' list."""
    async def nodes() -> Sequence[Any]:
        async with db.read() as conn:
            found: Sequence[Any] = (await conn.execute(_node_service_query(compute_nodes))).mappings().all()
            return found

    async def providers() -> dict[str, ProviderSummary]:
        async with db.read() as conn:
            return (await placement.summaries_and_pools(None, with_pools=False, conn=conn))[0]

    async def shared_pools() -> dict[str, PoolState]:
        async with db.read() as conn:
            return await pools.pools_for(conn, None)

    rows, summaries, shared = await asyncio.gather(nodes(), providers(), shared_pools())
    return rows, summaries, shared
