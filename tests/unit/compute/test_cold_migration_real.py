"""Cold migration between two hosts in one process with the real drivers (issue 14, MIGCOLD): a runc
container and a QEMU VM move with their disks, revert back, move again and confirm; a container is
evacuated from a forced-down host, whose copy goes when its agent starts again. Two hosts are
assembled as `cumulo up` assembles them (compute.workers.assemble), each with its own state dir
and driver; servers have no NICs. The state machine and claims in detail: test_cold_migration.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid as uuidlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from workers_harness import Rig

from cumulo.compute import actions
from cumulo.compute import states as st
from cumulo.compute.agent import migrate as agent_migrate
from cumulo.compute.agent.migrate_files import INCOMING
from cumulo.compute.drivers import load_driver
from cumulo.compute.drivers.base import PowerState
from cumulo.compute.models import migrations
from cumulo.compute.service import migrate as svc_migrate
from cumulo.compute.workers import NodeSetup
from cumulo.hosts.models import services
from cumulo.image.demo.busybox import BUSYBOX, build_busybox

HOSTS = ("mig-a", "mig-b")
FLAVOR = {"flavorid": "42", "name": "m1.nano", "vcpus": 1, "memory_mb": 64, "root_gb": 1, "ephemeral_gb": 0,
          "swap": 0, "extra_specs": {}}

RUNC_MISSING = (
    "runc is not installed" if shutil.which("runc") is None
    else "the runc driver needs root" if os.geteuid() != 0
    else f"{BUSYBOX} is missing" if not BUSYBOX.is_file() else ""
)
QEMU_MISSING = "" if shutil.which("qemu-system-x86_64") and shutil.which("qemu-img") else "QEMU is not installed"


class Images:
    """The image service as the agents see it: one image, its file on this machine."""

    def __init__(self, path: Path, disk_format: str, container_format: str) -> None:
        self.id = str(uuidlib.uuid4())
        self.path = path
        self.meta = {"id": self.id, "name": "img", "status": "active", "disk_format": disk_format,
                     "container_format": container_format, "properties": {}}

    async def get_internal(self, image_id: str) -> dict[str, Any] | None:
        return self.meta if image_id == self.id else None

    async def local_path(self, image_id: str) -> str:
        return str(self.path)

    async def describe_snapshot(self, *args: Any) -> None: ...

    async def upload_from_path(self, image_id: str, path: str) -> None: ...

    async def mark_failed(self, image_id: str) -> None: ...


class TwoHosts(Rig):
    def __init__(self, tmp: Path, driver: str, images: Images) -> None:
        super().__init__(tmp, host_name=HOSTS[0])
        self.driver_name = driver
        self.images = images  # type: ignore[assignment]
        # runc: busybox's PID 1 ignores SIGTERM; QEMU: the blob guest ignores ACPI (short graces).
        self.extra = {"runc_stop_grace": 0.5, "qemu_stop_timeout": 1.0}

    @property
    def hosts(self) -> list[str]:
        return list(HOSTS)

    def node_setups(self) -> list[NodeSetup]:
        out = []
        for host in HOSTS:
            conf = self.conf.replace(state_dir=self.tmp / host, extra={**self.conf.extra, **self.extra})
            out.append(NodeSetup(host, host, load_driver(self.driver_name, conf, host, local=True)))
        return out

    def drv(self, host: str) -> Any:
        return self.managers[host].driver

    async def boot_on(self, host: str) -> str:
        uuid = await self.create(FLAVOR, image_ref=self.images.id,
                                 request_spec={"flavor": FLAVOR, "force_host": host})
        row = await self.wait_settled(uuid, timeout=120)
        assert row["vm_state"] == st.ACTIVE and row["host"] == host, row
        return uuid

    async def migrate(self, uuid: str) -> dict[str, Any]:
        svc = self.compute_service()
        await svc_migrate.migrate(svc, self.ctx, await self.get(uuid), None)
        row = await self.wait(uuid, lambda r: r["task_state"] is None, timeout=180)
        assert row["vm_state"] == st.RESIZED, row
        return row


async def _rig(tmp: Path, driver: str) -> TwoHosts:
    if driver == "runc":
        path = tmp / "busybox.tar"
        build_busybox(path)
        images = Images(path, "raw", "docker")
    else:
        path = tmp / "blob.raw"  # the guest need not boot: QEMU running it is the point
        subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(path), "1M"], check=True)  # noqa: S603, S607
        images = Images(path, "raw", "bare")
    return await TwoHosts(tmp, driver, images).start()


@pytest.fixture
async def cleanup() -> AsyncIterator[list[TwoHosts]]:
    rigs: list[TwoHosts] = []
    yield rigs
    for rig in rigs:
        for host in HOSTS:
            drv = rig.drv(host)
            for status in await drv.list_instances():
                await drv.destroy(status.uuid)
        await rig.stop()


async def _leftovers(rig: TwoHosts, uuid: str) -> list[str]:
    return [f"{h}: {uuid}" for h in HOSTS if await rig.drv(h).get_power_state(uuid) != PowerState.NOSTATE]


@pytest.mark.parametrize("driver", [
    pytest.param("runc", marks=pytest.mark.skipif(bool(RUNC_MISSING), reason=RUNC_MISSING)),
    pytest.param("qemu", marks=pytest.mark.skipif(bool(QEMU_MISSING), reason=QEMU_MISSING)),
])
async def test_cold_migrate_revert_then_confirm(tmp_path: Path, driver: str, cleanup: list[TwoHosts]) -> None:
    rig = await _rig(tmp_path, driver)
    cleanup.append(rig)
    a, b = HOSTS
    uuid = await rig.boot_on(a)
    if driver == "runc":  # something the tenant wrote, which must travel with the disk
        res = await rig.drv(a).exec_in(uuid, _write_marker())
        assert res.exit_code == 0, res
    row = await rig.migrate(uuid)
    assert row["host"] == b and row["power_state"] == PowerState.RUNNING
    assert await rig.drv(b).get_power_state(uuid) == PowerState.RUNNING
    assert await rig.drv(a).get_power_state(uuid) == PowerState.SHUTDOWN  # kept for a revert
    if driver == "runc":
        res = await rig.drv(b).exec_in(uuid, _read_marker())
        assert res.stdout == b"moved\n", res

    await rig.act(uuid, "revert_resize", actions.REVERT_RESIZE, st.RESIZE_REVERTING)
    row = await rig.wait(uuid, lambda r: r["task_state"] is None, timeout=120)
    assert (row["vm_state"], row["host"]) == (st.ACTIVE, a), row
    assert await rig.drv(a).get_power_state(uuid) == PowerState.RUNNING
    assert await rig.drv(b).get_power_state(uuid) == PowerState.NOSTATE

    row = await rig.migrate(uuid)
    assert row["host"] == b
    await rig.act(uuid, "confirm_resize", actions.CONFIRM_RESIZE, st.RESIZE_CONFIRMING)
    row = await rig.wait(uuid, lambda r: r["task_state"] is None, timeout=120)
    assert (row["vm_state"], row["host"]) == (st.ACTIVE, b), row
    assert await rig.drv(a).get_power_state(uuid) == PowerState.NOSTATE
    assert not (rig.drv(a).dir / uuid).exists()
    async with rig.db.read() as conn:
        statuses = (await conn.execute(sa.select(migrations.c.status).where(migrations.c.instance_uuid == uuid)
                                       .order_by(migrations.c.id))).scalars().all()
    assert statuses == ["reverted", "confirmed"]
    assert not [p for p in (rig.conf.state_dir / INCOMING).rglob("*") if p.is_file()]  # received files used up

    await rig.act_delete(uuid)
    await rig.wait(uuid, lambda r: r["deleted"], timeout=60)
    assert await _leftovers(rig, uuid) == []


@pytest.mark.skipif(bool(RUNC_MISSING), reason=RUNC_MISSING)
async def test_evacuate_a_container_from_a_forced_down_host(tmp_path: Path, cleanup: list[TwoHosts]) -> None:
    rig = await _rig(tmp_path, "runc")
    cleanup.append(rig)
    a, b = HOSTS
    uuid = await rig.boot_on(a)
    async with rig.db.write() as conn:
        await conn.execute(sa.update(services).where(services.c.host == a).values(forced_down=True))
    await svc_migrate.evacuate(rig.compute_service(), rig.ctx, await rig.get(uuid), host=None, force=False,
                               on_shared_storage=None)
    row = await rig.wait(uuid, lambda r: r["task_state"] is None, timeout=120)
    assert (row["vm_state"], row["host"]) == (st.ACTIVE, b), row
    assert await rig.drv(b).get_power_state(uuid) == PowerState.RUNNING
    # Host a "comes back": its agent destroys the evacuated copy instead of restarting it.
    assert await rig.drv(a).get_power_state(uuid) != PowerState.NOSTATE
    assert await agent_migrate.destroy_evacuated(rig.managers[a].node) == [uuid]
    assert await rig.drv(a).get_power_state(uuid) == PowerState.NOSTATE
    assert await rig.drv(b).get_power_state(uuid) == PowerState.RUNNING  # its netns name untouched


def _write_marker() -> Any:
    from cumulo.compute.drivers.execspec import ExecRequest

    return ExecRequest(argv=("/bin/sh", "-c", "echo moved > /marker"), timeout=30)


def _read_marker() -> Any:
    from cumulo.compute.drivers.execspec import ExecRequest

    return ExecRequest(argv=("/bin/cat", "/marker"), timeout=30)
