"""File helpers every real driver needs (blocking: call them in a thread): private dirs, the console
log, which the guest keeps appending to (notes of ours, an in-place bound, tails), and atomic JSON
records. Files of ours are 0600 and dirs 0700: the state dir is private to the cloud's user
(docs/operations.md lists what is shared and why)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: Path, *, parents: bool = True) -> Path:
    """`path` as a directory only the cloud's user can enter: made 0700, or chmod'ed to 0700."""
    path.mkdir(mode=PRIVATE_DIR, parents=parents, exist_ok=True)
    if path.stat().st_mode & 0o777 != PRIVATE_DIR:
        os.chmod(path, PRIVATE_DIR)
    return path


def note(path: Path, line: str, *, create: bool = True) -> None:
    """A line of ours in a console log, stamped, so the log tells when and what the driver did.
    create=False: never make the file (its dir may be being removed)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | (os.O_CREAT if create else 0), PRIVATE_FILE)
    except OSError:
        return
    with os.fdopen(fd, "a") as fh:
        fh.write(f"[cumulo {stamp}] {line}\n")


def trim_in_place(path: Path, bound: int) -> bool:
    """Cut a log past `bound` to its last 3/4 x bound bytes from a line start, in place.

    In place because the guest's writer (a container's stdout, QEMU's serial chardev) holds the
    file open with O_APPEND and keeps appending at the new end; a replace would cut it off. What
    is written between our read and the truncate is lost: a few bytes, once per trim.
    """
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
            tail = tail[nl + 1 :]
        fh.seek(0)
        fh.write(tail)
        fh.truncate(len(tail))
    return True


def _whole_lines(buf: bytes, at_line_start: bool) -> bytes:
    """`buf` from its first line start (all of it when it starts one; a line of no newline stays)."""
    if at_line_start:
        return buf
    nl = buf.find(b"\n")
    return buf[nl + 1 :] if nl >= 0 else buf


def append_bounded(path: Path, data: bytes, bound: int) -> None:
    """Append `data` to a log that never grows past `bound` bytes: when it would, the log is first
    cut in place to its last bound/2 bytes (whole lines), so each byte is copied about once more.
    `data` longer than bound/2 keeps only its own tail. Blocking: call in a thread."""
    half = max(1, bound // 2)
    cut = len(data) > half
    if cut:  # what came before is older than what is dropped here: none of it is kept
        data = _whole_lines(data[-half:], data[-half - 1 : -half] == b"\n")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)
    with os.fdopen(fd, "r+b") as fh:
        size = fh.seek(0, os.SEEK_END)
        if cut or size + len(data) > bound:
            keep = 0 if cut else min(size, max(0, half - len(data)))
            tail = b""
            if keep:
                fh.seek(size - keep - 1 if keep < size else 0)
                raw = fh.read(keep + 1 if keep < size else keep)
                tail = _whole_lines(raw[1:], raw[:1] == b"\n") if keep < size else raw
            fh.seek(0)
            fh.write(tail)
            fh.truncate(len(tail))
    # O_APPEND: a note written meanwhile (files.note) is kept, not overwritten.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def tail_bytes(path: Path, max_bytes: int) -> bytes:
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - max_bytes))
            return fh.read(max_bytes)
    except OSError:
        return b""


def console_text(path: Path, max_bytes: int) -> str:
    """The last `max_bytes` of a console log as text, never more than max_bytes once encoded."""
    if max_bytes <= 0:
        return ""
    text = tail_bytes(path, max_bytes).decode(errors="ignore")
    while len(text.encode()) > max_bytes:
        text = text[1:]
    return text


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object, or None when the file is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """Atomically: a crash leaves the old record or the new one."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE_FILE)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(doc, indent=1))
    os.replace(tmp, path)
