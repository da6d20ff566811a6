"""Which driver the local compute host gets: `local_driver` auto/runc/fake, and the CLI's --driver."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cumulo import conf as conf_mod
from cumulo import runtime
from cumulo.cli import main as cli


def _settings(tmp_path: Path, **kw: object) -> conf_mod.Settings:
    return conf_mod.load(env={}, state_dir=tmp_path / "state", **kw)


def _host(monkeypatch: pytest.MonkeyPatch, *, root: bool, runc: bool) -> None:
    monkeypatch.setattr(runtime.os, "geteuid", lambda: 0 if root else 1000)
    monkeypatch.setattr(runtime.shutil, "which", lambda name: "/usr/sbin/runc" if runc and name == "runc" else None)


def test_default_is_auto(tmp_path: Path) -> None:
    assert _settings(tmp_path).local_driver == "auto"
    env = {"CUMULO_LOCAL_DRIVER": "fake"}
    assert conf_mod.load(env=env, state_dir=tmp_path).local_driver == "fake"


def test_auto_picks_runc_as_root_with_runc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _host(monkeypatch, root=True, runc=True)
    assert runtime.local_driver_name(_settings(tmp_path)) == "runc"


@pytest.mark.parametrize(("root", "runc", "why"), [(False, True, "not running as root"), (True, False, "not on PATH")])
def test_auto_falls_back_to_fake_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, root: bool, runc: bool, why: str
) -> None:
    _host(monkeypatch, root=root, runc=runc)
    with caplog.at_level(logging.WARNING, logger="cumulo.runtime"):
        assert runtime.local_driver_name(_settings(tmp_path)) == "fake"
    assert "FAKE driver" in caplog.text and why in caplog.text


def test_explicit_choices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _host(monkeypatch, root=False, runc=False)
    assert runtime.local_driver_name(_settings(tmp_path, local_driver="fake")) == "fake"
    with pytest.raises(ValueError, match="runc driver cannot run here"):
        runtime.local_driver_name(_settings(tmp_path, local_driver="runc"))
    with pytest.raises(ValueError, match="unknown local_driver"):
        runtime.local_driver_name(_settings(tmp_path, local_driver="qemu"))


def test_cli_refuses_an_unusable_driver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _host(monkeypatch, root=False, runc=False)
    assert cli.main(["up", "--state-dir", str(tmp_path / "s"), "--driver", "runc"]) == 2
    assert "runc driver cannot run here" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["up", "--driver", "qemu"])
