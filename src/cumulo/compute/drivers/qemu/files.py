"""Small file helpers of the QEMU driver (blocking: call them in a thread): the console log
(notes of ours, the in-place bound, tails) and atomic JSON records."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from cumulo.compute.drivers.qemu.process import Layout


def note(layout: Layout, line: str) -> None:
    """A line of ours in the console log (never creates it: a dir being removed)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        fd = os.open(layout.console, os.O_WRONLY | os.O_APPEND)
    except OSError:
        return
    with os.fdopen(fd, "a") as fh:
        fh.write(f"[cumulo {stamp}] {line}\n")


def trim_in_place(path: Path, bound: int) -> bool:
    """Cut a log past `bound` to its last 3/4 x bound bytes from a line start, in place: QEMU's
    chardev holds it open with O_APPEND and keeps appending at the new end."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    with os.fdopen(fd, "r+b") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size <= bound:
            return False
        keep = max(1, bound * 3 // 4)
        fh.seek(size - keep)
        tail = fh.read(keep)
        nl = tail.find(b"\n")
        if 0 <= nl < len(tail) - 1:
            tail = tail[nl + 1:]
        fh.seek(0)
        fh.write(tail)
        fh.truncate(len(tail))
    return True


def tail_bytes(path: Path, max_bytes: int) -> bytes:
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - max_bytes))
            return fh.read(max_bytes)
    except OSError:
        return b""


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """Atomically (blocking)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)


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
