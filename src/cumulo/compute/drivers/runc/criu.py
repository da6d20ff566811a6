"""Live migration of containers: what this host can do, as `hypervisor show` reports it.

Containers migrate cold (compute/agent/migrate.py). A live move would need CRIU (checkpoint on the
source, the image dir sent, restore on the destination); CRIU is used only where `criu check` passes
(the probe is suspend.py's, once per process). The answer lands in the node's details, which
`openstack hypervisor show` prints under cpu_info.driver_details:
    live_migration         "no" (the runc node never advertises the live_migration capability)
    live_migration_reason  why, naming CRIU's state here ("criu is not installed", the failing
                           `criu check` line, or: CRIU works but its live migration is not built)
os-migrateLive of a container is a 400 quoting the reason (compute/service/live_migration.py).
"""

from __future__ import annotations

from cumulo.compute.drivers.runc.suspend import probe_criu

NOT_BUILT = "CRIU live migration of containers is not implemented; containers migrate cold"


async def live_migration_details() -> dict[str, str]:
    ok, why = await probe_criu()
    reason = f"CRIU: {why}; {NOT_BUILT}" if ok else f"CRIU: {why}, so containers migrate cold (no live migration)"
    return {"live_migration": "no", "live_migration_reason": reason}
