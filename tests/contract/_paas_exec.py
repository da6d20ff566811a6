"""An ExecFn (cumulo.paas.exec) straight on a driver's Exec capability: the PaaS recipes' tests on
real guests (runc containers, QEMU tiny VMs) without the bus or the compute service."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cumulo.compute.drivers.base import Capability, driver_for
from cumulo.compute.drivers.execspec import ExecRequest
from cumulo.paas import exec as px


def exec_fn(drv: Any, uuid: str) -> px.ExecFn:
    """argv in server `uuid` of driver `drv`, answered as the compute service answers (ExecResult.to_dict)."""
    ex = driver_for(drv, Capability.EXEC)

    async def run(argv: list[str], env: dict[str, str], stdin: bytes, timeout: float, limit: int) -> Mapping[str, Any]:
        req = ExecRequest(argv=tuple(argv), env=env, stdin=stdin, timeout=timeout, output_limit=limit)
        return (await ex.exec_in(uuid, req)).to_dict()

    return run
