"""Volume storage on the host: backends by name (a registry), qemu-img, loop devices and ext4.

Layer 6, beside host and netplane: no DB, no bus, no service imports. The volume worker opens the
store its config names (`open_store("file", StoreConfig.under(state_dir))`) and drives it by ids;
the contract suite (tests/contract/test_blockstore_contract.py) runs on every registered backend,
so an LVM backend (thin LVs on a loop device) joins by adding a loader here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, Protocol

if TYPE_CHECKING:
    from cumulo.blockstore.base import BlockStore, StoreConfig


class BackendClass(Protocol):
    """A backend class: made from a StoreConfig, and probed for the host before that."""

    def __call__(self, config: StoreConfig) -> BlockStore: ...

    def probe(self) -> list[str]:
        """Why the backend cannot run here: one reason per missing piece; none when it can."""
        ...


def _file() -> BackendClass:
    from cumulo.blockstore.file import FileStore

    return FileStore


class Registered(NamedTuple):
    label: str  # how messages name the backend
    load: Callable[[], BackendClass]  # imports the backend's module


REGISTRY: dict[str, Registered] = {
    "file": Registered("sparse raw files", _file),
}


def backend_class(name: str) -> BackendClass:
    """The class registered as `name` (ValueError for an unknown name)."""
    try:
        entry = REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown volume backend {name!r}; known: {', '.join(sorted(REGISTRY))}") from None
    return entry.load()


def open_store(name: str, config: StoreConfig) -> BlockStore:
    """The store of backend `name` over `config` (call `ensure_dirs()` before using it)."""
    return backend_class(name)(config)
