"""Server group filters, named as in Nova. They act only when the request's instance joined a
group whose policy they serve, and compare compute HOSTS (all nodes of one host are one host).

- ServerGroupAffinityFilter (affinity): once a member is placed, only its host passes.
- ServerGroupAntiAffinityFilter (anti-affinity): a host passes while it holds fewer members than
  the group's rule max_server_per_host (1 by default).

The soft policies are weighers (scheduler.weighers.affinity). The conductor checks the hard ones
again when it records the chosen host, so concurrent builds of one group cannot both win.
"""

from __future__ import annotations

from cumulo.scheduler.filters.base import BaseHostFilter, register
from cumulo.scheduler.groups import AFFINITY, ANTI_AFFINITY, violation
from cumulo.scheduler.hoststate import HostState, RequestSpec


class _GroupFilter(BaseHostFilter):
    policy = ""

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        group = spec.instance_group
        if not group or group.get("policy") != self.policy:
            return True
        hosts = [str(h) for h in group.get("hosts") or ()]
        return violation(self.policy, group.get("rules"), hosts, host.host) is None


@register
class ServerGroupAffinityFilter(_GroupFilter):
    name = "ServerGroupAffinityFilter"
    policy = AFFINITY


@register
class ServerGroupAntiAffinityFilter(_GroupFilter):
    name = "ServerGroupAntiAffinityFilter"
    policy = ANTI_AFFINITY
