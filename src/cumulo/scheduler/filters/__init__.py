"""Host filters, pluggable by name. `conf.scheduler.filters` (extra key scheduler_filters) picks them.

Default order (cheap and decisive first, as Nova runs them): ComputeFilter, AvailabilityZoneFilter,
ComputeCapabilitiesFilter, ImagePropertiesFilter, CoreFilter, RamFilter, DiskFilter,
PhysicalNetworkFilter (issue 14: flat networks' physnets), then the server
group filters ServerGroupAntiAffinityFilter and ServerGroupAffinityFilter (filters.affinity).
"""

from __future__ import annotations

from cumulo.conf import Settings
from cumulo.scheduler.filters import affinity as _affinity  # noqa: F401  (registers the server group filters)
from cumulo.scheduler.filters import builtin as _builtin  # noqa: F401  (registers the standard filters)
from cumulo.scheduler.filters.base import REGISTRY, BaseHostFilter, register

DEFAULT_FILTERS = (
    "ComputeFilter",
    "AvailabilityZoneFilter",
    "ComputeCapabilitiesFilter",
    "ImagePropertiesFilter",
    "CoreFilter",
    "RamFilter",
    "DiskFilter",
    "PhysicalNetworkFilter",
    "ServerGroupAntiAffinityFilter",
    "ServerGroupAffinityFilter",
)


def configured_filters(conf: Settings) -> list[BaseHostFilter]:
    return REGISTRY.load(conf.scheduler.filters or DEFAULT_FILTERS, conf)


__all__ = ["DEFAULT_FILTERS", "REGISTRY", "BaseHostFilter", "configured_filters", "register"]
