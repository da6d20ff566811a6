"""Container image formats (cumulo.oci): docker save and OCI layouts, whiteouts, escapes,
malformed input and the unpack cache."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

from cumulo import errors
from cumulo.oci import ImageConfig, read_image, write_docker_archive
from cumulo.oci import unpack as unpack_mod
from cumulo.oci.unpack import cached_rootfs, unpack_rootfs

# An entry: (name, kind, payload) with kind "dir", "file" (payload: bytes), "sym"/"hard" (payload: target).
Entry = tuple[str, str, Any]

CONFIG = {
    "architecture": "amd64",
    "os": "linux",
    "config": {
        "Entrypoint": ["/bin/app"],
        "Cmd": ["--serve"],
        "Env": ["PATH=/bin", "A=1"],
        "WorkingDir": "/srv",
        "User": "1000:1000",
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
    },
}
LOWER: list[Entry] = [
    ("etc/", "dir", None),
    ("etc/a", "file", b"a1"),
    ("etc/b", "file", b"b1"),
    ("data/", "dir", None),
    ("data/old1", "file", b"old"),
    ("data/sub/", "dir", None),
    ("data/sub/old2", "file", b"old"),
    ("keep/x", "file", b"x"),  # no dir entry: the parent is created
    ("link", "sym", "etc/a"),
]
UPPER: list[Entry] = [
    ("data/new", "file", b"new"),  # before the opaque marker: this layer's own files survive it
    ("data/.wh..wh..opq", "file", b""),
    ("etc/.wh.b", "file", b""),
    ("etc/a", "file", b"a2"),
    ("hl", "hard", "etc/a"),
]


def layer(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_600_000_000
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, payload or 0o755
                tf.addfile(info)
            elif kind == "file":
                info.size, info.mode = len(payload), 0o644
                tf.addfile(info, io.BytesIO(payload))
            else:
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = payload
                tf.addfile(info)
    return buf.getvalue()


def docker_image(path: Path, *layers: list[Entry]) -> Path:
    return write_docker_archive(path, [layer(e) for e in layers], CONFIG, "test/image:latest")


def _blob(tf: tarfile.TarFile, data: bytes, media_type: str) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest}")
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def oci_image(path: Path, *layers: list[Entry]) -> Path:
    with tarfile.open(path, "w") as tf:
        descs = []
        for i, entries in enumerate(layers):
            data = layer(entries)
            if i % 2 == 0:  # mix compressed and plain layers
                descs.append(_blob(tf, gzip.compress(data, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip"))
            else:
                descs.append(_blob(tf, data, "application/vnd.oci.image.layer.v1.tar"))
        config = _blob(tf, json.dumps(CONFIG).encode(), "application/vnd.oci.image.config.v1+json")
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": config, "layers": descs}
        mdesc = _blob(tf, json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
        for name, doc in (("oci-layout", {"imageLayoutVersion": "1.0.0"}),
                          ("index.json", {"schemaVersion": 2, "manifests": [mdesc]})):
            data = json.dumps(doc).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def check_merged(root: Path) -> None:
    assert (root / "etc/a").read_bytes() == b"a2"
    assert not (root / "etc/b").exists()
    assert sorted(os.listdir(root / "data")) == ["new"]
    assert (root / "keep/x").read_bytes() == b"x"
    assert os.readlink(root / "link") == "etc/a"
    assert (root / "hl").read_bytes() == b"a2"
    assert (root / "hl").stat().st_ino == (root / "etc/a").stat().st_ino


EXPECTED_CONFIG = ImageConfig(
    entrypoint=("/bin/app",), cmd=("--serve",), env=("PATH=/bin", "A=1"), working_dir="/srv",
    user="1000:1000", exposed_ports=("53/udp", "80/tcp"),
)


@pytest.mark.parametrize("build", [docker_image, oci_image], ids=["docker", "oci"])
async def test_multi_layer_image_unpacks_with_whiteouts(tmp_path: Path, build: Any) -> None:
    image = build(tmp_path / "img.tar", LOWER, UPPER)
    parsed = read_image(image)
    assert parsed.format == ("docker" if build is docker_image else "oci")
    assert len(parsed.layers) == 2
    config = await unpack_rootfs(image, tmp_path / "out" / "x")
    assert config == EXPECTED_CONFIG
    assert config.argv == ("/bin/app", "--serve")
    check_merged(tmp_path / "out/x/rootfs")
    saved = json.loads((tmp_path / "out/x/config.json").read_text())
    assert ImageConfig.from_json(saved) == EXPECTED_CONFIG
    assert os.listdir(tmp_path / "out") == ["x"]  # the temp dir was renamed, nothing else left


async def test_unpack_refuses_existing_dest(tmp_path: Path) -> None:
    image = docker_image(tmp_path / "img.tar", LOWER)
    (tmp_path / "x").mkdir()
    with pytest.raises(FileExistsError):
        await unpack_rootfs(image, tmp_path / "x")


async def test_symlinks_inside_root_are_followed_in_root(tmp_path: Path) -> None:
    # An absolute link target means "inside the root"; writing through it lands in the root.
    image = docker_image(tmp_path / "img.tar", [("usr/lib/", "dir", None), ("lib", "sym", "/usr/lib")],
                         [("lib/libx.so", "file", b"x")])
    await unpack_rootfs(image, tmp_path / "out")
    assert (tmp_path / "out/rootfs/usr/lib/libx.so").read_bytes() == b"x"
    assert os.readlink(tmp_path / "out/rootfs/lib") == "/usr/lib"


ESCAPES = {
    "dotdot": [[("../x", "file", b"evil")]],
    "nested-dotdot": [[("a/../../x", "file", b"evil")]],
    "absolute": [[("/etc/x", "file", b"evil")]],
    "symlink-dir": [[("esc", "sym", "../../.."), ("esc/x", "file", b"evil")]],
    "symlink-lower-layer": [[("d/", "dir", None), ("d/esc", "sym", "../..")], [("d/esc/x", "file", b"evil")]],
    "hardlink-out": [[("h", "hard", "../x")]],
    "hardlink-absolute": [[("h", "hard", "/etc/passwd")]],
    "whiteout-through-symlink": [[("esc", "sym", "../../.."), ("esc/.wh.victim", "file", b"")]],
    # The climb hides behind a component that does not exist yet; it must still be caught.
    "whiteout-through-missing": [[("esc", "sym", "m/../../../../.."), ("esc/.wh.victim", "file", b"")]],
    "hardlink-through-missing": [[("esc", "sym", "m/../../../../.."), ("h", "hard", "esc/victim")]],
}


@pytest.mark.parametrize("layers", list(ESCAPES.values()), ids=list(ESCAPES))
@pytest.mark.parametrize("build", [docker_image, oci_image], ids=["docker", "oci"])
async def test_escaping_members_are_refused_and_leave_nothing(tmp_path: Path, layers: Any, build: Any) -> None:
    work = tmp_path / "a" / "b" / "c"
    work.mkdir(parents=True)
    (tmp_path / "a" / "victim").write_text("keep me")
    image = build(tmp_path / "img.tar", *layers)
    with pytest.raises(errors.Invalid, match="Refusing the image"):
        await unpack_rootfs(image, work / "out")
    assert os.listdir(work) == []
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "c", "img.tar", "victim"]
    assert (tmp_path / "a" / "victim").read_text() == "keep me"


def _tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


MALFORMED: dict[str, tuple[dict[str, bytes] | bytes, str]] = {
    "not-a-tar": (b"this is not a tar archive" * 100, "not a tar archive"),
    "empty-tar": ({}, "neither a docker save"),
    "no-manifest": ({"abc/layer.tar": layer(LOWER)}, "neither a docker save"),
    "manifest-not-json": ({"manifest.json": b"{nope"}, "not valid JSON"),
    "manifest-wrong-shape": ({"manifest.json": b'{"Config": "x"}'}, "non-empty list"),
    "missing-config": ({"manifest.json": b'[{"Config": "c.json", "Layers": []}]'}, "no config"),
    "missing-layer": ({"manifest.json": b'[{"Config": "c.json", "Layers": ["l/layer.tar"]}]',
                       "c.json": b'{"config": {}}'}, "no layer"),
    "layer-not-tar": ({"manifest.json": b'[{"Config": "c.json", "Layers": ["l/layer.tar"]}]',
                       "c.json": b'{"config": {}}', "l/layer.tar": b"\x00garbage" * 1000}, "layer"),
    "bad-config-types": ({"manifest.json": b'[{"Config": "c.json", "Layers": []}]',
                          "c.json": b'{"config": {"Cmd": "echo hi"}}'}, "Cmd must be a list"),
    "oci-bad-digest": ({"oci-layout": b"{}", "index.json": b'{"manifests": [{"digest": "sha256:../../x"}]}'},
                       "malformed digest"),
    "oci-no-manifests": ({"oci-layout": b"{}", "index.json": b'{"manifests": []}'}, "no manifests"),
}


@pytest.mark.parametrize("case", list(MALFORMED.values()), ids=list(MALFORMED))
async def test_malformed_tarballs_are_invalid(tmp_path: Path, case: Any) -> None:
    content, message = case
    image = tmp_path / "img.tar"
    if isinstance(content, bytes):
        image.write_bytes(content)
    else:
        _tar(image, content)
    (tmp_path / "out").mkdir()
    with pytest.raises(errors.Invalid, match=message):
        await unpack_rootfs(image, tmp_path / "out" / "x")
    assert os.listdir(tmp_path / "out") == []


async def test_truncated_layer_is_invalid(tmp_path: Path) -> None:
    image = docker_image(tmp_path / "img.tar", LOWER + [("big", "file", b"z" * 100_000)])
    with tarfile.open(image) as tf:
        names = {m.name: tf.extractfile(m).read() for m in tf.getmembers()}  # type: ignore[union-attr]
    for name, data in names.items():
        if name.endswith("layer.tar"):
            names[name] = data[: len(data) // 2]
    _tar(image, names)
    with pytest.raises(errors.Invalid):
        await unpack_rootfs(image, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["img.tar"]


async def test_read_only_dirs_get_their_mode_after_all_layers(tmp_path: Path) -> None:
    image = docker_image(tmp_path / "img.tar", [("ro/", "dir", 0o555), ("ro/f", "file", b"f")],
                         [("ro/", "dir", 0o555), ("ro/g", "file", b"g")])
    await unpack_rootfs(image, tmp_path / "out")
    ro = tmp_path / "out/rootfs/ro"
    assert sorted(os.listdir(ro)) == ["f", "g"]
    assert ro.stat().st_mode & 0o7777 == 0o555


async def test_docker_save_with_linked_layer_files(tmp_path: Path) -> None:
    # Docker 25+ writes layers once under blobs/ and makes the legacy <id>/layer.tar a symlink.
    data = layer(LOWER)
    digest = hashlib.sha256(data).hexdigest()
    config = json.dumps(CONFIG).encode()
    image = tmp_path / "img.tar"
    _tar(image, {f"blobs/sha256/{digest}": data, "c.json": config,
                 "manifest.json": json.dumps([{"Config": "c.json", "Layers": ["abc/layer.tar"]}]).encode()})
    with tarfile.open(image, "a") as tf:
        info = tarfile.TarInfo("abc/layer.tar")
        info.type, info.linkname = tarfile.SYMTYPE, f"../blobs/sha256/{digest}"
        tf.addfile(info)
    await unpack_rootfs(image, tmp_path / "out")
    assert (tmp_path / "out/rootfs/etc/b").read_bytes() == b"b1"


async def test_device_nodes_are_skipped(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("dev/sda")
        info.type, info.devmajor, info.devminor = tarfile.BLKTYPE, 8, 0
        tf.addfile(info)
        info = tarfile.TarInfo("ok")
        tf.addfile(info, io.BytesIO(b""))
    image = write_docker_archive(tmp_path / "img.tar", [buf.getvalue()], CONFIG, "t:latest")
    await unpack_rootfs(image, tmp_path / "out")
    assert not (tmp_path / "out/rootfs/dev/sda").exists()
    assert (tmp_path / "out/rootfs/ok").is_file()


async def test_cached_rootfs_unpacks_once_for_concurrent_callers(tmp_path: Path, monkeypatch: Any) -> None:
    image = docker_image(tmp_path / "img.tar", LOWER, UPPER)
    calls = []
    real = unpack_mod.unpack_rootfs_sync

    def counting(image_file: Path, dest: Path) -> ImageConfig:
        calls.append(dest)
        return real(image_file, dest)

    monkeypatch.setattr(unpack_mod, "unpack_rootfs_sync", counting)
    store = tmp_path / "images"
    results = await asyncio.gather(*(cached_rootfs(store, "some-image-id", image) for _ in range(5)))
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    assert len(calls) == 1
    assert {r for r, _ in results} == {store / "rootfs" / digest / "rootfs"}
    assert all(c == EXPECTED_CONFIG for _, c in results)
    check_merged(results[0][0])
    # A later caller passing the store key (sha256) reuses it without hashing or unpacking.
    again = await cached_rootfs(store, f"sha256:{digest}", image)
    assert again == results[0] and len(calls) == 1


async def test_cached_rootfs_leaves_nothing_for_a_bad_image(tmp_path: Path) -> None:
    image = docker_image(tmp_path / "img.tar", [("../x", "file", b"evil")])
    store = tmp_path / "images"
    with pytest.raises(errors.Invalid):
        await cached_rootfs(store, "id", image)
    assert os.listdir(store / "rootfs") == []


async def test_stale_unpack_dirs_are_removed(tmp_path: Path) -> None:
    image = docker_image(tmp_path / "img.tar", LOWER)
    store = tmp_path / "images"
    root, _ = await cached_rootfs(store, "id", image)
    stale = store / "rootfs" / f"{unpack_mod.UNPACK_PREFIX}abc-x1"
    (stale / "rootfs/ro").mkdir(parents=True)
    (stale / "rootfs/ro").chmod(0o555)
    assert unpack_mod.remove_stale_unpacks(store) == [stale.name]
    assert sorted(os.listdir(store / "rootfs")) == [root.parent.name]
