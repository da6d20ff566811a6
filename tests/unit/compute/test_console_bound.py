"""files.append_bounded: a log that never passes its bound, keeps whole lines, and loses nothing inside
what it keeps."""

from __future__ import annotations

import random
from pathlib import Path

from cumulo.compute.drivers import files


def test_append_bounded_never_passes_the_bound_and_keeps_a_contiguous_tail(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    bound = 4096
    rng = random.Random(7)
    lines = [f"line-{i}-{'x' * rng.randrange(0, 60)}\n".encode() for i in range(5000)]
    i = 0
    while i < len(lines):
        n = rng.choice([1, 3, 10, 50, 200])  # chunks smaller and larger than bound/2
        files.append_bounded(log, b"".join(lines[i : i + n]), bound)
        i = min(i + n, len(lines))
        data = log.read_bytes()
        assert len(data) <= bound
        kept = [int(ln.split(b"-")[1]) for ln in data.splitlines()]
        assert kept == list(range(kept[0], i)), "a gap inside the kept tail"
    assert log.stat().st_mode & 0o777 == 0o600
