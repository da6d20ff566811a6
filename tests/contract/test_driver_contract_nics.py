"""More of the driver contract: the NICS capability (NicSpec at spawn, attach_nic / detach_nic).

Reuses the DriverCase machinery of test_driver_contract.py, so every driver that declares NICS
runs these. Real drivers plug into a real network namespace with its bridge (netplane), made and
deleted here by name; the fake driver records NICs and plumbs nothing. What a NIC carries (real
packets) is tests/contract/test_nics.py's.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import uuid as uuidlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_driver_contract import (  # noqa: F401  # case, driver, settings: fixtures
    DriverCase,
    case,
    driver,
    make_spec,
    needs,
    settings,
)

from cumulo.compute.drivers.base import Capability, Driver, NicSpec, Power, PowerState, driver_for
from cumulo.netplane import bridge, netns

REAL_NETWORKS = os.geteuid() == 0 and shutil.which("ip") is not None


def nic_on(net: str, address: str) -> NicSpec:
    port = str(uuidlib.uuid4())
    mac = "fa:16:3e:" + ":".join(f"{b:02x}" for b in os.urandom(3))
    return NicSpec(port_id=port, mac=mac, netns=net, bridge=bridge.BRIDGE, device=netns.port_device(port),
                   addresses=(f"{address}/24",), gateway="10.90.0.1")


@pytest.fixture
async def net() -> AsyncIterator[str]:
    name = netns.network_ns(str(uuidlib.uuid4()))
    if REAL_NETWORKS:
        await bridge.ensure(name)
    try:
        yield name
    finally:
        if REAL_NETWORKS:
            await netns.delete(name)


async def on_bridge(drv: Driver, net: str) -> set[str] | None:
    """The devices on the network's bridge; None where nothing is plumbed (the fake driver)."""
    if drv.info.name == "fake":
        return None
    assert REAL_NETWORKS, "a real driver runs as root, with iproute2"
    return set(await bridge.ports(net))


async def test_nic_at_spawn_then_attach_and_detach_and_destroy(
        case: DriverCase, driver: Driver, net: str, tmp_path: Path) -> None:  # noqa: F811
    needs(driver, Capability.NICS)
    nics = driver_for(driver, Capability.NICS)
    first = nic_on(net, "10.90.0.5")
    spec = dataclasses.replace(make_spec(case, tmp_path), nics=(first,))
    await driver.spawn(spec)
    assert await driver.get_power_state(spec.uuid) == PowerState.RUNNING
    assert await on_bridge(driver, net) in (None, {first.device})
    await nics.detach_nic(spec.uuid, str(uuidlib.uuid4()))  # a port it does not have: a no-op
    assert await on_bridge(driver, net) in (None, {first.device})

    if Capability.POWER in driver.info.capabilities:
        assert isinstance(driver, Power)
        # Attached while stopped, plugged by the next start; detached while stopped, gone after it.
        second = nic_on(net, "10.90.0.6")
        await driver.power_off(spec.uuid)
        await nics.attach_nic(spec.uuid, second)
        await nics.attach_nic(spec.uuid, second)  # again: a no-op
        await driver.power_on(spec)
        assert await on_bridge(driver, net) in (None, {first.device, second.device})
        await driver.power_off(spec.uuid)
        await nics.detach_nic(spec.uuid, second.port_id)
        await driver.power_on(spec)
        assert await on_bridge(driver, net) in (None, {first.device})

    await driver.destroy(spec.uuid)
    assert case.leftovers(driver, spec.uuid) == []
    assert await on_bridge(driver, net) in (None, set())
