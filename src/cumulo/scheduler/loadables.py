"""One registry type for the scheduler's filters and weighers, as Nova's loadables.py.

Host filters and host weighers are both loadables. A class registers under its `name` (a plugin registers the same way, with the registry's
`register` as a class decorator). A configured list of names becomes instances in that order, or
a ValueError that names every unknown one and lists the known ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Generic, TypeVar

from cumulo.conf import Settings


class Loadable:
    """What filters and weighers share: a name to be configured by, and the settings they read."""

    name: ClassVar[str] = ""

    def __init__(self, conf: Settings) -> None:
        self.conf = conf


L = TypeVar("L", bound=Loadable)


class Registry(dict[str, type[L]], Generic[L]):
    """name -> class of one kind of loadable (`kind` names it in errors: "filters", "weighers")."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def register(self, cls: type[L]) -> type[L]:
        """Class decorator: make `cls` available under its `name`."""
        if not cls.name:
            raise ValueError(f"{cls.__qualname__} has no name")
        self[cls.name] = cls
        return cls

    def load(self, names: Sequence[str], conf: Settings) -> list[L]:
        """Instances of the named classes, in order."""
        unknown = [n for n in names if n not in self]
        if unknown:
            raise ValueError(
                f"unknown scheduler {self.kind}: {', '.join(unknown)}; known: {', '.join(sorted(self))}"
            )
        return [self[n](conf) for n in names if n]
