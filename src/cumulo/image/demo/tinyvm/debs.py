"""The Debian packages the tiny VM takes files from (the kernel, qemu-ga): the version apt would
install, a download unpacked into a temporary directory, and the copies already in the cache.
Host commands through cumulo.host (argv lists); `unavailable` is the caller's error type."""

from __future__ import annotations

import re
from pathlib import Path

from cumulo import host
from cumulo.errors import HostError

SAFE_VERSION = re.compile(r"^[A-Za-z0-9.+:~_-]+$")


def apt_options(cache: Path) -> list[str]:
    """apt-cache keeps its binary package cache in `cache` (where apt keeps none of its own, as
    Docker's Debian images set Dir::Cache::pkgcache "", each call parsed every list)."""
    return ["-o", f"Dir::Cache::pkgcache={cache / 'apt-pkgcache.bin'}", "-o", "Dir::Cache::srcpkgcache="]


async def candidate(cache: Path, package: str, unavailable: type[Exception]) -> str:
    """The version of `package` apt would install."""
    show = await host.run(["apt-cache", *apt_options(cache), "show", "--no-all-versions", package], timeout=60)
    versions = [ln.split(":", 1)[1].strip() for ln in show.text.splitlines() if ln.startswith("Version:")]
    if not versions or not SAFE_VERSION.match(versions[0]):
        raise unavailable(f"apt-cache show {package} gives no usable Version")
    return versions[0]


def cached(root: Path, marker: str) -> list[Path]:
    """The complete copies under `root` (those holding `marker`), oldest first. Blocking."""
    if not root.is_dir():
        return []
    return sorted((d for d in root.iterdir() if (d / marker).is_file()), key=lambda d: d.stat().st_mtime)


async def download(package: str, version: str, tmp: Path, unavailable: type[Exception]) -> Path:
    """`package`=`version` downloaded into `tmp` and unpacked: the unpacked tree (tmp/root)."""
    try:
        await host.run(["apt-get", "download", f"{package}={version}"], cwd=str(tmp), timeout=600)
    except HostError as exc:
        raise unavailable(f"cannot download {package} {version} (no network?): {exc}") from exc
    debs = sorted(tmp.glob("*.deb"))
    if len(debs) != 1:
        raise unavailable(f"apt-get download {package} left {len(debs)} .deb files")
    await host.run(["dpkg-deb", "-x", str(debs[0]), str(tmp / "root")], timeout=600)
    return tmp / "root"
