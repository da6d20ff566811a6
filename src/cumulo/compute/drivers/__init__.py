"""Driver registry. Drivers are looked up by name; each declares itself with DriverInfo."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cumulo.compute.drivers.base import Driver
    from cumulo.conf import Settings


def load_driver(name: str, conf: Settings, host_name: str, *, local: bool) -> Driver:
    """local: the driver runs on this machine (report its real resources) rather than simulating one."""
    if name == "fake":
        from cumulo.compute.drivers.fake import FakeDriver

        return FakeDriver(conf, host_name, local=local)
    if name == "runc":
        from cumulo.compute.drivers.runc import RuncDriver

        return RuncDriver(conf, host_name, local=local)
    if name == "qemu":
        from cumulo.compute.drivers.qemu import QemuDriver

        return QemuDriver(conf, host_name, local=local)
    raise ValueError(f"unknown compute driver {name!r}")
