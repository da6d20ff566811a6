"""Deleting a server whose host is down: Nova's "local delete" (compute_api._delete).

A delete is normally the host agent's work (compute/agent/build.terminate): the cast waits in the
host's queue (`compute.<host>`) for an agent that may never come back, and the server would stay
in task_state `deleting` for good. Nova checks the server's compute service first: when it is
down (forced down, or no heartbeat within service_down_time: hosts/servicegroup.is_up), the API
deletes the server itself: the row marked deleted (a compare-and-swap on the host, so an
evacuation moving it at the same moment wins), the ports made for it deleted and the user's
detached, its volume attachments deleted (delete_on_termination volumes deleted), its placement
allocations dropped. What the dead host still runs is its own business when it comes back: its
start-up reconcile destroys every guest no live server of its node owns (agent/reconcile.reap_orphans),
and a terminate cast still queued finds the row gone and does nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa

from cumulo.compute import actions as act
from cumulo.compute import netports
from cumulo.compute import states as st
from cumulo.compute import volumes as cvolumes
from cumulo.compute.models import instances
from cumulo.conf import Settings
from cumulo.context import RequestContext
from cumulo.db import Database, utcnow
from cumulo.hosts import servicegroup
from cumulo.hosts.models import services

if TYPE_CHECKING:
    from cumulo.placement.service import Placement


class ComputeService(Protocol):
    """What of compute/service/servers.ComputeService a local delete uses."""

    db: Database
    conf: Settings
    network: netports.NetworkPorts | None
    volumes: cvolumes.VolumeClient | None
    placement: Placement


async def host_is_down(svc: ComputeService, inst: dict[str, Any]) -> bool:
    """Whether the server's host has nova-compute service rows and none counts as up: the rule
    evacuate applies (service/migrate.source_is_up), so a server that may be evacuated may also be
    deleted. No row at all (a host Cumulo never registered) is not judged down: the cast goes."""
    host = inst.get("host")
    if not host:
        return False
    async with svc.db.read() as conn:
        rows = (await conn.execute(
            sa.select(services).where(services.c.host == host, services.c.binary == "nova-compute")
        )).mappings().all()
    now = utcnow()
    return bool(rows) and not any(servicegroup.is_up(dict(r), svc.conf, now) for r in rows)


async def delete_locally(svc: ComputeService, ctx: RequestContext, inst: dict[str, Any], host: str) -> bool:
    """Delete the server of a down `host` in the database; False when the row is no longer a live
    server on that host (deleted meanwhile, or moved by an evacuation): the caller casts then."""
    uuid = str(inst["uuid"])
    now = utcnow()
    async with svc.db.write() as conn:
        gone = await conn.execute(
            sa.update(instances)
            .where(instances.c.uuid == uuid, instances.c.deleted.is_(False), instances.c.host == host)
            .values(deleted=True, deleted_at=now, terminated_at=now, vm_state=st.DELETED, task_state=None,
                    progress=0, updated_at=now)
        )
        if not gone.rowcount:
            return False
        await act.record_action(conn, ctx, uuid, act.DELETE)
    if svc.network is not None and netports.port_ids_of(inst):
        await svc.network.release_ports_of_device(uuid, keep=netports.user_ports_of(inst))
    await cvolumes.release_unplaced(svc.db, svc.volumes, inst)
    await svc.placement.release(uuid)
    return True
