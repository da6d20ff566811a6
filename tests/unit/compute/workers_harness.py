"""A Cloud-free rig for the workers: SQLite + in-process bus + scheduler, conductor and agents.

It plays the API's part itself (insert a BUILD row + "create" action, CAS a task_state + record an
action, then cast), so the workers are tested without the HTTP layer. `Rig.restart()` stops
everything and starts a fresh set of workers on the same state dir, which is how the reconcile
tests simulate a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cumulo import conf as conf_mod
from cumulo.bus.inproc import InprocBus
from cumulo.compute import actions
from cumulo.compute import instances as inst_db
from cumulo.compute import states as st
from cumulo.compute.agent.manager import ComputeManager
from cumulo.compute.drivers.fake import FakeDriver
from cumulo.compute.models import instance_faults, instances
from cumulo.compute.rpc import ComputeAPI, ConductorAPI
from cumulo.compute.service.servers import ComputeService
from cumulo.compute.workers import NodeSetup, assemble
from cumulo.context import RequestContext
from cumulo.db import Database, new_uuid, utcnow
from cumulo.placement.service import Placement

FLAVOR_SMALL = {"flavorid": "2", "name": "m1.small", "vcpus": 1, "memory_mb": 2048, "root_gb": 20,
                "ephemeral_gb": 0, "swap": 0, "extra_specs": {}}
FLAVOR_MEDIUM = {"flavorid": "3", "name": "m1.medium", "vcpus": 2, "memory_mb": 4096, "root_gb": 40,
                 "ephemeral_gb": 0, "swap": 0, "extra_specs": {}}


class FakeImages:
    """The image service as the agent sees it (get_internal, local_path, upload_from_path, mark_failed)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.images: dict[str, dict[str, Any]] = {}
        self.uploads: dict[str, bytes] = {}
        self.failed: list[str] = []
        self.described: dict[str, dict[str, Any]] = {}

    def add(self, **props: Any) -> str:
        image_id = new_uuid()
        self.images[image_id] = {"id": image_id, "name": "img", "status": "active", "disk_format": "raw",
                                 "container_format": "bare", **props}
        return image_id

    async def get_internal(self, image_id: str) -> dict[str, Any] | None:
        return self.images.get(image_id)

    async def local_path(self, image_id: str) -> str:
        path = self.root / f"{image_id}.img"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"image-bytes")
        return str(path)

    async def describe_snapshot(
        self, image_id: str, disk_format: str, container_format: str, properties: dict[str, Any]
    ) -> None:
        self.described[image_id] = {"disk_format": disk_format, "container_format": container_format,
                                    "properties": dict(properties)}

    async def upload_from_path(self, image_id: str, path: str) -> None:
        self.uploads[image_id] = Path(path).read_bytes()

    async def mark_failed(self, image_id: str) -> None:
        self.failed.append(image_id)


class Rig:
    def __init__(self, tmp: Path, *, fake_hosts: int = 0, **settings: Any) -> None:
        self.tmp = tmp
        settings.setdefault("power_sync_interval", 3600.0)
        self.conf = conf_mod.load(env={}, state_dir=tmp / "state", fake_hosts=fake_hosts, **settings)
        self.images = FakeImages(tmp / "images")
        self.ctx = RequestContext(user_id="u1", project_id="p1", roles=frozenset({"member", "reader"}))
        self.started = False

    @property
    def hosts(self) -> list[str]:
        return [self.conf.host_name] + [f"fake-host-{i}" for i in range(1, self.conf.fake_hosts + 1)]

    def node_setups(self) -> list[NodeSetup]:
        """One node per host, each a fake driver of its own (a rig with other nodes overrides this)."""
        return [NodeSetup(host, host, FakeDriver(self.conf, host, local=False)) for host in self.hosts]

    async def start(self) -> Rig:
        self.conf.state_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(self.conf.database_url)
        await self.db.create_all()
        self.bus = InprocBus()
        self.placement = Placement(self.db, self.conf)
        # Wired as `cumulo up` wires them (compute/workers.py).
        self.workers = assemble(self.db, self.bus, self.conf, self.placement, self.images, self.node_setups())
        self.scheduler, self.conductor = self.workers.scheduler, self.workers.conductor
        self.managers: dict[str, ComputeManager] = {m.name: m for m in self.workers.managers}
        await self.bus.start()
        await self.workers.start()
        self.started = True
        return self

    async def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        await self.workers.stop()
        await self.bus.stop()
        await self.db.dispose()

    async def restart(self, **settings: Any) -> Rig:
        """A new set of workers on the same state dir (the old ones' in-flight work is cancelled)."""
        await self.stop()
        if settings:
            self.conf = self.conf.replace(**settings)
        return await self.start()

    def driver(self, host: str | None = None) -> FakeDriver:
        drv = self.managers[host or self.conf.host_name].driver
        assert isinstance(drv, FakeDriver)
        return drv

    # -- playing the API ----------------------------------------------------------------------

    async def insert_instance(
        self,
        flavor: dict[str, Any] | None = None,
        *,
        image_ref: str = "",
        request_spec: dict[str, Any] | None = None,
        metadata: dict[str, str] | None = None,
        **values: Any,
    ) -> str:
        flavor = dict(flavor or FLAVOR_SMALL)
        uuid = new_uuid()
        row: dict[str, Any] = {
            "uuid": uuid, "project_id": self.ctx.project_id, "user_id": self.ctx.user_id,
            "display_name": f"vm-{uuid[:8]}", "hostname": f"vm-{uuid[:8]}", "image_ref": image_ref,
            "flavor": flavor, "vcpus": flavor["vcpus"], "memory_mb": flavor["memory_mb"],
            "root_gb": flavor["root_gb"], "ephemeral_gb": flavor.get("ephemeral_gb", 0),
            "metadata": metadata or {}, "system_metadata": {}, "tags": [], "vm_state": st.BUILDING,
            "task_state": st.SCHEDULING, "power_state": 0, "reservation_id": "r-test",
            "request_spec": request_spec or {"flavor": flavor}, "security_groups": [], "addresses": {},
            "created_at": utcnow(), "updated_at": utcnow(), "deleted": False,
        }
        row.update(values)
        async with self.db.write() as conn:
            await conn.execute(sa.insert(instances).values(**row))
            await actions.record_action(conn, self.ctx, uuid, actions.CREATE)
        return uuid

    async def create(self, flavor: dict[str, Any] | None = None, **kw: Any) -> str:
        uuid = await self.insert_instance(flavor, **kw)
        await ConductorAPI(self.bus).build_instances([uuid])
        return uuid

    async def act(self, uuid: str, method: str, action: str, task_state: str, **args: Any) -> str:
        """CAS task_state (as the API does), record the action, cast the agent method; returns the request id."""
        ctx = RequestContext(user_id="u1", project_id="p1", roles=frozenset({"member"}))
        async with self.db.write() as conn:
            assert await inst_db.cas_update(conn, uuid, {"task_state": task_state}, expected_task_state=None)
            await actions.record_action(conn, ctx, uuid, action)
        inst = await self.get(uuid)
        cast = getattr(ComputeAPI(self.bus), method)  # the typed rpc method of that agent message
        await cast(inst["host"], uuid, request_id=ctx.request_id, **args)
        return ctx.request_id

    async def act_delete(self, uuid: str) -> str:
        """What the API does for a placed server: task_state deleting (whatever was running), cast terminate."""
        ctx = RequestContext(user_id="u1", project_id="p1", roles=frozenset({"member"}))
        async with self.db.write() as conn:
            assert await inst_db.cas_update(conn, uuid, {"task_state": st.DELETING})
            await actions.record_action(conn, ctx, uuid, actions.DELETE)
        inst = await self.get(uuid)
        await ComputeAPI(self.bus).terminate_instance(inst["host"], uuid, request_id=ctx.request_id)
        return ctx.request_id

    async def get(self, uuid: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = await inst_db.get(conn, uuid, include_deleted=True)
        assert row is not None
        return row

    async def wait(self, uuid: str, pred: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            row = await self.get(uuid)
            if pred(row):
                return row
            if loop.time() > deadline:
                raise AssertionError(f"timed out; instance is {row['vm_state']}/{row['task_state']}")
            await asyncio.sleep(0.02)

    def compute_service(self) -> ComputeService:
        """The API side's ComputeService over this rig's workers."""
        return ComputeService(self.db, self.bus, self.conf, self.images, self.placement)  # type: ignore[arg-type]

    async def active_server(self, flavor: dict[str, Any] | None = None) -> dict[str, Any]:
        """A new server, once ACTIVE: its row."""
        row = await self.wait_settled(await self.create(flavor or FLAVOR_SMALL))
        assert row["vm_state"] == st.ACTIVE
        return row

    async def wait_settled(self, uuid: str, timeout: float = 10.0) -> dict[str, Any]:
        return await self.wait(uuid, lambda r: r["task_state"] is None and r["vm_state"] != st.BUILDING, timeout)

    async def faults(self, uuid: str) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                sa.select(instance_faults).where(instance_faults.c.instance_uuid == uuid).order_by(instance_faults.c.id)
            )
            return [dict(r) for r in rows.mappings()]

    async def events(self, uuid: str, action: str) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            acts = [a for a in await actions.list_actions(conn, uuid) if a["action"] == action]
            assert acts, f"no {action} action"
            got = await actions.get_action(conn, uuid, acts[0]["request_id"])
        assert got is not None
        return got[1]

    async def live_usage(self) -> dict[str, dict[str, int]]:
        """What placement should show: per node, the sum of the live (placed, non-deleted) instances."""
        out: dict[str, dict[str, int]] = {}
        async with self.db.read() as conn:
            rows = await conn.execute(
                sa.select(instances).where(instances.c.deleted.is_(False), instances.c.host.is_not(None))
            )
            for r in rows.mappings():
                acc = out.setdefault(r["host"], {})
                for rc, n in (("VCPU", r["vcpus"]), ("MEMORY_MB", r["memory_mb"]), ("DISK_GB", r["root_gb"])):
                    acc[rc] = acc.get(rc, 0) + n
        return out

    async def placement_usage(self) -> dict[str, dict[str, int]]:
        sums = await self.placement.summaries()
        return {s.name: {k: v for k, v in s.usage.items() if v} for s in sums.values() if any(s.usage.values())}


def write_partial_fake_guest(rig: Rig, host: str, uuid: str) -> Path:
    """What a kill -9 in the middle of a fake spawn leaves on disk."""
    path = rig.conf.state_dir / "fake" / host / f"{uuid}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"uuid": uuid, "state": "building", "power": 0, "flavor": FLAVOR_SMALL,
                                "hostname": "x", "console": [], "fail": []}))
    return path


async def start_resize(rig: Rig, uuid: str, new_flavor: dict[str, Any]) -> str:
    ctx = RequestContext(user_id="u1", project_id="p1")
    async with rig.db.write() as conn:
        assert await inst_db.cas_update(conn, uuid, {"task_state": st.RESIZE_PREP, "new_flavor": new_flavor},
                                        expected_task_state=None)
        await actions.record_action(conn, ctx, uuid, actions.RESIZE)
    await ConductorAPI(rig.bus).resize_instance(uuid, new_flavor, ctx.request_id)
    return ctx.request_id


@contextlib.asynccontextmanager
async def running(tmp: Path, **kw: Any) -> Any:
    rig = await Rig(tmp, **kw).start()
    try:
        yield rig
    finally:
        await rig.stop()
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp / "images", ignore_errors=True)
