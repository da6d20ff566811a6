"""Choosing a transport by name (the `bus` setting)."""

from __future__ import annotations

from cumulo.bus.base import Bus
from cumulo.bus.inproc import InprocBus


def make_bus(transport: str) -> Bus:
    if transport == "inproc":
        return InprocBus()
    raise ValueError(f"unsupported transport {transport!r}; only 'inproc' is available")
