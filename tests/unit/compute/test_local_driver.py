"""Which drivers (nodes) the local compute host gets: `local_driver` auto or a comma list of runc,
qemu and fake; node names and allocation ratios; and the CLI's --driver."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cumulo import conf as conf_mod
from cumulo import runtime
from cumulo.cli import main as cli
from cumulo.compute import drivers
from cumulo.compute.drivers import probe
from cumulo.compute.drivers.qemu import QemuDriver


def _settings(tmp_path: Path, **kw: object) -> conf_mod.Settings:
    return conf_mod.load(env={}, state_dir=tmp_path / "state", **kw)


def _host(*, root: bool, runc: bool, qemu: bool = False) -> probe.FixedHost:
    """A host for the drivers' probes: root or not, with runc and QEMU's binaries on PATH or not."""
    tools = {"runc"} if runc else set()
    if qemu:
        tools |= set(QemuDriver.BINARIES)
    return probe.FixedHost(root=root, programs=frozenset(tools))


def test_default_is_auto(tmp_path: Path) -> None:
    assert _settings(tmp_path).local_driver == "auto"
    env = {"CUMULO_LOCAL_DRIVER": "fake"}
    assert conf_mod.load(env=env, state_dir=tmp_path).local_driver == "fake"


def test_auto_picks_runc_as_root_with_runc(tmp_path: Path) -> None:
    assert runtime.local_driver_name(_settings(tmp_path), _host(root=True, runc=True)) == "runc"


@pytest.mark.parametrize(("root", "runc", "why"), [(False, True, "not running as root"), (True, False, "not on PATH")])
def test_auto_falls_back_to_fake_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, root: bool, runc: bool, why: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="cumulo.runtime"):
        assert runtime.local_driver_name(_settings(tmp_path), _host(root=root, runc=runc)) == "fake"
    assert "FAKE driver" in caplog.text and why in caplog.text


def test_explicit_choices(tmp_path: Path) -> None:
    bare = _host(root=False, runc=False)
    assert runtime.local_driver_name(_settings(tmp_path, local_driver="fake"), bare) == "fake"
    with pytest.raises(ValueError, match="runc driver cannot run here"):
        runtime.local_driver_name(_settings(tmp_path, local_driver="runc"), bare)
    with pytest.raises(ValueError, match="qemu driver cannot run here.*qemu-system-x86_64"):
        runtime.local_driver_name(_settings(tmp_path, local_driver="qemu"), bare)
    with pytest.raises(ValueError, match="unknown local_driver 'xen'"):
        runtime.local_driver_name(_settings(tmp_path, local_driver="runc,xen"), bare)
    with pytest.raises(ValueError, match="cannot be combined"):
        runtime.local_driver_name(_settings(tmp_path, local_driver="auto,fake"), bare)


def _qemu_unloadable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry's qemu entry as on an install whose QEMU driver does not import."""

    def load() -> drivers.DriverClass:
        raise ImportError("no module named cumulo.compute.drivers.qemu")

    monkeypatch.setitem(drivers.REGISTRY, "qemu", drivers.Registered("QEMU", load))


def test_auto_offers_runc_and_qemu_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert runtime.local_driver_names(_settings(tmp_path), _host(root=True, runc=True, qemu=True)) == ["runc", "qemu"]
    qemu_only = _host(root=False, runc=True, qemu=True)  # QEMU needs no root; runc does
    assert runtime.local_driver_names(_settings(tmp_path), qemu_only) == ["qemu"]
    _qemu_unloadable(monkeypatch)  # installed, but the driver does not import: no qemu node
    with pytest.raises(ValueError, match="QEMU driver cannot be loaded"):
        runtime.local_driver_names(_settings(tmp_path, local_driver="qemu"), qemu_only)
    assert runtime.local_driver_names(_settings(tmp_path), qemu_only) == ["fake"]


def test_comma_lists_from_env_and_settings(tmp_path: Path) -> None:
    both = _host(root=True, runc=True, qemu=True)
    conf = conf_mod.load(env={"CUMULO_LOCAL_DRIVER": " RUNC, qemu ,runc"}, state_dir=tmp_path)
    assert runtime.local_driver_names(conf, both) == ["runc", "qemu"]
    assert runtime.local_driver_name(_settings(tmp_path, local_driver="qemu"), both) == "qemu"


def test_node_names_and_ratios(tmp_path: Path) -> None:
    conf = _settings(tmp_path, host_name="h1", fake_hosts=2)
    plans = runtime.plan_nodes(conf, ["runc", "qemu"])
    assert [(p.host, p.node, p.driver, p.local, p.pooled, p.ratios) for p in plans] == [
        ("h1", "h1", "runc", True, True, {"VCPU": 50.0}),
        ("h1", "h1-qemu", "qemu", True, True, {"VCPU": 2.0}),
        ("fake-host-1", "fake-host-1", "fake", False, False, {}),
        ("fake-host-2", "fake-host-2", "fake", False, False, {}),
    ]
    # A node keeps its name whatever else the host runs (instance rows point at it).
    assert [p.node for p in runtime.plan_nodes(conf, ["qemu"]) if p.local] == ["h1-qemu"]
    assert [p.node for p in runtime.plan_nodes(conf, ["fake"]) if p.local] == ["h1"]
    assert [p.node for p in runtime.plan_nodes(conf, ["runc", "fake"]) if p.local] == ["h1", "h1-fake"]
    # local_node_ratios overrides entry by entry; the rest stays built-in.
    tuned = runtime.plan_nodes(conf.replace(local_node_ratios="qemu:cpu=4, qemu:ram=1.5,fake:disk=2"),
                               ["runc", "qemu", "fake"])
    assert [p.ratios for p in tuned if p.local] == [
        {"VCPU": 50.0}, {"VCPU": 4.0, "MEMORY_MB": 1.5}, {"DISK_GB": 2.0}]
    for bad in ("qemu=4", "qemu:cpu=-1", "qemu:gpu=2", "qemu:cpu=x"):
        with pytest.raises(ValueError, match="bad local_node_ratios"):
            runtime.plan_nodes(conf.replace(local_node_ratios=bad), ["runc", "qemu"])


def test_cli_refuses_an_unusable_driver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(probe, "LOCAL_HOST", _host(root=False, runc=False))  # the host the CLI's probes see
    assert cli.main(["up", "--state-dir", str(tmp_path / "s"), "--driver", "runc"]) == 2
    assert "runc driver cannot run here" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["up", "--driver", "xen"])
    with pytest.raises(SystemExit):
        cli.main(["up", "--driver", "auto,runc"])
    assert cli.main(["up", "--state-dir", str(tmp_path / "s"), "--driver", "runc,qemu"]) == 2
    assert "runc driver cannot run here" in capsys.readouterr().err
