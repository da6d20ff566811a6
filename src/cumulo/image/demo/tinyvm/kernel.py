"""The Debian cloud kernel, fetched as a .deb and unpacked into a cache, never installed on the host.

`linux-image-cloud-amd64` is a metapackage; its dependency names the real package
(`linux-image-<abi>-cloud-amd64`). Its .deb is downloaded with `apt-get download`, unpacked with
`dpkg-deb -x` into a temp dir, and only what the image needs is kept in the cache:

    <cache>/kernel/<package>_<version>/vmlinuz, config, modules/<name>.ko, deps.json, release

Debian's .deb carries no modules.dep (depmod makes it at install time), so module dependencies
are read from each module's own `.modinfo` section ("depends="). A cached version makes the next
build offline; when apt cannot say which version is current (no package lists), the newest
cached one is used.
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

from cumulo import host
from cumulo.errors import HostError
from cumulo.image.demo.tinyvm import debs

META_PACKAGE = "linux-image-cloud-amd64"
_PKG_RE = re.compile(r"^linux-image-[0-9][0-9a-z.+-]*-cloud-amd64(-unsigned)?$")


class KernelUnavailable(Exception):
    """The kernel could not be fetched (no network, no apt lists, no cache); the message says why."""


@dataclass(frozen=True)
class Kernel:
    package: str
    version: str
    release: str  # `uname -r` of the kernel, e.g. 6.1.0-50-cloud-amd64
    dir: Path
    deps: dict[str, list[str]]  # module name -> modules it needs (within `modules/`)

    @property
    def vmlinuz(self) -> Path:
        return self.dir / "vmlinuz"

    @property
    def config(self) -> Path:
        return self.dir / "config"

    def module_path(self, name: str) -> Path:
        return self.dir / "modules" / f"{name}.ko"

    def load_order(self, wanted: list[str]) -> list[str]:
        """`wanted` and everything they depend on, dependencies first, each once."""
        order: list[str] = []

        def visit(name: str, stack: tuple[str, ...]) -> None:
            if name in order:
                return
            if name in stack:
                raise KernelUnavailable(f"module dependency cycle: {' -> '.join((*stack, name))}")
            if name not in self.deps:
                raise KernelUnavailable(f"kernel {self.release} has no module {name}")
            for dep in self.deps[name]:
                visit(dep, (*stack, name))
            order.append(name)

        for name in wanted:
            visit(name, ())
        return order


def mod_name(filename: str) -> str:
    """The kernel's name of a module file: no suffix, '-' read as '_'."""
    return filename.removesuffix(".ko").replace("-", "_")


def modinfo(data: bytes) -> dict[str, str]:
    """The key=value strings of an ELF64 module's .modinfo section (first value of each key)."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a little-endian ELF64 module")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, offset, size = struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
        return name, offset, size

    _n, stroff, _s = section(shstrndx)
    for i in range(shnum):
        name_off, offset, size = section(i)
        end = data.index(b"\0", stroff + name_off)
        if data[stroff + name_off:end] == b".modinfo":
            info: dict[str, str] = {}
            for item in data[offset:offset + size].split(b"\0"):
                key, sep, value = item.partition(b"=")
                if sep:
                    info.setdefault(key.decode(), value.decode(errors="replace"))
            return info
    return {}


async def _resolve_package(cache: Path) -> tuple[str, str]:
    """(package, candidate version) of the real kernel package behind the metapackage. apt-cache
    keeps its binary package cache in `cache` (apt checks it against the package lists and the
    status file at every use and rebuilds it when they changed): where apt keeps none of its own
    (Docker's Debian images set Dir::Cache::pkgcache ""), each call parsed every list, ~0.5 s of CPU."""
    deps = await host.run(["apt-cache", *debs.apt_options(cache), "depends", META_PACKAGE], timeout=60)
    names = [line.split(":", 1)[1].strip() for line in deps.text.splitlines() if line.strip().startswith("Depends:")]
    packages = [n for n in names if _PKG_RE.match(n)]
    if not packages:
        raise KernelUnavailable(f"apt-cache depends {META_PACKAGE} names no kernel package: {names}")
    package = packages[0]
    return package, await debs.candidate(cache, package, KernelUnavailable)


def _load(d: Path) -> Kernel:
    meta = json.loads((d / "deps.json").read_text())
    return Kernel(meta["package"], meta["version"], meta["release"], d, {k: list(v) for k, v in meta["deps"].items()})


def _unpack(deb_root: Path, dest: Path, package: str, version: str, modules: list[str]) -> None:
    """Copy vmlinuz, config and `modules` (with their dependencies) out of the unpacked deb."""
    release = package.removeprefix("linux-image-").removesuffix("-unsigned")
    boot = deb_root / "boot"
    kernel_tree = deb_root / "lib" / "modules" / release / "kernel"
    if not (boot / f"vmlinuz-{release}").is_file() or not kernel_tree.is_dir():
        raise KernelUnavailable(f"{package} {version} does not hold boot/vmlinuz-{release} and its modules")
    files: dict[str, Path] = {}
    for dirpath, _dirs, names in os.walk(kernel_tree):
        for n in names:
            if n.endswith(".ko"):
                files[mod_name(n)] = Path(dirpath) / n
    deps: dict[str, list[str]] = {}
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in deps:
            continue
        if name not in files:
            raise KernelUnavailable(f"kernel {release} has no module {name} (built in? see its config)")
        info = modinfo(files[name].read_bytes())
        deps[name] = [d for d in info.get("depends", "").split(",") if d]
        todo.extend(deps[name])
    (dest / "modules").mkdir(parents=True)
    for name in deps:
        shutil.copyfile(files[name], dest / "modules" / f"{name}.ko")
    shutil.copyfile(boot / f"vmlinuz-{release}", dest / "vmlinuz")
    shutil.copyfile(boot / f"config-{release}", dest / "config")
    meta = {"package": package, "version": version, "release": release, "deps": dict(sorted(deps.items()))}
    (dest / "deps.json").write_text(json.dumps(meta, indent=1) + "\n")


async def fetch_kernel(cache: Path, modules: list[str]) -> Kernel:
    """The current cloud kernel with `modules`, from the cache or downloaded into it."""
    cache.mkdir(parents=True, exist_ok=True)
    try:
        package, version = await _resolve_package(cache)
    except (HostError, KernelUnavailable, OSError) as exc:
        cached = debs.cached(cache / "kernel", "deps.json")
        if cached:
            return _load(cached[-1])
        raise KernelUnavailable(f"cannot resolve {META_PACKAGE} with apt ({exc}); is apt-get update done?") from exc
    dest = cache / "kernel" / f"{package}_{version.replace(':', '%3a')}"
    if (dest / "deps.json").is_file():
        kernel = _load(dest)
        if all(m in kernel.deps for m in modules):
            return kernel
    with tempfile.TemporaryDirectory(prefix=".kernel-", dir=cache) as tmp_name:
        tmp = Path(tmp_name)
        root = await debs.download(package, version, tmp, KernelUnavailable)
        staged = tmp / "staged"
        await asyncio.to_thread(_unpack, root, staged, package, version, modules)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists() and not (dest / "deps.json").is_file():
            await asyncio.to_thread(shutil.rmtree, dest, True)  # a copy cut short
        elif dest.exists():  # an older copy with fewer modules: moved aside, not edited in place
            os.rename(dest, tmp / "old")
        try:
            os.rename(staged, dest)
        except OSError:
            if not (dest / "deps.json").is_file():  # not just another build that won the race
                raise
    return _load(dest)


def config_options(kernel: Kernel, names: list[str]) -> dict[str, str]:
    """CONFIG_<name> of the kernel: "y" (built in), "m" (module) or "n"."""
    values: dict[str, str] = {}
    for line in kernel.config.read_text(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.startswith("CONFIG_"):
            values[key.removeprefix("CONFIG_")] = value
    return {n: values.get(n, "n") for n in names}


def pvh_vmlinux(kernel: Kernel) -> Path | None:
    """The kernel's vmlinux (ELF with a PVH entry), extracted from vmlinuz once and cached beside
    it; None when it has no PVH entry or a compression vmlinux.py does not read. Blocking."""
    from cumulo.image.demo.tinyvm import vmlinux

    out, none = kernel.dir / "vmlinux", kernel.dir / "vmlinux.none"
    if out.is_file():
        return out
    if none.is_file():
        return None
    try:
        inner = vmlinux.extract_pvh_vmlinux(kernel.vmlinuz.read_bytes())
    except vmlinux.BadKernel:
        inner = None
    if inner is None:
        none.write_text("no PVH entry, or a compression not read here\n")
        return None
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_bytes(inner)
    os.replace(tmp, out)
    return out
