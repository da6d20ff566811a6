"""Host weighers: the interface, Nova's normalisation, and the registry (scheduler.loadables)."""

from __future__ import annotations

from cumulo.conf import SchedulerSettings, Settings
from cumulo.scheduler.hoststate import HostState, RequestSpec
from cumulo.scheduler.loadables import Loadable, Registry


class BaseHostWeigher(Loadable):
    """Gives each host a raw number; higher wins once multiplied (a negative multiplier stacks)."""

    def __init__(self, conf: Settings) -> None:
        super().__init__(conf)
        self.multiplier = self.multiplier_of(conf.scheduler)

    def multiplier_of(self, settings: SchedulerSettings) -> float:
        """This weigher's multiplier (1.0 unless a subclass reads one of the settings)."""
        return 1.0

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        raise NotImplementedError


REGISTRY: Registry[BaseHostWeigher] = Registry("weighers")
register = REGISTRY.register


def normalize(values: list[float]) -> list[float]:
    """Scale to 0..1 across the candidate hosts, as Nova does, so weighers can be summed."""
    if not values:
        return []
    lo, hi = min(values), max(values)
    if hi == lo:
        return [0.0 for _ in values]
    return [(v - lo) / (hi - lo) for v in values]


def weigh_hosts(weighers: list[BaseHostWeigher], hosts: list[HostState], spec: RequestSpec) -> list[tuple[float, HostState]]:
    """Hosts best first; ties go to the host name so choices are reproducible."""
    totals = [0.0 for _ in hosts]
    for w in weighers:
        for i, norm in enumerate(normalize([w.weigh(h, spec) for h in hosts])):
            totals[i] += w.multiplier * norm
    ranked = sorted(zip(totals, hosts, strict=True), key=lambda t: (-t[0], t[1].host, t[1].node))
    return ranked
