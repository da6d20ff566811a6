"""A live migration through the real workflow: two compute hosts assembled in ONE process with
compute.workers.assemble (scheduler, conductor, one agent per host), each with its own state dir
and the QEMU driver (TCG), on one in-process bus and one SQLite database. The tiny VM (no NIC)
boots on one host and ticks its uptime on its console; os-migrateLive (the API's service call,
scheduler's choice of destination) moves it to the other over 127.0.0.1: it is ACTIVE there, its
uptime went on (no reboot), the source QEMU and files are gone, the placement allocation moved,
and the migration record is completed with the downtime QEMU measured.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import _qemu_guest
import pytest
import sqlalchemy as sa

from cumulo import conf as conf_mod
from cumulo.bus.inproc import InprocBus
from cumulo.compute import actions, live_records
from cumulo.compute import instances as inst_db
from cumulo.compute import states as st
from cumulo.compute.drivers import load_driver
from cumulo.compute.drivers.qemu import QemuDriver, process
from cumulo.compute.models import instances, migrations
from cumulo.compute.rpc import ConductorAPI
from cumulo.compute.service import live_migration
from cumulo.compute.service.servers import ComputeService
from cumulo.compute.workers import NodeSetup, Workers, assemble
from cumulo.context import RequestContext
from cumulo.db import Database, new_uuid, utcnow
from cumulo.placement.models import allocations, resource_providers
from cumulo.placement.service import Placement

pytestmark = pytest.mark.skipif(bool(_qemu_guest.QEMU_MISSING), reason=_qemu_guest.QEMU_MISSING or "QEMU here")

HOSTS = ("lm-host-a", "lm-host-b")
FLAVOR = {"flavorid": "lm", "name": "lm.tiny", "vcpus": 1, "memory_mb": 128, "root_gb": 1, "ephemeral_gb": 0,
          "swap": 0, "extra_specs": {}}
USER_DATA = b"""#!/bin/sh
(while :; do echo "tick $(cut -d' ' -f1 /proc/uptime)"; sleep 1; done) &
"""


class TinyImages:
    """The image service as the agents see it: the tiny VM's disk, kernel and ramdisk (public)."""

    def __init__(self) -> None:
        art = _qemu_guest.tiny_vm()
        self.disk, self.kernel, self.ramdisk = new_uuid(), new_uuid(), new_uuid()
        self.paths = {self.disk: str(art.disk), self.kernel: str(art.kernel), self.ramdisk: str(art.ramdisk)}
        base = {"status": "active", "visibility": "public", "container_format": "bare"}
        self.images = {
            self.disk: {**base, "id": self.disk, "disk_format": "qcow2",
                        "properties": {"kernel_id": self.kernel, "ramdisk_id": self.ramdisk,
                                       "os_command_line": art.cmdline, "hypervisor_type": "qemu"}},
            self.kernel: {**base, "id": self.kernel, "disk_format": "aki", "container_format": "aki"},
            self.ramdisk: {**base, "id": self.ramdisk, "disk_format": "ari", "container_format": "ari"},
        }

    async def get_internal(self, image_id: str) -> dict[str, Any] | None:
        return self.images.get(image_id)

    async def local_path(self, image_id: str) -> str:
        return self.paths[image_id]


def _driver(root: Path, host: str) -> QemuDriver:
    conf = conf_mod.load(env={}, state_dir=root / host / "state")
    conf = conf.replace(extra={**conf.extra, "qemu_accel": "tcg", "qemu_boot_timeout": 120, "qemu_stop_timeout": 5})
    drv = load_driver("qemu", conf, host, local=False)
    assert isinstance(drv, QemuDriver)
    return drv


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[tuple[Database, InprocBus, Workers, Placement, TinyImages, Any]]:
    conf = conf_mod.load(env={}, state_dir=tmp_path / "state", power_sync_interval=3600.0)
    conf.state_dir.mkdir(parents=True, exist_ok=True)
    db = Database(conf.database_url)
    await db.create_all()
    bus = InprocBus()
    placement = Placement(db, conf)
    images = TinyImages()
    setups = [NodeSetup(h, h, _driver(tmp_path, h)) for h in HOSTS]
    workers = assemble(db, bus, conf, placement, images, setups)
    await bus.start()
    await workers.start()
    try:
        yield db, bus, workers, placement, images, conf
    finally:
        await workers.stop()
        await bus.stop()
        await db.dispose()
        _qemu_guest.kill_under(tmp_path)


def _ticks(drv: QemuDriver, uid: str) -> list[float]:
    path = drv.dir / uid / "console.log"
    return [float(t) for t in re.findall(r"tick ([0-9.]+)", path.read_text(errors="replace"))] if path.exists() else []


async def _until(what: str, pred: Any, timeout: float = 180.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = await pred()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.3)


async def test_live_migration_between_two_assembled_hosts(cloud: Any) -> None:
    db, bus, workers, placement, images, conf = cloud
    drivers = {m.host: m.driver for m in workers.managers}
    ctx = RequestContext(user_id="u1", project_id="p1", roles=frozenset({"admin", "member", "reader"}))
    uid = new_uuid()
    async with db.write() as conn:
        await conn.execute(sa.insert(instances).values(
            uuid=uid, project_id="p1", user_id="u1", display_name="lm", hostname="lm", image_ref=images.disk,
            flavor=FLAVOR, vcpus=1, memory_mb=128, root_gb=1, ephemeral_gb=0, metadata={}, system_metadata={},
            tags=[], vm_state=st.BUILDING, task_state=st.SCHEDULING, power_state=0, reservation_id="r-lm",
            request_spec={"flavor": FLAVOR, "image_properties": {"hypervisor_type": "qemu"}},
            security_groups=[], addresses={}, user_data=base64.b64encode(USER_DATA).decode(),
            created_at=utcnow(), updated_at=utcnow(), deleted=False))
        await actions.record_action(conn, ctx, uid, actions.CREATE)
    await ConductorAPI(bus).build_instances([uid])

    async def row() -> dict[str, Any]:
        async with db.read() as conn:
            found = await inst_db.get(conn, uid)
        assert found is not None
        return found

    built = await _until("ACTIVE", lambda: _settled(row))
    assert built["vm_state"] == st.ACTIVE, built
    source = built["host"]
    dest = next(h for h in HOSTS if h != source)
    first = await _until("a tick", lambda: _tick_above(drivers[source], uid, 0.0))
    before = await _until("a later tick", lambda: _tick_above(drivers[source], uid, first))

    svc = ComputeService(db, bus, conf, images, placement)  # type: ignore[arg-type]
    mig_uuid = await live_migration.live_migrate(svc, ctx, await row(), host=None, block_migration=None, force=False)
    record = await _until("the migration's end", lambda: _record_done(db, mig_uuid))
    after_row = await row()
    assert record["status"] == live_records.COMPLETED, record
    assert (after_row["host"], after_row["vm_state"], after_row["task_state"]) == (dest, st.ACTIVE, None)
    assert record["downtime_ms"] is not None and record["downtime_ms"] >= 0 and record["memory_total"]
    print(f"live migration {source} -> {dest}: downtime {record['downtime_ms']} ms, "
          f"{record['memory_processed']} bytes of RAM, {record['disk_total']} bytes of disk")
    # The source QEMU and files go (the source's clean-up step follows the record's switch to
    # completed: wait for it); the destination runs the guest, which went on ticking.
    src_layout = drivers[source]._layout(uid)

    async def source_gone() -> bool:
        return not await asyncio.to_thread(process.scan_pids, uid, src_layout.pidfile) and not src_layout.dir.exists()

    await _until("the source QEMU and its files to go", source_gone)
    assert process.live_pid(drivers[dest]._layout(uid)) is not None
    later = await _until("a tick on the destination", lambda: _tick_above(drivers[dest], uid, before))
    assert min(_ticks(drivers[dest], uid)) >= before - 1.0 and later > before  # no reboot: uptime went on
    # Placement: the instance holds the destination's node only; the migration holds nothing.
    async with db.read() as conn:
        held = {r[0] for r in await conn.execute(
            sa.select(resource_providers.c.name).join(resource_providers, resource_providers.c.id == allocations.c.provider_id)
            .where(allocations.c.consumer_id.in_([uid, mig_uuid])))}
    assert held == {dest}


async def _settled(row: Any) -> dict[str, Any] | None:
    r = await row()
    return r if r["task_state"] is None and r["vm_state"] != st.BUILDING else None


async def _tick_above(drv: QemuDriver, uid: str, above: float) -> float | None:
    seen = [t for t in _ticks(drv, uid) if t > above]
    return max(seen) if seen else None


async def _record_done(db: Database, mig_uuid: str) -> dict[str, Any] | None:
    async with db.read() as conn:
        rec = (await conn.execute(sa.select(migrations).where(migrations.c.uuid == mig_uuid))).mappings().first()
    return dict(rec) if rec is not None and rec["status"] in (live_records.COMPLETED, live_records.ERROR,
                                                                live_records.CANCELLED) else None
