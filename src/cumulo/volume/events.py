"""What the volume worker tells the compute side (Cinder's calls to Nova's external events).

Volume does not import compute (siblings): the runtime wires an adapter
(`cumulo.runtime_volumes.VolumeEventsAdapter`) as the worker's `compute_events`.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol


class ComputeNotifier(Protocol):
    def volume_extended(self, volume_id: str, new_size_gb: int) -> Awaitable[None]:
        """An attached volume grew (its file is already bigger): Nova's "volume-extended" event, which
        makes each server holding it tell its guest (QMP block_resize, a container's resize2fs)."""
        ...
