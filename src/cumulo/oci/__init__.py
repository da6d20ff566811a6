"""OCI and Docker container images (`cumulo.oci`): `docker save` and OCI image-layout tarballs, unpacked to a root.

`read_image(path)` tells the two apart (manifest.json → docker, else oci-layout → OCI) and returns
the config and the layer member names, base first. `unpack_rootfs` and `cached_rootfs` (in
`unpack`) turn them into a directory tree. Every problem with the input is `errors.Invalid`.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from cumulo import errors
from cumulo.oci import _archive
from cumulo.oci.config import ImageConfig, ParsedImage, parse_config
from cumulo.oci.docker import read_docker, write_docker_archive
from cumulo.oci.layout import read_oci

__all__ = ["ImageConfig", "ParsedImage", "parse_config", "read_image", "read_parsed", "write_docker_archive"]


def read_parsed(tf: tarfile.TarFile) -> ParsedImage:
    members = _archive.index(tf)
    if "manifest.json" in members:
        return read_docker(tf, members)
    if "oci-layout" in members:
        return read_oci(tf, members)
    raise errors.Invalid("The image archive is neither a docker save tarball (no manifest.json) "
                         "nor an OCI image layout (no oci-layout).")


def read_image(path: Path) -> ParsedImage:
    """Read the config and layer list of a container image tarball (blocking: call in a thread)."""
    with _archive.open_archive(path) as tf:
        return read_parsed(tf)
