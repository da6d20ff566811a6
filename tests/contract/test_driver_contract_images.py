"""More of the driver contract, for the image-side operations: rebuild and snapshot in every power state.

Reuses the DriverCase machinery (drivers, fixtures, specs) of test_driver_contract.py, so every
driver there runs these too, where it declares the capability.
"""

from __future__ import annotations

import os
import uuid as uuidlib
from pathlib import Path

import pytest
from test_driver_contract import (  # noqa: F401  # case, driver, settings: fixtures
    DriverCase,
    case,
    driver,
    listed,
    make_spec,
    needs,
    settings,
)

from cumulo.compute.drivers.base import (
    Capability,
    Driver,
    Pause,
    Power,
    PowerState,
    Rebuild,
    Snapshot,
)
from cumulo.errors import DriverError


async def test_rebuild_of_a_stopped_instance_leaves_it_running(case: DriverCase, driver: Driver, tmp_path: Path) -> None:  # noqa: F811
    needs(driver, Capability.REBUILD)
    needs(driver, Capability.POWER)
    assert isinstance(driver, Rebuild) and isinstance(driver, Power)
    spec = make_spec(case, tmp_path)
    await driver.spawn(spec)
    await driver.power_off(spec.uuid)
    await driver.rebuild(spec)
    assert (await listed(driver))[spec.uuid] == PowerState.RUNNING
    await driver.destroy(spec.uuid)
    assert await driver.cleanup_orphans(set()) == []


async def test_rebuild_of_a_missing_instance_raises(case: DriverCase, driver: Driver, tmp_path: Path) -> None:  # noqa: F811
    needs(driver, Capability.REBUILD)
    assert isinstance(driver, Rebuild)
    spec = make_spec(case, tmp_path)
    with pytest.raises(DriverError):
        await driver.rebuild(spec)
    assert spec.uuid not in await listed(driver)


async def test_snapshot_keeps_the_power_state(case: DriverCase, driver: Driver, tmp_path: Path) -> None:  # noqa: F811
    needs(driver, Capability.SNAPSHOT)
    assert isinstance(driver, Snapshot)
    spec = make_spec(case, tmp_path)
    await driver.spawn(spec)

    async def snap_and_check(name: str, want: PowerState) -> None:
        workdir = tmp_path / name
        workdir.mkdir()
        result = await driver.snapshot(spec.uuid, str(workdir))
        assert Path(result.path).parent == workdir and os.path.getsize(result.path) > 0
        assert await driver.get_power_state(spec.uuid) == want

    await snap_and_check("running", PowerState.RUNNING)
    if Capability.PAUSE in driver.info.capabilities:
        assert isinstance(driver, Pause)
        await driver.pause(spec.uuid)
        await snap_and_check("paused", PowerState.PAUSED)
        await driver.unpause(spec.uuid)
    if Capability.POWER in driver.info.capabilities:
        assert isinstance(driver, Power)
        await driver.power_off(spec.uuid)
        await snap_and_check("stopped", PowerState.SHUTDOWN)


async def test_snapshot_of_a_missing_instance_raises(driver: Driver, tmp_path: Path) -> None:  # noqa: F811
    needs(driver, Capability.SNAPSHOT)
    assert isinstance(driver, Snapshot)
    workdir = tmp_path / "snap"
    workdir.mkdir()
    with pytest.raises(DriverError):
        await driver.snapshot(str(uuidlib.uuid4()), str(workdir))
    assert list(workdir.iterdir()) == []
