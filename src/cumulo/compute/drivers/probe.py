"""What a driver's probe looks at on the host, so that a driver class can say whether it can run
here and why not (Incus's `Info()` with its `Error`), and tests can hand it a host of their own
instead of patching `os.geteuid` and `shutil.which`.

Each driver class has `probe(host) -> list[str]`: the reasons it cannot run on `host`, none when it
can. `LOCAL_HOST` is this machine; `FixedHost` is a host described by its facts.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Protocol


class HostFacts(Protocol):
    def is_root(self) -> bool:
        """Does this process run as root?"""
        ...

    def which(self, program: str) -> str | None:
        """The path of `program` on PATH, or None."""
        ...


class LocalHost:
    """This machine, as it is."""

    def is_root(self) -> bool:
        return os.geteuid() == 0

    def which(self, program: str) -> str | None:
        return shutil.which(program)


@dataclass(frozen=True)
class FixedHost:
    """A host described by its facts: root or not, and the programs on its PATH."""

    root: bool = False
    programs: frozenset[str] = frozenset()

    def is_root(self) -> bool:
        return self.root

    def which(self, program: str) -> str | None:
        return f"/usr/bin/{program}" if program in self.programs else None


LOCAL_HOST: HostFacts = LocalHost()


def missing_programs(host: HostFacts, programs: tuple[str, ...], install: str) -> list[str]:
    """A reason for each of `programs` not on the host's PATH, saying what to install."""
    return [f"`{p}` is not on PATH (apt-get install {install})" for p in programs if host.which(p) is None]
