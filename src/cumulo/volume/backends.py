"""What Cinder's admin sees of its own deployment: services (/os-services), hosts (/os-hosts),
pools (/scheduler-stats/get_pools) and a backend's capabilities (/capabilities/{host}).

Cumulo has one volume backend, the file store of the local host's volume worker: in Cinder's
terms the services `cinder-scheduler` and `cinder-backup` on the host `<host_name>` and
`cinder-volume` on `<host_name>@cumulo`, whose one pool is `<host_name>@cumulo#cumulo`. The API
service and the worker run in one process, so the services are up while the API answers. They
cannot be disabled (the one backend would leave nowhere to create volumes), frozen or failed over
(no replication): 400s naming why.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.db import utcnow
from cumulo.volume.base import authorize
from cumulo.volume.models import snapshots, volumes
from cumulo.volume.scheduling import BACKEND, DRIVER_VERSION, STORAGE_PROTOCOL, VENDOR
from cumulo.volume.transfers import VolumeTransfers

BINARIES = ("cinder-scheduler", "cinder-volume", "cinder-backup")
GIB = 1 << 30


class VolumeBackends(VolumeTransfers):
    """Services, hosts, pools and capabilities of the one file backend."""

    @property
    def backend_host(self) -> str:
        return f"{self.conf.host_name}@{BACKEND}"

    @property
    def pool_name(self) -> str:
        return f"{self.backend_host}#{BACKEND}"

    def services(self, ctx: RequestContext, *, host: str | None = None, binary: str | None = None,
                 version: tuple[int, int] = (3, 0)) -> list[dict[str, Any]]:
        """GET /os-services (?host= matches the host or its `host@backend`, ?binary=)."""
        authorize(ctx, "volume:services")
        now = utcnow()
        out: list[dict[str, Any]] = []
        for name in BINARIES:
            svc_host = self.backend_host if name == "cinder-volume" else self.conf.host_name
            if binary is not None and binary != name:
                continue
            if host is not None and host not in (svc_host, svc_host.split("@")[0]):
                continue
            svc: dict[str, Any] = {"binary": name, "host": svc_host, "zone": "nova", "status": "enabled",
                                   "state": "up", "updated_at": now, "disabled_reason": None}
            if version >= (3, 7):
                svc["cluster"] = None
            if name == "cinder-volume":
                svc.update(replication_status="disabled", active_backend_id=None, frozen=False)
                if version >= (3, 49):
                    svc["backend_state"] = "up"
            out.append(svc)
        return out

    def service_action(self, ctx: RequestContext, action: str, body: Any) -> dict[str, Any]:
        """PUT /os-services/{enable|disable|disable-log-reason|freeze|thaw|failover_host}."""
        authorize(ctx, "volume:services")
        if not isinstance(body, dict):
            raise errors.Invalid("Invalid input received: the body must be an object.")
        host = body.get("host")
        if action in ("freeze", "thaw", "failover_host", "failover"):
            if host not in (self.backend_host, self.conf.host_name):
                raise errors.Invalid(f"Invalid input received: Host {str(host)[:64]} is not a volume backend here.")
            raise errors.Invalid(f"Invalid input received: {action} needs a replicated backend; "
                                 f"{self.backend_host} is not replicated.")
        if action not in ("enable", "disable", "disable-log-reason"):
            raise errors.NotFound(f"Unknown action {action[:64]}")
        binary = body.get("binary", body.get("service"))
        if action == "disable-log-reason":
            reason = body.get("disabled_reason")
            if not isinstance(reason, str) or not reason.strip() or len(reason) > 255:
                raise errors.Invalid("Invalid input received: Disabled reason contains invalid characters or is too long")
        found = [s for s in self.services(ctx) if s["host"] in (host, ) and s["binary"] == binary]
        if not found:
            raise errors.NotFound(f"Service {str(binary)[:64]} on host {str(host)[:64]} could not be found.")
        if action != "enable":
            raise errors.Invalid(f"Invalid input received: {binary} on {host} cannot be disabled: it is the one "
                                 "service of its kind in this cloud.")
        return {"host": host, "binary": binary, "service": binary, "status": "enabled", "disabled": False,
                "disabled_reason": None}

    def hosts(self, ctx: RequestContext) -> list[dict[str, Any]]:
        """GET /os-hosts: one entry per service, as Cinder lists them."""
        authorize(ctx, "volume:services")
        return [{"service-status": "available", "service": s["binary"], "zone": s["zone"],
                 "service-state": "enabled", "host_name": s["host"], "last-update": s["updated_at"]}
                for s in self.services(ctx)]

    async def host_usage(self, ctx: RequestContext, host: str) -> list[dict[str, str]]:
        """GET /os-hosts/{host}: the volume host's totals, then one entry per project (Cinder's
        strings). Only the cinder-volume host has any: another is 404."""
        authorize(ctx, "volume:services")
        if host not in (self.backend_host, self.pool_name):
            raise errors.NotFound(f"Host {host[:64]} could not be found.")
        async with self.db.read() as conn:
            vols = {p: (n, g) for p, n, g in await conn.execute(
                sa.select(volumes.c.project_id, sa.func.count(), sa.func.coalesce(sa.func.sum(volumes.c.size), 0))
                .group_by(volumes.c.project_id))}
            snaps = {p: (n, g) for p, n, g in await conn.execute(
                sa.select(snapshots.c.project_id, sa.func.count(), sa.func.coalesce(sa.func.sum(snapshots.c.size), 0))
                .group_by(snapshots.c.project_id))}

        def entry(project: str, v: tuple[int, int], s: tuple[int, int]) -> dict[str, str]:
            return {"host": host, "project": project, "volume_count": str(v[0]), "total_volume_gb": str(v[1]),
                    "snapshot_count": str(s[0]), "total_snapshot_gb": str(s[1])}

        total = entry("(total)", (sum(n for n, _ in vols.values()), sum(g for _, g in vols.values())),
                      (sum(n for n, _ in snaps.values()), sum(g for _, g in snaps.values())))
        return [total, *(entry(p, vols.get(p, (0, 0)), snaps.get(p, (0, 0))) for p in sorted({*vols, *snaps}))]

    async def _capacity(self) -> tuple[float, float]:
        st = await asyncio.to_thread(os.statvfs, self.conf.state_dir)
        return round(st.f_blocks * st.f_frsize / GIB, 2), round(st.f_bavail * st.f_frsize / GIB, 2)

    async def pools(self, ctx: RequestContext, *, detail: bool) -> list[dict[str, Any]]:
        """GET /scheduler-stats/get_pools: the one pool (with ?detail=true its capabilities)."""
        authorize(ctx, "volume:services")
        if not detail:
            return [{"name": self.pool_name}]
        total, free = await self._capacity()
        return [{"name": self.pool_name, "capabilities": {
            "pool_name": BACKEND, "volume_backend_name": BACKEND, "vendor_name": VENDOR,
            "driver_version": DRIVER_VERSION, "storage_protocol": STORAGE_PROTOCOL,
            "total_capacity_gb": total, "free_capacity_gb": free, "reserved_percentage": 0,
            "QoS_support": False, "thin_provisioning_support": True, "thick_provisioning_support": False,
            "multiattach": True, "online_extend_support": True, "timestamp": utcnow(),
        }}]

    def capabilities(self, ctx: RequestContext, host: str) -> dict[str, Any]:
        """GET /capabilities/{host}: the backend's (host, host@cumulo or its pool)."""
        authorize(ctx, "volume:services")
        if host not in (self.conf.host_name, self.backend_host, self.pool_name):
            raise errors.NotFound(f"Host {host[:64]} could not be found.")
        return {
            "namespace": f"OS::Storage::Capabilities::{self.backend_host}",
            "vendor_name": VENDOR, "volume_backend_name": BACKEND, "pool_name": None,
            "driver_version": DRIVER_VERSION, "storage_protocol": STORAGE_PROTOCOL,
            "display_name": None, "description": None, "visibility": None, "replication_targets": [],
            "properties": {
                "thin_provisioning": {"title": "Thin Provisioning", "type": "boolean",
                                      "description": "Volumes are sparse files: space is used as data is written."},
                "online_extend": {"title": "Online Extend", "type": "boolean",
                                  "description": "An attached volume grows while the server runs."},
            },
        }
