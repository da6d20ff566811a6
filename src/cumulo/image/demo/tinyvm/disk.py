"""An empty qcow2 (version 3) file, written without qemu-img: the tiny VM's root-disk image.

Layout (64 KiB clusters), as `qemu-img create -f qcow2` lays it out: cluster 0 the header,
1 the refcount table, 2 its one refcount block (16-bit counts), 3 the L1 table (all zero: no
data clusters). The bytes depend on the virtual size only.
"""

from __future__ import annotations

import struct

CLUSTER_BITS = 16
CLUSTER = 1 << CLUSTER_BITS
HEADER_LENGTH = 104


def empty_qcow2(virtual_size: int) -> bytes:
    if virtual_size <= 0 or virtual_size % 512:
        raise ValueError("virtual size must be a positive multiple of 512")
    l2_covers = (CLUSTER // 8) * CLUSTER  # one L2 table maps this many guest bytes
    l1_entries = -(-virtual_size // l2_covers)
    if l1_entries * 8 > CLUSTER:
        raise ValueError("virtual size too large for a one-cluster L1 table")
    header = struct.pack(
        ">4sIQIIQIIQQIIQQQQII",
        b"QFI\xfb", 3,  # magic, version
        0, 0,  # no backing file
        CLUSTER_BITS, virtual_size,
        0,  # no encryption
        l1_entries, 3 * CLUSTER,  # L1 size and offset
        1 * CLUSTER, 1,  # refcount table offset and its size in clusters
        0, 0,  # no snapshots
        0, 0, 0,  # incompatible, compatible, autoclear feature bits
        4, HEADER_LENGTH,  # refcount_order (16-bit), header length
    )
    assert len(header) == HEADER_LENGTH
    header += struct.pack(">II", 0, 0)  # end of header extensions
    refcount_table = struct.pack(">Q", 2 * CLUSTER)
    refcount_block = struct.pack(">4H", 1, 1, 1, 1)  # clusters 0-3 are in use
    out = bytearray(4 * CLUSTER)
    out[0:len(header)] = header
    out[CLUSTER:CLUSTER + 8] = refcount_table
    out[2 * CLUSTER:2 * CLUSTER + 8] = refcount_block
    return bytes(out)
