"""drivers/base.py is the one source of truth for capabilities: the Capability -> Protocol table,
`driver_for`, and capabilities that fail closed (none unless a driver declares and implements them)."""

from __future__ import annotations

import pytest

from cumulo.compute.drivers.base import (
    CAPABILITY_PROTOCOLS,
    Capability,
    DriverInfo,
    Power,
    capabilities_of,
    driver_for,
    supports,
)
from cumulo.compute.drivers.fake import FakeDriver
from cumulo.conf import load
from cumulo.errors import InvalidState


class Declares:
    """Declares power and pause but implements only pause."""

    def __init__(self, caps: frozenset[Capability]) -> None:
        self.info = DriverInfo(name="odd", hypervisor_type="odd", instance_types=("exe",), capabilities=caps)

    async def pause(self, uuid: str) -> None: ...

    async def unpause(self, uuid: str) -> None: ...


def test_every_capability_names_its_protocol() -> None:
    assert set(CAPABILITY_PROTOCOLS) == set(Capability)


def test_a_driver_that_declares_nothing_supports_nothing() -> None:
    assert DriverInfo(name="x", hypervisor_type="x", instance_types=()).capabilities == frozenset()
    drv = Declares(frozenset())
    assert capabilities_of(drv) == frozenset()  # type: ignore[arg-type]
    with pytest.raises(InvalidState, match="The odd driver of node n1 does not support pause"):
        driver_for(drv, Capability.PAUSE, node="n1")  # type: ignore[call-overload]


def test_declared_without_the_protocol_is_not_supported() -> None:
    drv = Declares(frozenset({Capability.POWER, Capability.PAUSE}))
    assert not supports(drv, Capability.POWER)  # type: ignore[arg-type]
    assert capabilities_of(drv) == {Capability.PAUSE}  # type: ignore[arg-type]
    assert driver_for(drv, Capability.PAUSE) is drv  # type: ignore[call-overload]
    with pytest.raises(InvalidState, match="does not implement Power"):
        driver_for(drv, Capability.POWER)


def test_the_fake_driver_supports_all_it_declares(tmp_path: object) -> None:
    drv = FakeDriver(load(env={}, state_dir=tmp_path), "h1", local=False)
    assert capabilities_of(drv) == drv.info.capabilities == frozenset(Capability)
    power: Power = driver_for(drv, Capability.POWER)
    assert power is drv
