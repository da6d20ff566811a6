"""`docker save` tarballs: manifest.json names the config JSON and the layer tars, base first.

    manifest.json            [{"Config": "<id>.json", "RepoTags": [...], "Layers": ["<id>/layer.tar", ...]}]
    <id>.json                the image config
    <id>/layer.tar           one layer (plain, or gzip'd by some tools)

Newer Docker writes an OCI layout too and points manifest.json at blobs; both read the same here.
An archive with several images uses the first. `write_docker_archive` writes the same layout,
deterministically (fixed mtimes, sorted names), for built images and snapshots.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from cumulo import errors
from cumulo.oci import _archive
from cumulo.oci.config import ParsedImage, parse_config

FIXED_MTIME = 1704067200  # 2024-01-01T00:00:00Z: fixed so identical inputs give identical bytes


def read_docker(tf: tarfile.TarFile, members: dict[str, tarfile.TarInfo]) -> ParsedImage:
    raw = _archive.read_small(tf, _archive.member(members, "manifest.json", "manifest"), "manifest")
    try:
        manifest = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.Invalid(f"The image's manifest.json is not valid JSON: {exc}") from None
    if not isinstance(manifest, list) or not manifest or not isinstance(manifest[0], dict):
        raise errors.Invalid("The image's manifest.json must be a non-empty list of images.")
    entry: dict[str, Any] = manifest[0]
    config_name, layers = entry.get("Config"), entry.get("Layers")
    if not isinstance(config_name, str):
        raise errors.Invalid("The image's manifest.json names no Config.")
    if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
        raise errors.Invalid("The image's manifest.json must list its Layers as file names.")
    config = parse_config(_archive.read_small(tf, _archive.member(members, config_name, "config"), "config"))
    names = [_archive.member(members, name, "layer").name for name in layers]
    return ParsedImage("docker", config, names)


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), FIXED_MTIME, 0o644
    tf.addfile(info, io.BytesIO(data))


def write_docker_archive(out: Path, layers: list[bytes], config: dict[str, Any], repo_tag: str) -> Path:
    """Write a `docker save` tarball from uncompressed layer tars and an image config document.

    `config` is completed with `rootfs.diff_ids`; the same inputs always give the same bytes.
    """
    diff_ids = [f"sha256:{hashlib.sha256(layer).hexdigest()}" for layer in layers]
    doc = {**config, "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    config_bytes = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    config_name = f"{hashlib.sha256(config_bytes).hexdigest()}.json"
    layer_names = [f"{d.removeprefix('sha256:')}/layer.tar" for d in diff_ids]
    manifest = [{"Config": config_name, "RepoTags": [repo_tag], "Layers": layer_names}]
    tmp = out.with_name(f".{out.name}.tmp")
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in sorted(zip(layer_names, layers, strict=True)):
            _add(tf, name, data)
        _add(tf, config_name, config_bytes)
        _add(tf, "manifest.json", json.dumps(manifest, separators=(",", ":")).encode())
    tmp.replace(out)
    return out
