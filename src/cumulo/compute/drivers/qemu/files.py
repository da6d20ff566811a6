"""Small file helpers of the QEMU driver (blocking: call them in a thread): the console log
(notes of ours, the in-place bound, tails) and atomic JSON records."""

from __future__ import annotations

import os
from pathlib import Path

from cumulo.compute.drivers import files as shared
from cumulo.compute.drivers.files import read_json, tail_bytes, trim_in_place, write_json
from cumulo.compute.drivers.qemu.process import Layout

__all__ = ["last_lines", "note", "read_from", "read_json", "read_tail", "tail_bytes", "trim_in_place", "write_json"]


def note(layout: Layout, line: str) -> None:
    """A line of ours in the console log (never creates it: a dir being removed)."""
    shared.note(layout.console, line, create=False)


def last_lines(data: bytes, n: int = 15) -> str:
    lines = [ln for ln in data.decode(errors="replace").splitlines() if ln.strip()]
    return "\n".join(lines[-n:])


def read_from(path: Path, offset: int, limit: int = 1 << 20) -> bytes:
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size < offset:  # trimmed under us: start over from the top
                offset = 0
            fh.seek(offset)
            return fh.read(limit)
    except OSError:
        return b""


def read_tail(path: Path, offset: int) -> bytes:
    data = read_from(path, offset)
    return data[-8192:]
