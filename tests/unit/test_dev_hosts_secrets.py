"""A dev host's `cumulo compute` gets the database and transport URLs (with their passwords) in its
environment, never in its argv: /proc/<pid>/cmdline is every local user's to read (`ps`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cumulo.dev import hosts as hosts_mod
from cumulo.dev.hosts import DevHost, DevHosts

DB = "postgresql://cumulo:S3CRET-db@198.18.0.1:5432/cumulo"
BUS = "amqp://cumulo:S3CRET-bus@198.18.0.1:5672/cloud"


async def test_urls_travel_in_the_environment_not_the_argv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    h = DevHost("h1", 1, "198.18.0.2", str(tmp_path), holder=1)
    seen: dict[str, Any] = {}

    async def hold(self: DevHosts, host: DevHost) -> DevHost:
        return host

    def popen(argv: list[str], **kw: Any) -> Any:
        seen["argv"], seen["env"] = argv, kw["env"]
        raise RuntimeError("recorded")

    monkeypatch.setattr(DevHosts, "host", lambda self, name: h)
    monkeypatch.setattr(DevHosts, "running", lambda self, host: False)
    monkeypatch.setattr(DevHosts, "_hold", hold)
    monkeypatch.setattr(hosts_mod.subprocess, "Popen", popen)
    dev = DevHosts(tmp_path / "base")
    with pytest.raises(RuntimeError, match="recorded"):
        await dev.start("h1", database=DB, transport=BUS, config="/etc/cumulo.yaml")
    assert not any("S3CRET" in a for a in seen["argv"]), seen["argv"]
    assert "--config" in seen["argv"] and "compute" in seen["argv"]
    assert seen["env"]["CUMULO_DATABASE"] == DB and seen["env"]["CUMULO_TRANSPORT"] == BUS
    assert seen["env"]["CUMULO_UNDERLAY_IP"] == "198.18.0.2"


def test_empty_urls_are_left_to_the_settings_file() -> None:
    assert hosts_mod.secret_env("", "") == {}


@pytest.mark.parametrize("name", ["h1\n", "h1\nrm", "H1", "-h", "a" * 32, "h/1"])
async def test_a_bad_host_name_never_reaches_ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Names are checked whole (re "$" matched before a trailing newline) before any host command."""
    ran: list[list[str]] = []

    async def run(argv: list[str], **kw: Any) -> Any:
        ran.append(argv)
        raise AssertionError("a host command ran")

    monkeypatch.setattr(hosts_mod.host, "run", run)
    with pytest.raises(hosts_mod.Invalid):
        await DevHosts(tmp_path / "base").up(1, [name])
    assert ran == []


def test_a_bridge_name_with_a_newline_is_refused(tmp_path: Path) -> None:
    with pytest.raises(hosts_mod.Invalid):
        DevHosts(tmp_path / "base", bridge="ul0\n")
