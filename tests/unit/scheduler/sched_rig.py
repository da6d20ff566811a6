"""Scheduler test rig: compute nodes with their services and placement providers, in a temp DB."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from cumulo.conf import Settings
from cumulo.db import Database, new_uuid, utcnow
from cumulo.hosts.models import compute_nodes
from cumulo.hosts.servicegroup import register_service
from cumulo.placement.service import Placement


class Hosts:
    def __init__(self, db: Database, conf: Settings, placement: Placement) -> None:
        self.db, self.conf, self.placement = db, conf, placement
        self.providers: dict[str, str] = {}

    async def add(
        self,
        host: str,
        *,
        vcpus: int = 8,
        memory_mb: int = 8192,
        disk_gb: int = 100,
        az: str = "nova",
        instance_types: tuple[str, ...] = ("fake", "container", "qemu"),
        hypervisor_type: str = "fake",
        arch: str = "x86_64",
        details: dict[str, Any] | None = None,
    ) -> str:
        service_id = await register_service(self.db, host, "nova-compute", f"compute.{host}", az)
        uuid = new_uuid()
        async with self.db.write() as conn:
            await conn.execute(
                sa.insert(compute_nodes).values(
                    uuid=uuid, service_id=service_id, host=host, hypervisor_hostname=host,
                    hypervisor_type=hypervisor_type, hypervisor_version=1, instance_types=list(instance_types),
                    vcpus=vcpus, memory_mb=memory_mb, local_gb=disk_gb, cpu_info={"arch": arch},
                    details=details or {}, created_at=utcnow(), updated_at=utcnow(),
                )
            )
        await self.placement.ensure_provider(uuid, host, vcpus=vcpus, memory_mb=memory_mb, disk_gb=disk_gb)
        self.providers[host] = uuid
        return uuid
