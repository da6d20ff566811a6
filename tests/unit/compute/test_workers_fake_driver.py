"""What the fake driver promises beyond the shared contract (tests/contract): resources, console
contents, simulated failures and its on-disk records."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from cumulo import conf as conf_mod
from cumulo.compute.drivers.base import FlavorSpec, ImageSpec, InstanceSpec, PowerState
from cumulo.compute.drivers.fake import FakeDriver
from cumulo.conf import Settings
from cumulo.errors import DriverError


@pytest.fixture
def conf(tmp_path: Path) -> Settings:
    return conf_mod.load(env={}, state_dir=tmp_path / "state", fake_host_vcpus=7, fake_host_ram_mb=7000,
                         fake_host_disk_gb=70)


def spec(uuid: str = "11111111-1111-1111-1111-111111111111", **kw: object) -> InstanceSpec:
    values: dict[str, object] = {"uuid": uuid, "name": "web", "hostname": "web-1", "project_id": "p",
                                 "flavor": FlavorSpec(vcpus=2, memory_mb=512, root_gb=1), "image": None}
    values.update(kw)
    return InstanceSpec(**values)  # type: ignore[arg-type]


async def test_simulated_and_local_resources(conf: Settings) -> None:
    sim = await FakeDriver(conf, "sim").get_host_resources()
    assert (sim.vcpus, sim.memory_mb, sim.local_gb) == (7, 7000, 70)
    local = await FakeDriver(conf, "here", local=True).get_host_resources()
    assert local.vcpus == os.cpu_count()
    with open("/proc/meminfo") as fh:
        mem_kb = int(next(line for line in fh if line.startswith("MemTotal:")).split()[1])
    assert local.memory_mb == mem_kb // 1024
    assert local.local_gb == shutil.disk_usage(conf.state_dir).total // (1 << 30)
    assert local.cpu_info["arch"]


async def test_info_declares_everything(conf: Settings) -> None:
    info = FakeDriver(conf, "h").info
    assert info.name == "fake" and info.hypervisor_type == "fake"
    assert {"fake", "container", "qemu"} <= set(info.instance_types)
    custom = FakeDriver(conf.replace(extra={"fake_instance_types": ["fake"]}), "h").info
    assert custom.instance_types == ("fake",)


async def test_console_tells_what_happened(conf: Settings) -> None:
    drv = FakeDriver(conf, "h")
    await drv.init_host()
    s = spec(user_data=b"#!/bin/bash\necho \"marker 42\"\nls /\n")
    await drv.spawn(s)
    await drv.power_off(s.uuid)
    await drv.power_on(s)
    log = await drv.get_console_output(s.uuid)
    assert "web-1 login:" in log and "marker 42" in log and "ls /" not in log
    assert "Power down" in log and log.count("login:") == 2


async def test_non_script_user_data_is_not_echoed(conf: Settings) -> None:
    drv = FakeDriver(conf, "h")
    await drv.init_host()
    s = spec(user_data=b"echo not-a-script\n")
    await drv.spawn(s)
    assert "not-a-script" not in await drv.get_console_output(s.uuid)


async def test_fail_ops_come_from_image_or_metadata(conf: Settings, tmp_path: Path) -> None:
    drv = FakeDriver(conf, "h")
    await drv.init_host()
    img = ImageSpec(id="i", path="", disk_format="raw", container_format="bare",
                    properties={"cumulo_fake_fail": "pause"})
    s = spec(image=img, metadata={"cumulo_fake_fail": "snapshot, suspend"})
    await drv.spawn(s)
    for call in (lambda: drv.pause(s.uuid), lambda: drv.suspend(s.uuid),
                 lambda: drv.snapshot(s.uuid, str(tmp_path))):
        with pytest.raises(DriverError, match="failed as requested"):
            await call()
    assert await drv.get_power_state(s.uuid) == PowerState.RUNNING
    await drv.power_off(s.uuid)  # not listed: works


async def test_wrong_state_transitions_are_refused(conf: Settings) -> None:
    drv = FakeDriver(conf, "h")
    await drv.init_host()
    s = spec()
    await drv.spawn(s)
    await drv.power_off(s.uuid)
    with pytest.raises(DriverError):
        await drv.pause(s.uuid)
    with pytest.raises(DriverError):
        await drv.reboot(s, hard=False)


async def test_records_live_in_the_state_dir(conf: Settings) -> None:
    drv = FakeDriver(conf, "h")
    await drv.init_host()
    s = spec()
    await drv.spawn(s)
    await drv.pause(s.uuid)
    path = conf.state_dir / "fake" / "h" / f"{s.uuid}.json"
    rec = json.loads(path.read_text())
    assert rec["power"] == PowerState.PAUSED and rec["flavor"]["vcpus"] == 2
    other = FakeDriver(conf, "other-host")
    await other.init_host()
    assert await other.list_instances() == []  # hosts never see each other's guests
    await drv.destroy(s.uuid)
    assert not path.exists()


async def test_diagnostics_count_nics(conf: Settings) -> None:
    drv = FakeDriver(conf, "h")
    await drv.init_host()
    s = spec(network_info=[{"id": "port-1"}, {"id": "port-2"}])
    await drv.spawn(s)
    diag = await drv.get_diagnostics(s.uuid)
    assert diag["num_nics"] == 2 and len(diag["nic_details"]) == 2
    assert diag["nic_details"][0]["mac_address"].startswith("fa:16:3e")


async def test_cleanup_orphans_spares_known_guests_files(conf: Settings) -> None:
    drv = FakeDriver(conf, "h")
    await drv.init_host()
    s = spec()
    await drv.spawn(s)
    base = conf.state_dir / "fake" / "h"
    saving = base / f"{s.uuid}.json.tmp"  # a save in progress
    saving.write_text("{}")
    junk = base / "not-a-guest.bin"
    junk.write_text("x")
    removed = await drv.cleanup_orphans({s.uuid})
    assert removed == ["not-a-guest.bin"]
    assert saving.exists() and (base / f"{s.uuid}.json").exists()
