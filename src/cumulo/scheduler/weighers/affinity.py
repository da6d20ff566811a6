"""Soft server group policies as weighers, named as in Nova (weights/affinity.py).

The raw weight is the number of the group's other members on the candidate's HOST:
ServerGroupSoftAffinityWeigher prefers more (multiplier conf.scheduler.soft_affinity_weight_multiplier,
default 1.0), ServerGroupSoftAntiAffinityWeigher prefers fewer (its raw weight is negated;
conf.scheduler.soft_anti_affinity_weight_multiplier, default 1.0). A request without a group, or
with another policy, weighs 0 everywhere, so the other weighers decide.
"""

from __future__ import annotations

from cumulo.conf import SchedulerSettings
from cumulo.scheduler.groups import SOFT_AFFINITY, SOFT_ANTI_AFFINITY
from cumulo.scheduler.hoststate import HostState, RequestSpec
from cumulo.scheduler.weighers.base import BaseHostWeigher, register


class _SoftAffinityWeigherBase(BaseHostWeigher):
    policy = ""

    def members_on_host(self, host: HostState, spec: RequestSpec) -> int:
        group = spec.instance_group
        if not group or group.get("policy") != self.policy:
            return 0
        return [str(h) for h in group.get("hosts") or ()].count(host.host)


@register
class ServerGroupSoftAffinityWeigher(_SoftAffinityWeigherBase):
    name = "ServerGroupSoftAffinityWeigher"
    policy = SOFT_AFFINITY

    def multiplier_of(self, settings: SchedulerSettings) -> float:
        return settings.soft_affinity_weight_multiplier

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        return float(self.members_on_host(host, spec))


@register
class ServerGroupSoftAntiAffinityWeigher(_SoftAffinityWeigherBase):
    name = "ServerGroupSoftAntiAffinityWeigher"
    policy = SOFT_ANTI_AFFINITY

    def multiplier_of(self, settings: SchedulerSettings) -> float:
        return settings.soft_anti_affinity_weight_multiplier

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        return -float(self.members_on_host(host, spec))
