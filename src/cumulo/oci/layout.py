"""OCI image-layout tarballs: oci-layout, index.json, and content-addressed blobs.

    oci-layout               {"imageLayoutVersion": "1.0.0"}
    index.json               an image index: manifests[] (each a manifest or a nested index)
    blobs/sha256/<hex>       manifests, configs and layers (tar, tar+gzip; zstd is refused)

From an index the manifest for this host's architecture is taken (linux), else the first one.
"""

from __future__ import annotations

import json
import platform
import re
import tarfile
from typing import Any

from cumulo import errors
from cumulo.oci import _archive
from cumulo.oci.config import ParsedImage, parse_config

_DIGEST = re.compile(r"(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})")
_INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
_ZSTD = "zstd"
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}
MAX_NESTING = 4


def host_arch() -> str:
    machine = platform.machine()
    return _ARCH.get(machine, machine)


def _blob(digest: Any) -> str:
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise errors.Invalid(f"The OCI image has a malformed digest: {digest!r}")
    alg, hexpart = digest.split(":", 1)
    return f"blobs/{alg}/{hexpart}"


def _json(tf: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str, what: str) -> dict[str, Any]:
    raw = _archive.read_small(tf, _archive.member(members, name, what), what)
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.Invalid(f"The OCI image's {what} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise errors.Invalid(f"The OCI image's {what} must be a JSON object.")
    return doc


def _pick(descriptors: Any) -> dict[str, Any]:
    if not isinstance(descriptors, list) or not descriptors or not all(isinstance(d, dict) for d in descriptors):
        raise errors.Invalid("The OCI image index lists no manifests.")
    for d in descriptors:
        plat = d.get("platform")
        if isinstance(plat, dict) and plat.get("os") == "linux" and plat.get("architecture") == host_arch():
            return dict(d)
    return dict(descriptors[0])


def read_oci(tf: tarfile.TarFile, members: dict[str, tarfile.TarInfo]) -> ParsedImage:
    _archive.member(members, "oci-layout", "oci-layout file")
    doc = _json(tf, members, "index.json", "index.json")
    for _ in range(MAX_NESTING):
        desc = _pick(doc.get("manifests"))
        doc = _json(tf, members, _blob(desc.get("digest")), "manifest")
        if desc.get("mediaType") not in _INDEX_TYPES and doc.get("mediaType") not in _INDEX_TYPES:
            break
    else:
        raise errors.Invalid("The OCI image indexes are nested too deeply.")
    config_desc, layers = doc.get("config"), doc.get("layers")
    if not isinstance(config_desc, dict) or not isinstance(layers, list):
        raise errors.Invalid("The OCI image manifest must have a config and a list of layers.")
    config_name = _blob(config_desc.get("digest"))
    config = parse_config(_archive.read_small(tf, _archive.member(members, config_name, "config"), "config"))
    names = []
    for layer in layers:
        if not isinstance(layer, dict):
            raise errors.Invalid("The OCI image manifest has a malformed layer descriptor.")
        if _ZSTD in str(layer.get("mediaType", "")):
            raise errors.Invalid(f"The OCI image uses an unsupported layer compression: {layer.get('mediaType')}")
        names.append(_archive.member(members, _blob(layer.get("digest")), "layer").name)
    return ParsedImage("oci", config, names)
