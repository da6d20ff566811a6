"""The format inspector of image uploads: what the data is, whether it matches its disk_format,
and whether it is safe, from its first bytes (pure Python, no file opened, nothing executed).

Glance's behaviour since its 2024 format-inspector fixes (`[image_format]
require_image_format_match = True`, the default), for a `bare` image:

- the data's format is recognised from its signatures (qcow2, qed, vhd, vhdx, vmdk, vdi, iso, gpt,
  luks; anything else is raw); two formats at once is refused, except iso + gpt (a hybrid ISO);
- it must match disk_format. A declared `raw` takes anything (a qcow2 uploaded as raw is only
  ever read as raw), and a format no inspector knows (ami, ari, aki, ploop) takes data no
  inspector recognises;
- the recognised format's safety checks must pass, whatever was declared: a qcow2 names no backing
  file and no external data file and has no unknown incompatible feature and a known version; a
  qed is refused outright; a vmdk is monolithicSparse or streamOptimized with a descriptor of known
  lines whose extents name no path; a gpt/MBR has sane partition entries; a luks is version 1.

Glance inspects `bare` images only. Cumulo also refuses a non-bare upload (ovf, ova, ami, ...)
whose bytes are an unsafe qcow2: qcow2 is the format the cloud itself opens. Docker and OCI
archives are checked as archives instead (`cumulo.oci`).

The checks need at most INSPECT_BYTES of the head (a vmdk's descriptor may run to 1 MiB past its
512-byte header). Refusals are `BadImageData`: Glance's 415 on PUT /file (InvalidImageData).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cumulo import errors

INSPECT_BYTES = (1 << 20) + 512  # the head every check here needs, and no more
KNOWN = ("raw", "qcow2", "qed", "vhd", "vhdx", "vmdk", "vdi", "iso", "gpt", "luks")  # oslo's ALL_FORMATS

_QCOW2_MAGIC = b"QFI\xfb"
_QCOW2_INCOMPAT_DATA_FILE = 1 << 2
_QCOW2_INCOMPAT_KNOWN = 0x0F  # dirty, corrupt, external data file, compression type (Glance's list)
_VMDK_DESC_OFFSET = 0x200
_VMDK_DESC_MAX = (1 << 20) - 1
_VMDK_SUBFORMATS = ("monolithicsparse", "streamoptimized")
_ISO_PVD = 32 * 1024  # the primary volume descriptor follows 16 sectors of system area


class BadImageData(errors.UnsupportedMediaType):
    """The uploaded data does not match its disk_format, or failed a safety check (Glance: 415)."""


@dataclass(frozen=True)
class Verdict:
    detected: str  # the format the data is ("raw" when no signature matched)
    virtual_size: int | None  # as Glance records it (None: unknown)
    problem: str | None  # why the upload is refused (None: accepted)


def _ascii_text(data: bytes) -> bool:
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c.isspace() for c in text)


def _vmdk_descriptor(head: bytes) -> str | None:
    """The descriptor text of a vmdk (sparse: after its header; else the file itself), lowercased."""
    if head[:4] == b"KDMV":
        if len(head) < 64:
            return None
        _sig, _ver, _flags, _sectors, _grain, desc_sec, desc_num = struct.unpack_from("<4sIIQQQQ", head, 0)
        start, length = desc_sec * 512, min(desc_num * 512, _VMDK_DESC_MAX)
        if start != _VMDK_DESC_OFFSET:
            return None
        desc = head[start:start + length]
    elif len(head) >= 512 and _ascii_text(head[:512]):
        desc = head[:_VMDK_DESC_MAX]
    else:
        return None
    desc = desc.split(b"\x00", 1)[0]
    try:
        return desc.decode("ascii").lower()
    except UnicodeDecodeError:
        return None


def _vmdk_subformat(desc: str) -> str | None:
    key = 'createtype="'
    start = desc.find(key)
    if start < 0:
        return None
    start += len(key)
    end = desc.find('"', start)
    return desc[start:end] if 0 <= end - start < 64 else None


def _is_gpt(head: bytes) -> bool:
    if len(head) < 512 or struct.unpack_from("<H", head, 510)[0] != 0xAA55:
        return False
    return not (head[0x10] == 2 and head[0x15] == 0xF8)  # a FAT boot sector, not an MBR


def detect(head: bytes) -> list[str]:
    """Every non-raw format whose signature the head carries (empty: raw)."""
    found: list[str] = []
    if len(head) >= 512 and head[:4] == _QCOW2_MAGIC:
        found.append("qcow2")
    if len(head) >= 512 and head[:4] == b"QED\x00":
        found.append("qed")
    if len(head) >= 512 and head[:8] == b"conectix":
        found.append("vhd")
    if head[:8] == b"vhdxfile":
        found.append("vhdx")
    if head[:4] == b"KDMV" or (not found and _vmdk_subformat(_vmdk_descriptor(head) or "") is not None):
        found.append("vmdk")
    if len(head) >= 512 and struct.unpack_from("<I", head, 0x40)[0] == 0xBEDA107F:
        found.append("vdi")
    if len(head) >= _ISO_PVD + 2048 and head[_ISO_PVD + 1:_ISO_PVD + 6] in (b"CD001", b"NSR02", b"NSR03"):
        found.append("iso")
    if _is_gpt(head):
        found.append("gpt")
    if head[:6] == b"LUKS\xba\xbe":
        found.append("luks")
    return found


def _qcow2_problems(head: bytes) -> list[str]:
    if len(head) < 104:
        return ["its qcow2 header is cut short"]
    version, backing_offset = struct.unpack_from(">IQ", head, 4)
    out = []
    if backing_offset:
        out.append("it names a backing file")
    (incompatible,) = struct.unpack_from(">Q", head, 72)
    if version == 3:
        if incompatible & _QCOW2_INCOMPAT_DATA_FILE:
            out.append("it names an external data file")
        if incompatible & ~_QCOW2_INCOMPAT_KNOWN:
            out.append(f"it has unknown incompatible features ({incompatible:#x})")
    elif version != 2:
        out.append(f"its qcow2 version {version} is not supported")
    return out


def _vmdk_problems(head: bytes) -> list[str]:
    desc = _vmdk_descriptor(head)
    if not desc:
        return ["its vmdk descriptor is missing"]
    subformat = _vmdk_subformat(desc)
    if subformat not in _VMDK_SUBFORMATS:
        return [f"its vmdk subformat {subformat!r} is not monolithicSparse or streamOptimized"]
    extents = 0
    for line in (x.strip() for x in desc.split("\n")):
        if not line or line.startswith("#") or line.startswith("ddb"):
            continue
        if "=" in line and " " not in line.split("=")[0]:
            continue
        if line.split(" ")[0] in ("rw", "rdonly", "noaccess"):
            if "/" in line:
                return ["its vmdk extent names a path"]
            extents += 1
            continue
        return ["its vmdk descriptor has a line that is not understood"]
    return [] if extents else ["its vmdk descriptor names no extent"]


def _mbr_problems(head: bytes) -> list[str]:
    valid: list[int] = []
    gpt = False
    for i in range(4):
        boot, sh, ss, st, ostype, _eh, _es, _et, start_lba, _n = struct.unpack_from("<B3BB3BII", head, 446 + 16 * i)
        if boot not in (0x00, 0x80):
            return [f"its MBR partition {i} has an invalid boot flag"]
        if ostype:
            valid.append(i)
        if ostype == 0xEE:
            gpt = True
            if (sh, ss, st) != (0, 2, 0) or start_lba != 1:
                return ["its GPT protective MBR has an invalid start"]
    if gpt and valid != [0]:
        return ["its GPT protective MBR defines extra partitions"]
    return [] if valid else ["its MBR defines no partition"]


def safety_problems(fmt: str, head: bytes) -> list[str]:
    """Why data of format `fmt` is unsafe (empty: safe)."""
    if fmt == "qcow2":
        return _qcow2_problems(head)
    if fmt == "qed":
        return ["qed images are not accepted"]
    if fmt == "vmdk":
        return _vmdk_problems(head)
    if fmt == "gpt":
        return _mbr_problems(head)
    if fmt == "luks":
        return [] if len(head) >= 8 and struct.unpack_from(">H", head, 6)[0] == 1 else ["its luks version is not 1"]
    return []


def virtual_size(fmt: str, head: bytes, size: int) -> int | None:
    """The virtual size data of format `fmt` claims, as Glance's inspector reads it."""
    if fmt in ("raw", "gpt", "luks"):
        return size if fmt == "raw" else None
    if fmt == "qcow2":
        return int(struct.unpack_from(">Q", head, 24)[0])
    if fmt == "vhd":
        return int(struct.unpack_from(">Q", head, 40)[0])
    if fmt == "vdi":
        return int(struct.unpack_from("<Q", head, 0x170)[0])
    if fmt == "vmdk" and head[:4] == b"KDMV" and _vmdk_subformat(_vmdk_descriptor(head) or "") in _VMDK_SUBFORMATS:
        return int(struct.unpack_from("<Q", head, 12)[0]) * 512
    if fmt == "iso":
        pvd = head[_ISO_PVD:_ISO_PVD + 2048]
        if pvd[0] != 1:
            return None
        return int(struct.unpack_from("<L", pvd, 80)[0]) * int(struct.unpack_from("<H", pvd, 128)[0])
    return None


def _legacy_size(head: bytes, size: int, disk_format: str | None) -> int | None:
    """virtual_size of an image Glance does not inspect (not bare): a qcow2 header's, or the size."""
    if head[:4] == _QCOW2_MAGIC and len(head) >= 32:
        return int(struct.unpack_from(">Q", head, 24)[0])
    return size if disk_format in ("raw", "iso") else None


def inspect(head: bytes, size: int, disk_format: str | None, container_format: str | None) -> Verdict:
    """Glance's verdict on an upload whose first bytes are `head` (at least INSPECT_BYTES of them,
    or the whole data) and whose total size is `size`. Blocking work on bytes: run it in a thread."""
    found = detect(head)
    if container_format != "bare":
        unsafe = _qcow2_problems(head) if "qcow2" in found else []
        problem = f"Image failed safety checks: {'; '.join(unsafe)}" if unsafe else None
        return Verdict("qcow2" if "qcow2" in found else "raw", _legacy_size(head, size, disk_format), problem)
    if len(found) > 1 and set(found) != {"iso", "gpt"}:
        return Verdict(found[0], None, f"Multiple formats detected: {','.join(found)}")  # oslo's words
    detected = "iso" if set(found) == {"iso", "gpt"} else (found[0] if found else "raw")
    vsize: int | None = None
    if detected == disk_format:
        vsize = virtual_size(detected, head, size)
    elif disk_format == "raw":
        vsize = size  # read as raw whatever it holds
    elif not (detected == "raw" and disk_format not in KNOWN):
        return Verdict(detected, None, f"Image disk_format {disk_format} does not match stream data {detected}")
    unsafe = safety_problems(detected, head)
    if unsafe:
        return Verdict(detected, None, f"Image failed safety checks ({detected}): {'; '.join(unsafe)}")
    return Verdict(detected, vsize, None)
