"""The run's leftover check (tests/_leftovers.py) sees dev hosts' namespaces (`cumulo-host-<name>`)
and cluster bridges (`cucl<N>`): one left behind is listed, and it is the run's (a failure of
the run, not "another run's?") once a cluster of the run recorded it (issue 14)."""

from __future__ import annotations

import os
import secrets
import subprocess

import _leftovers
import pytest


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, timeout=30)  # noqa: S603, S607


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a network namespace and a bridge")
def test_a_dev_host_namespace_and_a_cluster_bridge_left_behind_are_listed() -> None:
    name = f"lt{secrets.token_hex(3)}"
    bridge = f"cucl{secrets.token_hex(3)}"
    session = _leftovers.Session()
    session.start_items = _leftovers.now()
    _ip("netns", "add", f"cumulo-host-{name}")
    try:
        _ip("link", "add", bridge, "type", "bridge")
        try:
            new = _leftovers.now() - session.start_items
            assert _leftovers.Item("netns", f"cumulo-host-{name}", name) in new
            assert _leftovers.Item("link", bridge, bridge) in new
            mine, unsure = session.leftovers()
            assert {str(i) for i in mine + unsure} >= {f"netns cumulo-host-{name}", f"link {bridge}"}
            _leftovers.record_dev_hosts([name], bridge)
            mine, _ = session.leftovers()
            assert {str(i) for i in mine} >= {f"netns cumulo-host-{name}", f"link {bridge}"}
        finally:
            _ip("link", "del", bridge)
    finally:
        _ip("netns", "delete", f"cumulo-host-{name}")
    assert not {i.name for i in _leftovers.now()} & {f"cumulo-host-{name}", bridge}
