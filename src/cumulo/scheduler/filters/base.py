"""Host filters: the interface and the registry that makes them pluggable by name."""

from __future__ import annotations

from typing import ClassVar, TypeVar

from cumulo.conf import Settings
from cumulo.scheduler.hoststate import HostState, RequestSpec


class BaseHostFilter:
    """A filter keeps the hosts that can take the request. `name` appears in NoValidHost faults."""

    name: ClassVar[str] = ""

    def __init__(self, conf: Settings) -> None:
        self.conf = conf

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        raise NotImplementedError

    def filter_all(self, hosts: list[HostState], spec: RequestSpec) -> list[HostState]:
        return [h for h in hosts if self.host_passes(h, spec)]


REGISTRY: dict[str, type[BaseHostFilter]] = {}
F = TypeVar("F", bound=type[BaseHostFilter])


def register(cls: F) -> F:
    """Class decorator: make a filter available under its `name` (a plugin registers the same way)."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    REGISTRY[cls.name] = cls
    return cls
