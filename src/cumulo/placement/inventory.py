"""Resource classes, amounts and inventories: the vocabulary placement and the scheduler share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

VCPU = "VCPU"
MEMORY_MB = "MEMORY_MB"
DISK_GB = "DISK_GB"
RESOURCE_CLASSES = (VCPU, MEMORY_MB, DISK_GB)

Resources = dict[str, int]


@dataclass(frozen=True)
class Inventory:
    total: int
    reserved: int = 0
    min_unit: int = 1
    max_unit: int = 0
    step_size: int = 1
    allocation_ratio: float = 1.0

    @property
    def capacity(self) -> int:
        return int((self.total - self.reserved) * self.allocation_ratio)



def inventory_from_row(r: Any) -> Inventory:
    """An Inventory from an `inventories` row (a mapping)."""
    return Inventory(
        total=int(r["total"]),
        reserved=int(r["reserved"]),
        min_unit=int(r["min_unit"]),
        max_unit=int(r["max_unit"]),
        step_size=int(r["step_size"]),
        allocation_ratio=float(r["allocation_ratio"]),
    )


def shortfall(resources: Resources, inventory: dict[str, Inventory], usage: Resources) -> dict[str, str]:
    """What of `resources` a provider with `inventory` and `usage` cannot give, and why (empty: it
    fits): a claim's check, one at a time (Placement._claim_once) or batched (batch.py)."""
    short: dict[str, str] = {}
    for rc, amount in resources.items():
        inv = inventory.get(rc)
        if inv is None:
            short[rc] = "no inventory"
        elif amount > (inv.max_unit or inv.total) or amount < inv.min_unit:
            short[rc] = f"requested {amount} is outside {inv.min_unit}..{inv.max_unit or inv.total}"
        elif usage.get(rc, 0) + amount > inv.capacity:
            short[rc] = f"requested {amount}, free {inv.capacity - usage.get(rc, 0)} of {inv.capacity}"
    return short
