"""The QEMU guest agent of the tiny VM: Debian's `qemu-ga` and the shared libraries it needs.

The binary comes from Debian's `qemu-guest-agent` package, fetched as the kernel is (kernel.py):
`apt-get download` into the build cache, `dpkg-deb -x` into a temp dir, never installed on the
host, and only `usr/sbin/qemu-ga` kept:

    <cache>/qemu-ga/<package>_<version>/qemu-ga, meta.json

Its libraries (libglib, libudev, libnuma, liburing, libc, ... : the package's Depends) are the
host's own: Debian's qemu-system-x86 depends on the same ones, so a host that runs QEMU has them,
from the same release. Their closure is read from the ELF files' DT_NEEDED entries in Python
(never by running ldd, which may execute the binary), resolved in the multiarch dirs, and put in
the initramfs where Debian puts them (lib/x86_64-linux-gnu/, the loader as lib64/ld-linux-x86-64.so.2).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cumulo.errors import HostError
from cumulo.image.demo.tinyvm import debs

PACKAGE = "qemu-guest-agent"
BINARY = "usr/sbin/qemu-ga"
LIB_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64")
GUEST_LIB_DIR = "lib/x86_64-linux-gnu"
_SONAME = re.compile(r"^[A-Za-z0-9._+-]+$")
# RPCs qemu-ga refuses (-b): the host gets exec and status, never the guest's files, keys or
# passwords, nor suspend, CPU, memory or clock changes (qemu-ga 7.2 has no allow-list option).
BLOCKED_RPCS = (
    "guest-file-open", "guest-file-close", "guest-file-read", "guest-file-write", "guest-file-seek",
    "guest-file-flush", "guest-set-user-password", "guest-ssh-get-authorized-keys",
    "guest-ssh-add-authorized-keys", "guest-ssh-remove-authorized-keys", "guest-suspend-disk",
    "guest-suspend-ram", "guest-suspend-hybrid", "guest-set-vcpus", "guest-set-memory-blocks", "guest-set-time",
)
PT_INTERP, PT_DYNAMIC, DT_NEEDED, DT_STRTAB, PT_LOAD = 3, 2, 1, 5, 1


class GuestAgentUnavailable(Exception):
    """qemu-ga or one of its libraries could not be had; the message says which and why."""


@dataclass(frozen=True)
class GuestAgent:
    package: str
    version: str
    binary: Path  # the cached qemu-ga

    def files(self) -> list[tuple[str, bytes, int]]:
        """(path in the initramfs, bytes, mode) of qemu-ga (in bin/) and its library closure. Blocking."""
        data = self.binary.read_bytes()
        out = [("bin/qemu-ga", data, 0o755)]
        interp = elf_interpreter(data)
        for soname, path in library_closure(data).items():
            where = f"{GUEST_LIB_DIR}/{soname}"
            if interp and os.path.basename(interp) == soname:
                where = interp.lstrip("/")
            out.append((where, path.read_bytes(), 0o755))
        return out


# -- ELF (64-bit little-endian): the program interpreter and DT_NEEDED -----------------------------


def _check_elf(data: bytes) -> None:
    if data[:4] != b"\x7fELF" or len(data) < 64 or data[4] != 2 or data[5] != 1:
        raise ValueError("not a little-endian ELF64 file")


def _segments(data: bytes) -> list[tuple[int, int, int, int, int]]:
    """(type, offset, vaddr, filesz, memsz) of each program header."""
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    out = []
    for i in range(phnum):
        p_type, _flags, offset, vaddr, _paddr, filesz, memsz = struct.unpack_from("<IIQQQQQ", data, phoff + i * phentsize)
        out.append((p_type, offset, vaddr, filesz, memsz))
    return out


def elf_interpreter(data: bytes) -> str | None:
    """PT_INTERP of an executable (e.g. /lib64/ld-linux-x86-64.so.2); None for a library."""
    _check_elf(data)
    for p_type, offset, _v, filesz, _m in _segments(data):
        if p_type == PT_INTERP:
            return data[offset:offset + filesz].split(b"\0", 1)[0].decode()
    return None


def elf_needed(data: bytes) -> list[str]:
    """The DT_NEEDED sonames of an ELF64 file, in order."""
    _check_elf(data)
    segs = _segments(data)
    dyn = next(((off, size) for t, off, _v, size, _m in segs if t == PT_DYNAMIC), None)
    if dyn is None:
        return []  # static
    entries = []
    for pos in range(dyn[0], dyn[0] + dyn[1] - 15, 16):
        tag, val = struct.unpack_from("<qQ", data, pos)
        if tag == 0:
            break
        entries.append((tag, val))
    strtab_vaddr = next((v for t, v in entries if t == DT_STRTAB), None)
    if strtab_vaddr is None:
        raise ValueError("ELF dynamic section without DT_STRTAB")
    # DT_STRTAB is a virtual address: the file offset is found through the PT_LOAD that maps it.
    for t, off, vaddr, filesz, _m in segs:
        if t == PT_LOAD and vaddr <= strtab_vaddr < vaddr + filesz:
            strtab = off + (strtab_vaddr - vaddr)
            break
    else:
        raise ValueError("ELF DT_STRTAB is outside every loaded segment")
    names = []
    for t, v in entries:
        if t == DT_NEEDED:
            end = data.index(b"\0", strtab + v)
            names.append(data[strtab + v:end].decode())
    return names


def find_library(soname: str, dirs: tuple[str, ...] = LIB_DIRS) -> Path:
    if not _SONAME.match(soname):
        raise GuestAgentUnavailable(f"odd library name {soname!r} in qemu-ga's DT_NEEDED")
    for d in dirs:
        path = Path(d) / soname
        if path.is_file():
            return path.resolve()
    raise GuestAgentUnavailable(f"library {soname} (needed by qemu-ga) is not on this host (in {', '.join(dirs)}); "
                                "install qemu-system-x86, which depends on the same libraries")


def library_closure(data: bytes, dirs: tuple[str, ...] = LIB_DIRS) -> dict[str, Path]:
    """soname -> host file of every library the ELF `data` needs, transitively, and its loader."""
    found: dict[str, Path] = {}
    interp = elf_interpreter(data)
    if interp:
        found[os.path.basename(interp)] = find_library(os.path.basename(interp), dirs)
    todo = elf_needed(data)
    while todo:
        soname = todo.pop(0)
        if soname in found:
            continue
        path = find_library(soname, dirs)
        found[soname] = path
        todo.extend(elf_needed(path.read_bytes()))
    return found


# -- fetching the package -----------------------------------------------------------------------


def _load(d: Path) -> GuestAgent:
    meta = json.loads((d / "meta.json").read_text())
    return GuestAgent(meta["package"], meta["version"], d / "qemu-ga")


def _install(tmp: Path, dest: Path, version: str) -> None:
    """qemu-ga out of the unpacked package (tmp/root) into `dest`, atomically. Blocking."""
    binary = tmp / "root" / BINARY
    if not binary.is_file() or binary.is_symlink():
        raise GuestAgentUnavailable(f"{PACKAGE} {version} holds no {BINARY}")
    staged = tmp / "staged"
    staged.mkdir()
    shutil.copyfile(binary, staged / "qemu-ga")
    (staged / "meta.json").write_text(json.dumps({"package": PACKAGE, "version": version}) + "\n")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():  # a copy cut short
        shutil.rmtree(dest, True)
    try:
        os.rename(staged, dest)
    except OSError:
        if not (dest / "meta.json").is_file():  # not just another build that won the race
            raise


async def fetch_guest_agent(cache: Path) -> GuestAgent:
    """Debian's qemu-ga, from the cache or downloaded into it (the newest cached one when apt
    cannot say which version is current)."""
    await asyncio.to_thread(cache.mkdir, parents=True, exist_ok=True)
    try:
        version = await debs.candidate(cache, PACKAGE, GuestAgentUnavailable)
    except (HostError, GuestAgentUnavailable, OSError) as exc:
        cached = await asyncio.to_thread(debs.cached, cache / "qemu-ga", "meta.json")
        if cached:
            return _load(cached[-1])
        raise GuestAgentUnavailable(f"cannot resolve {PACKAGE} with apt ({exc}); is apt-get update done?") from exc
    dest = cache / "qemu-ga" / f"{PACKAGE}_{version.replace(':', '%3a')}"
    if await asyncio.to_thread((dest / "meta.json").is_file):
        return _load(dest)
    with tempfile.TemporaryDirectory(prefix=".qemu-ga-", dir=cache) as tmp_name:
        tmp = Path(tmp_name)
        await debs.download(PACKAGE, version, tmp, GuestAgentUnavailable)
        await asyncio.to_thread(_install, tmp, dest, version)
    return _load(dest)
