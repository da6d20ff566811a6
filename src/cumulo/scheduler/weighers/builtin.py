"""Standard weighers, named as in Nova. With multiplier 1.0 they spread; with a negative one they stack.

- RAMWeigher: free MEMORY_MB (multiplier conf.scheduler.ram_weight_multiplier, default 1.0).
- CPUWeigher: free VCPU (conf.scheduler.cpu_weight_multiplier).
- DiskWeigher: free DISK_GB (conf.scheduler.disk_weight_multiplier).
"""

from __future__ import annotations

from cumulo.conf import SchedulerSettings
from cumulo.placement.inventory import DISK_GB, MEMORY_MB, VCPU
from cumulo.scheduler.hoststate import HostState, RequestSpec
from cumulo.scheduler.weighers.base import BaseHostWeigher, register


@register
class RAMWeigher(BaseHostWeigher):
    name = "RAMWeigher"

    def multiplier_of(self, settings: SchedulerSettings) -> float:
        return settings.ram_weight_multiplier

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        return float(host.free(MEMORY_MB))


@register
class CPUWeigher(BaseHostWeigher):
    name = "CPUWeigher"

    def multiplier_of(self, settings: SchedulerSettings) -> float:
        return settings.cpu_weight_multiplier

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        return float(host.free(VCPU))


@register
class DiskWeigher(BaseHostWeigher):
    name = "DiskWeigher"

    def multiplier_of(self, settings: SchedulerSettings) -> float:
        return settings.disk_weight_multiplier

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        return float(host.free(DISK_GB))
