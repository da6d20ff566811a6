"""The compute drivers, by name: a name -> driver class registry (Incus's load.go map of
constructors), which the runtime iterates to choose the drivers of the local host.

Each class is imported only when asked for (a host without QEMU never imports the QEMU driver), and
says itself whether it can run here and why not: `probe(host)` (drivers/probe.py). Each instance
declares what it is and can do with DriverInfo (base.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, Protocol

if TYPE_CHECKING:
    from cumulo.compute.drivers.base import Driver
    from cumulo.compute.drivers.probe import HostFacts
    from cumulo.conf import Settings


class DriverClass(Protocol):
    """A driver class: made for a node, and probed for the host before that."""

    def __call__(self, conf: Settings, host_name: str, *, local: bool) -> Driver: ...

    def probe(self, host: HostFacts) -> list[str]:
        """Why the driver cannot run on `host`: one reason per missing piece; none when it can."""
        ...


def _fake() -> DriverClass:
    from cumulo.compute.drivers.fake import FakeDriver

    return FakeDriver


def _runc() -> DriverClass:
    from cumulo.compute.drivers.runc import RuncDriver

    return RuncDriver


def _qemu() -> DriverClass:
    from cumulo.compute.drivers.qemu import QemuDriver

    return QemuDriver


class Registered(NamedTuple):
    label: str  # how messages name the driver
    load: Callable[[], DriverClass]  # imports the driver's package


REGISTRY: dict[str, Registered] = {
    "fake": Registered("fake", _fake),
    "runc": Registered("runc", _runc),
    "qemu": Registered("QEMU", _qemu),
}
# The drivers `local_driver = auto` offers, in order, where they can run (the fake one only when
# none of them can).
AUTO: tuple[str, ...] = ("runc", "qemu")


def driver_class(name: str) -> DriverClass:
    """The class registered as `name` (ValueError for an unknown name; an import may fail)."""
    try:
        entry = REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown compute driver {name!r}") from None
    return entry.load()


def load_driver(name: str, conf: Settings, host_name: str, *, local: bool) -> Driver:
    """local: the driver runs on this machine (report its real resources) rather than simulating one."""
    return driver_class(name)(conf, host_name, local=local)
