"""Host filters: the interface and the registry (scheduler.loadables) that makes them pluggable by name."""

from __future__ import annotations

from cumulo.scheduler.hoststate import HostState, RequestSpec
from cumulo.scheduler.loadables import Loadable, Registry


class BaseHostFilter(Loadable):
    """A filter keeps the hosts that can take the request. `name` appears in NoValidHost faults."""

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        raise NotImplementedError

    def filter_all(self, hosts: list[HostState], spec: RequestSpec) -> list[HostState]:
        return [h for h in hosts if self.host_passes(h, spec)]


REGISTRY: Registry[BaseHostFilter] = Registry("filters")
register = REGISTRY.register
