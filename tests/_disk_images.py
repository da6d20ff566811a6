"""Hand-built disk image headers for tests: the image service's format inspector reads an upload's
first bytes, so a test image declared qcow2 must start with a real qcow2 header."""

from __future__ import annotations

import struct

QCOW2_INCOMPAT_DATA_FILE = 1 << 2


def qcow2_header(
    virtual_size: int = 1 << 20, *, version: int = 3, backing_file: bytes = b"", incompatible: int = 0,
    length: int = 512,
) -> bytes:
    """A qcow2 header (v2 or v3, 64 KiB clusters) padded with zeros to `length` bytes; `backing_file`
    is written after the header and pointed at by backing_file_offset/size, as qemu-img does."""
    header_length = 104 if version >= 3 else 72
    backing_offset = header_length + 8 if backing_file else 0  # after the end-of-extensions marker
    head = struct.pack(">4sIQIIQIIQQIIQ", b"QFI\xfb", version, backing_offset, len(backing_file), 16,
                       virtual_size, 0, 1, 3 << 16, 1 << 16, 0, 0, 0)
    if version >= 3:
        head += struct.pack(">QQQII", incompatible, 0, 0, 4, header_length)
    head += bytes(8) + backing_file  # the end of the (empty) header extensions, then the name
    return head.ljust(length, b"\0")


def qcow2_bytes(payload: bytes = b"", virtual_size: int = 1 << 20) -> bytes:
    """A clean qcow2 header followed by `payload` (enough for an upload declared qcow2)."""
    return qcow2_header(virtual_size) + payload
