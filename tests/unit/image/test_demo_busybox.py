"""The busybox demo image built offline (deterministic, boots to sh; a missing busybox explained)
and the `oci` container format in the image schema."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from cumulo.cli.main import main as cli_main
from cumulo.image._schemas import create_body_schema
from cumulo.image.demo import busybox
from cumulo.oci.unpack import cached_rootfs


def test_oci_is_an_allowed_container_format() -> None:
    import jsonschema

    jsonschema.Draft4Validator(create_body_schema()).validate({"container_format": "oci"})


@pytest.mark.skipif(not busybox.BUSYBOX.is_file(), reason="busybox-static is not installed")
async def test_busybox_build_is_deterministic_and_boots_to_sh(tmp_path: Path) -> None:
    assert cli_main(["image", "build", "busybox", "--output", str(tmp_path / "one.tar")]) == 0
    busybox.build_busybox(tmp_path / "two.tar")
    assert (tmp_path / "one.tar").read_bytes() == (tmp_path / "two.tar").read_bytes()
    root, config = await cached_rootfs(tmp_path / "images", "busybox", tmp_path / "one.tar")
    assert os.readlink(root / "bin/sh") == "busybox"
    assert (root / "bin/sh").resolve() == (root / "bin/busybox").resolve()
    assert os.access(root / "bin/busybox", os.X_OK)
    assert "root:x:0:0" in (root / "etc/passwd").read_text()
    assert (root / "tmp").stat().st_mode & 0o1777 == 0o1777
    assert config.argv[:2] == ("/bin/sh", "-c") and "PATH=/bin" in config.env


def test_busybox_build_explains_a_missing_busybox(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(busybox, "BUSYBOX", tmp_path / "nope")
    monkeypatch.setattr(busybox.build_busybox, "__defaults__", (tmp_path / "nope",))
    assert cli_main(["image", "build", "busybox", "--output", str(tmp_path / "x.tar")]) == 1
    assert "apt-get install busybox-static" in capsys.readouterr().err
    assert not (tmp_path / "x.tar").exists()
