"""Host weighers, pluggable by name. `conf.scheduler.weighers` (extra key scheduler_weighers) picks them.

The default is RAMWeigher (spread instances by free RAM, as Nova does by default) and the soft server
group weighers, which weigh nothing unless the request's group has their policy.
"""

from __future__ import annotations

from cumulo.conf import Settings
from cumulo.scheduler.weighers import affinity as _affinity  # noqa: F401  (registers the server group weighers)
from cumulo.scheduler.weighers import builtin as _builtin  # noqa: F401  (registers the standard weighers)
from cumulo.scheduler.weighers.base import REGISTRY, BaseHostWeigher, normalize, register, weigh_hosts

DEFAULT_WEIGHERS = ("RAMWeigher", "ServerGroupSoftAffinityWeigher", "ServerGroupSoftAntiAffinityWeigher")


def configured_weighers(conf: Settings) -> list[BaseHostWeigher]:
    return REGISTRY.load(conf.scheduler.weighers or DEFAULT_WEIGHERS, conf)


__all__ = ["DEFAULT_WEIGHERS", "REGISTRY", "BaseHostWeigher", "configured_weighers", "normalize", "register", "weigh_hosts"]
