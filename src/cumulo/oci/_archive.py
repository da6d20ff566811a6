"""Reading the outer image tarball (docker save or OCI layout): member lookup with clear errors."""

from __future__ import annotations

import posixpath
import tarfile
from pathlib import Path

from cumulo import errors

MAX_JSON = 16 << 20  # manifests and configs are small; refuse to load anything bigger into memory


def open_archive(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:*")
    except tarfile.ReadError:
        raise errors.Invalid("The image data is not a tar archive (a docker save or OCI layout tarball).") from None
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise errors.Invalid(f"The image data is not a readable tar archive: {exc}") from None


def normalize(name: str) -> str:
    """A member name as a plain relative path ('./a//b/' → 'a/b')."""
    return posixpath.normpath(name.lstrip("/")) if name not in ("", ".", "./") else "."


def index(tf: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    try:
        return {normalize(m.name): m for m in tf.getmembers()}
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise errors.Invalid(f"The image tar archive is corrupt: {exc}") from None


def member(members: dict[str, tarfile.TarInfo], name: str, what: str) -> tarfile.TarInfo:
    info = members.get(normalize(name))
    if info is None or not (info.isfile() or info.issym() or info.islnk()):
        raise errors.Invalid(f"The image archive has no {what} {name!r}.")
    return info


def read_small(tf: tarfile.TarFile, info: tarfile.TarInfo, what: str) -> bytes:
    try:
        fh = tf.extractfile(info)
        if fh is None:
            raise errors.Invalid(f"The image archive's {what} {info.name!r} is not a file.")
        with fh:
            data = fh.read(MAX_JSON + 1)
    except (tarfile.TarError, KeyError, EOFError, OSError) as exc:
        raise errors.Invalid(f"Cannot read the image archive's {what} {info.name!r}: {exc}") from None
    if len(data) > MAX_JSON:
        raise errors.Invalid(f"The image archive's {what} {info.name!r} is too large.")
    return data
