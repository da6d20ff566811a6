"""The transfer endpoint's extents framing (compute.transfer.server._receive_extents) whatever way the
body is cut into chunks: headers split across chunks, several extents in one chunk, bad framing."""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cumulo import errors
from cumulo.compute.transfer.server import EXTENT, _receive_extents, _Sink


def _framed(extents: list[tuple[int, bytes]]) -> bytes:
    return b"".join(EXTENT.pack(off, len(data)) + data for off, data in extents)


async def _chunks(body: bytes, cuts: list[int]) -> AsyncIterator[bytes]:
    last = 0
    for c in [*sorted(cuts), len(body)]:
        if c > last:
            yield body[last:c]
            last = c


@pytest.mark.parametrize("seed", range(6))
async def test_any_chunking_gives_the_same_file(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    extents = [(0, os.urandom(5)), (100, os.urandom(70_000)), (200_000, b""), (200_000, os.urandom(3)),
               (1 << 20, os.urandom(17))]
    body = _framed(extents)
    cuts = [rng.randrange(len(body)) for _ in range(rng.choice([0, 3, 40]))] + ([1, 2, 3] if seed % 2 else [])
    sink = _Sink(tmp_path / "f.tmp")
    await _receive_extents(_chunks(body, cuts), sink, 2 << 20)
    sink.finish(2 << 20, tmp_path / "f")
    want = bytearray(2 << 20)
    for off, data in extents:
        want[off:off + len(data)] = data
    assert (tmp_path / "f").read_bytes() == bytes(want)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (_framed([(10, b"abc"), (5, b"x")]), "Bad extent"),  # going back
        (_framed([(0, b"abc")]) + EXTENT.pack(0, 10)[:7], "ended inside"),
        (EXTENT.pack(0, 10) + b"short", "ended inside"),
        (_framed([(1000, b"x" * 30)]), "Bad extent"),  # past the size
    ],
)
async def test_bad_framing(tmp_path: Path, body: bytes, says: str) -> None:
    sink = _Sink(tmp_path / "f.tmp")
    try:
        with pytest.raises(errors.Invalid, match=says):
            await _receive_extents(_chunks(body, [3, 9, 20]), sink, 1024)
    finally:
        sink.abort()
