"""Standard weighers, named as in Nova. With multiplier 1.0 they spread; with a negative one they stack.

- RAMWeigher: free MEMORY_MB (multiplier conf.extra["ram_weight_multiplier"], default 1.0).
- CPUWeigher: free VCPU (conf.extra["cpu_weight_multiplier"]).
- DiskWeigher: free DISK_GB (conf.extra["disk_weight_multiplier"]).
"""

from __future__ import annotations

from cumulo.placement.inventory import DISK_GB, MEMORY_MB, VCPU
from cumulo.scheduler.hoststate import HostState, RequestSpec
from cumulo.scheduler.weighers.base import BaseHostWeigher, register


@register
class RAMWeigher(BaseHostWeigher):
    name = "RAMWeigher"
    multiplier_key = "ram_weight_multiplier"

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        return float(host.free(MEMORY_MB))


@register
class CPUWeigher(BaseHostWeigher):
    name = "CPUWeigher"
    multiplier_key = "cpu_weight_multiplier"

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        return float(host.free(VCPU))


@register
class DiskWeigher(BaseHostWeigher):
    name = "DiskWeigher"
    multiplier_key = "disk_weight_multiplier"

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        return float(host.free(DISK_GB))
