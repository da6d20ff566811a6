"""DHCP with real packets: netplane.dhcp's dnsmasq in a network's namespace hands a port's fixed IP
(and the subnet's router, DNS and MTU) to busybox's udhcpc in a stand-in server, through the
security group tables with port security on; a changed host entry is a SIGHUP, not a restart."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import uuid as uuidlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from _netplane_lab import BUSYBOX, DNSMASQ_MISSING, MISSING, Lab, Server

from cumulo.netplane import dhcp, secgroups
from cumulo.netplane.secgroups import Firewall, Port, Rule

pytestmark = pytest.mark.skipif(bool(MISSING or DNSMASQ_MISSING),
                                reason=MISSING or DNSMASQ_MISSING or "root, ip, nft, busybox and dnsmasq present")


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    # dnsmasq reads its files as `nobody`: a run dir it can reach (pytest's tmp dirs are 0700).
    run_dir = Path(tempfile.mkdtemp(prefix="cdpt-dhcp-"))
    os.chmod(run_dir, 0o755)
    lab = Lab(state_dir=run_dir)
    try:
        yield lab
    finally:
        await lab.cleanup()
        shutil.rmtree(run_dir, ignore_errors=True)


def lease(server: Server, tmp_path: Path) -> dict[str, str]:
    """Run udhcpc once in the server's namespace; the environment its script saw on `bound`."""
    out = tmp_path / f"bound-{server.port_id}"
    out.unlink(missing_ok=True)
    script = tmp_path / "udhcpc.sh"
    script.write_text(f'#!/bin/sh\n[ "$1" = bound ] && env > {out}\nexit 0\n')
    os.chmod(script, 0o755)
    subprocess.run(["ip", "netns", "exec", server.ns, BUSYBOX, "udhcpc", "-i", "eth0", "-n", "-q", "-f",  # noqa: S603,S607
                    "-t", "5", "-T", "1", "-s", str(script)], check=False, capture_output=True, timeout=60)
    if not out.exists():
        return {}
    return dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)


async def test_dnsmasq_hands_the_ports_address_and_reloads_on_change(lab: Lab, tmp_path: Path) -> None:
    assert lab.state_dir is not None
    net_id, ns = await lab.network()
    lab.dhcp_networks.append(net_id)
    subnet = dhcp.Subnet(str(uuidlib.uuid4()), "10.71.0.0/24", "10.71.0.1", dns_nameservers=("10.71.0.53",))
    client = lab.server(ns, "")  # no address: DHCP gives it one
    iface = dhcp.Interface(str(uuidlib.uuid4()), "fa:16:3e:71:00:02", ("10.71.0.2/24",))
    host = dhcp.Host(client.port_id, client.mac, ((subnet.id, "10.71.0.33"),))
    cfg = dhcp.Config(net_id, (subnet,), (host,), mtu=1400)

    # Port security on: DHCP passes the anti-spoofing and the group's chains (no ingress rule).
    g = str(uuidlib.uuid4())
    port = Port(client.port_id, client.device, client.mac, ("10.71.0.33",), security_groups=(g,))
    await secgroups.apply(ns, Firewall(ports=(port,), rules={g: (Rule("egress", "IPv4"),)}))

    pid = await dhcp.ensure(lab.state_dir, ns, cfg, iface)
    assert pid > 0 and await dhcp.list_running(lab.state_dir) == {net_id: pid}
    got = await asyncio.to_thread(lease, client, tmp_path)
    assert got.get("ip") == "10.71.0.33"
    assert got.get("router") == "10.71.0.1" and got.get("dns") == "10.71.0.53" and got.get("mtu") == "1400"
    assert got.get("serverid") == "10.71.0.2"

    # The port's fixed IP changes: same dnsmasq (SIGHUP), new address.
    moved = dhcp.Config(net_id, (subnet,), (dhcp.Host(client.port_id, client.mac, ((subnet.id, "10.71.0.44"),)),),
                        mtu=1400)
    assert await dhcp.ensure(lab.state_dir, ns, moved, iface) == pid
    assert (lab.state_dir / net_id / "host").read_text().startswith(f"{client.mac},host-10-71-0-44,")
    got = await asyncio.to_thread(lease, client, tmp_path)
    assert got.get("ip") == "10.71.0.44"

    # A MAC it does not know gets nothing.
    stranger = lab.server(ns, "")
    assert await asyncio.to_thread(lease, stranger, tmp_path) == {}

    # Nothing left to serve: stopped, its files gone.
    assert await dhcp.ensure(lab.state_dir, ns, dhcp.Config(net_id, ()), iface) == 0
    assert await dhcp.list_running(lab.state_dir) == {}
    assert not (lab.state_dir / net_id).exists()
    assert not os.path.exists(f"/proc/{pid}/cmdline") or b"dnsmasq" not in Path(f"/proc/{pid}/cmdline").read_bytes()

