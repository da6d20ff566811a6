"""The uncompressed kernel (vmlinux, an ELF) inside a bzImage, and whether it has a PVH entry.

A bzImage is a real-mode setup, a decompressor, and the kernel proper as a compressed payload
(Linux boot protocol >= 2.08 gives its offset and length in the setup header). QEMU boots an
ELF vmlinux whose notes carry XEN_ELFNOTE_PHYS32_ENTRY (the PVH entry, CONFIG_PVH=y) straight
into 32-bit protected mode: no firmware boot path, no real-mode setup and no in-guest
decompression, which under TCG is where a good part of a boot goes (docs/architecture.md,
"VM boot paths"). This is scripts/extract-vmlinux, in Python: gzip, xz, lzma and bzip2 come from
the standard library, LZ4 (Debian's cloud kernel) is decoded here (its legacy frame, as the
kernel's `lz4 -l` writes it); zstd, lzo and others are not read (None: keep the bzImage).
Only used on the kernel .deb this project downloads itself, never on a tenant's upload.
"""

from __future__ import annotations

import bz2
import lzma
import struct
import zlib

MAX_VMLINUX = 512 << 20  # no kernel is near this; a bound against a broken payload
XEN_NOTE_NAME = b"Xen"
XEN_ELFNOTE_PHYS32_ENTRY = 18
_LZ4_LEGACY = 0x184C2102


class BadKernel(ValueError):
    pass


def payload(bzimage: bytes) -> bytes:
    """The compressed kernel inside a bzImage (boot protocol >= 2.08)."""
    if len(bzimage) < 0x250 or bzimage[0x202:0x206] != b"HdrS":
        raise BadKernel("not a bzImage (no HdrS setup header)")
    version, = struct.unpack_from("<H", bzimage, 0x206)
    if version < 0x208:
        raise BadKernel(f"boot protocol {version >> 8}.{version & 0xff} gives no payload offset")
    setup_sects = bzimage[0x1F1] or 4
    offset, length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sects + 1) * 512 + offset
    if length <= 0 or start + length > len(bzimage):
        raise BadKernel("the payload lies outside the file")
    return bzimage[start:start + length]


def _lz4_block(src: bytes, out: bytearray, limit: int) -> None:
    """Decode one LZ4 block (no frame) onto the end of `out`."""
    i, n, base = 0, len(src), len(out)
    while i < n:
        token = src[i]
        i += 1
        lit = token >> 4
        if lit == 15:
            while True:
                b = src[i]
                i += 1
                lit += b
                if b != 255:
                    break
        if lit:
            out += src[i:i + lit]
            i += lit
        if i >= n:
            break  # the last sequence has literals only
        off = src[i] | (src[i + 1] << 8)
        i += 2
        length = token & 15
        if length == 15:
            while True:
                b = src[i]
                i += 1
                length += b
                if b != 255:
                    break
        length += 4
        start = len(out) - off
        if off == 0 or start < base:
            raise BadKernel("LZ4 match before the start of its block")
        if off >= length:
            out += out[start:start + length]
        else:  # an overlapping match repeats the last `off` bytes
            pattern = bytes(out[start:])
            out += (pattern * (length // off + 1))[:length]
        if len(out) > limit:
            raise BadKernel("the kernel payload decompresses past the size bound")


def lz4_legacy(data: bytes, limit: int = MAX_VMLINUX) -> bytes:
    """The LZ4 legacy frame: magic, then (le32 size, block) pairs; blocks are independent."""
    if len(data) < 4 or struct.unpack_from("<I", data)[0] != _LZ4_LEGACY:
        raise BadKernel("not an LZ4 legacy frame")
    out = bytearray()
    i = 4
    try:
        while i + 4 <= len(data):
            size, = struct.unpack_from("<I", data, i)
            i += 4
            if size == _LZ4_LEGACY:  # concatenated frames
                continue
            if size > len(data) - i:
                break  # trailing bytes (the kernel appends its size): the end
            block = bytearray()
            _lz4_block(data[i:i + size], block, limit)
            out += block
            i += size
    except IndexError as exc:
        raise BadKernel("truncated LZ4 block") from exc
    return bytes(out)


def _stream(decomp: zlib._Decompress | lzma.LZMADecompressor | bz2.BZ2Decompressor, data: bytes,
            limit: int) -> bytes:
    out = decomp.decompress(data, limit + 1)
    if len(out) > limit:
        raise BadKernel("the kernel payload decompresses past the size bound")
    return out


def decompress(data: bytes, limit: int = MAX_VMLINUX) -> bytes | None:
    """The payload decompressed, or None for a compression not read here."""
    try:
        if data[:2] == b"\x1f\x8b":
            return _stream(zlib.decompressobj(16 + zlib.MAX_WBITS), data, limit)
        if data[:6] == b"\xfd7zXZ\x00":
            return _stream(lzma.LZMADecompressor(lzma.FORMAT_XZ), data, limit)
        if data[:3] == b"\x5d\x00\x00":
            return _stream(lzma.LZMADecompressor(lzma.FORMAT_ALONE), data, limit)
        if data[:3] == b"BZh":
            return _stream(bz2.BZ2Decompressor(), data, limit)
        if data[:4] == struct.pack("<I", _LZ4_LEGACY):
            return lz4_legacy(data, limit)
    except (zlib.error, lzma.LZMAError, OSError, EOFError) as exc:
        raise BadKernel(f"the kernel payload does not decompress: {exc}") from exc
    return None


def _notes(elf: bytes) -> list[tuple[bytes, int, bytes]]:
    """(name, type, desc) of every note in the PT_NOTE segments of an ELF64 little-endian file."""
    if elf[:4] != b"\x7fELF" or len(elf) < 64 or elf[4] != 2 or elf[5] != 1:
        return []
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    notes = []
    for k in range(min(phnum, 64)):
        at = phoff + k * phentsize
        if at + 56 > len(elf):
            break
        p_type, _flags, offset, _vaddr, _paddr, filesz = struct.unpack_from("<IIQQQQ", elf, at)
        if p_type != 4:  # PT_NOTE
            continue
        i, end = offset, min(offset + filesz, len(elf))
        while i + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", elf, i)
            name_at = i + 12
            desc_at = name_at + ((namesz + 3) & ~3)
            nxt = desc_at + ((descsz + 3) & ~3)
            if nxt > end:
                break
            notes.append((elf[name_at:name_at + namesz].rstrip(b"\0"), ntype, elf[desc_at:desc_at + descsz]))
            i = nxt
    return notes


def pvh_entry(elf: bytes) -> int | None:
    """The PVH entry address an ELF vmlinux declares (XEN_ELFNOTE_PHYS32_ENTRY), else None."""
    for name, ntype, desc in _notes(elf):
        if name == XEN_NOTE_NAME and ntype == XEN_ELFNOTE_PHYS32_ENTRY and len(desc) >= 4:
            return int(struct.unpack_from("<I", desc)[0])
    return None


def extract_pvh_vmlinux(bzimage: bytes) -> bytes | None:
    """The vmlinux inside `bzimage` when it has a PVH entry; None when it has none or its
    compression is not one read here. Raises BadKernel on a broken file. Blocking (seconds for
    LZ4 in pure Python: the caller caches the result)."""
    inner = decompress(payload(bzimage))
    if inner is None or pvh_entry(inner) is None:
        return None
    return inner
