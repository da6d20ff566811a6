"""NICs with real packets, no API: a network namespace `cnet-<uuid>` with its bridge (netplane),
runc containers and QEMU guests plugged into it through the NicSpec seam, and pings between them.

The containers ping with `runc exec` (a container with NICs holds CAP_NET_RAW, as Docker's do).
Everything a test makes is removed by its own name: namespaces,
containers (the driver's destroy), QEMU processes (by pidfile under the test's tmp dir), dnsmasq
(by pid).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import time
import uuid as uuidlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import _qemu_guest as guest
import pytest
from test_runc_driver import (  # noqa: F401  # runc_driver: a fixture
    RUNC_MISSING,
    assert_nothing_left,
    runc_driver,
    spec_for,
)

from cumulo.compute.drivers.base import FlavorSpec, InstanceSpec, NicSpec
from cumulo.compute.drivers.qemu import QemuDriver
from cumulo.compute.drivers.runc import RuncDriver
from cumulo.compute.drivers.runc import netns as runc_netns
from cumulo.errors import DriverError
from cumulo.netplane import bridge, netns

pytestmark = pytest.mark.skipif(bool(RUNC_MISSING), reason=RUNC_MISSING or "root and runc present")

SLEEPER = "/bin/sh -c 'exec sleep 600'"
VM_FLAVOR = FlavorSpec(vcpus=1, memory_mb=256, root_gb=1)


def nic_on(net: str, address: str, prefix: int = 24) -> NicSpec:
    port = str(uuidlib.uuid4())
    mac = "fa:16:3e:" + ":".join(f"{b:02x}" for b in os.urandom(3))
    return NicSpec(port_id=port, mac=mac, netns=net, bridge=bridge.BRIDGE, device=netns.port_device(port),
                   addresses=(f"{address}/{prefix}",), gateway=None)


@pytest.fixture
async def nets() -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """Makes networks (namespace + bridge); every one is deleted at the end, by name."""
    made: list[str] = []

    async def make() -> str:
        name = netns.network_ns(str(uuidlib.uuid4()))
        made.append(name)
        assert await bridge.ensure(name)
        return name

    yield make
    for name in made:
        await netns.delete(name)
    assert not set(made) & set(await netns.list_names(netns.NETWORK_PREFIX))


def in_container(drv: RuncDriver, uuid: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = ["runc", "--root", str(drv.runc.root), "exec", f"cumulo-{uuid}", *argv]
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=60)  # noqa: S603


def ping(drv: RuncDriver, uuid: str, address: str, count: int = 1) -> bool:
    return in_container(drv, uuid, "ping", "-c", str(count), "-W", "2", address, check=False).returncode == 0


async def until(pred: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(pred):
        assert time.monotonic() < deadline, f"{what} not within {timeout}s"
        await asyncio.sleep(0.2)


# -- runc --------------------------------------------------------------------------------------------


async def test_two_containers_ping_each_other_and_a_hot_nic(
        runc_driver: RuncDriver, nets: Callable[[], Awaitable[str]], tmp_path: Path) -> None:  # noqa: F811
    net, net2 = await nets(), await nets()
    nic_a = dataclasses.replace(nic_on(net, "10.77.0.11"), dns=("192.0.2.53", "192.0.2.54"))
    nic_b = nic_on(net, "10.77.0.12")
    a = dataclasses.replace(spec_for(tmp_path, "nic-a", os_command_line=SLEEPER), nics=(nic_a,))
    b = dataclasses.replace(spec_for(tmp_path, "nic-b", os_command_line=SLEEPER), nics=(nic_b,))
    await runc_driver.spawn(a)
    await runc_driver.spawn(b)
    assert await bridge.ports(net) == sorted([nic_a.device, nic_b.device])
    shown = in_container(runc_driver, a.uuid, "ip", "addr", "show", "eth0").stdout
    assert nic_a.mac in shown and "10.77.0.11/24" in shown
    assert in_container(runc_driver, a.uuid, "cat", "/etc/resolv.conf").stdout.split() == [
        "nameserver", "192.0.2.53", "nameserver", "192.0.2.54"]
    assert ping(runc_driver, a.uuid, "10.77.0.12")
    assert ping(runc_driver, b.uuid, "10.77.0.11")

    # Hot attach: both get a NIC on a second network; A reaches B through it (eth1).
    hot_a, hot_b = nic_on(net2, "10.78.0.11"), nic_on(net2, "10.78.0.12")
    await runc_driver.attach_nic(a.uuid, hot_a)
    await runc_driver.attach_nic(a.uuid, hot_a)  # again: a no-op
    await runc_driver.attach_nic(b.uuid, hot_b)
    assert hot_a.mac in in_container(runc_driver, a.uuid, "ip", "link", "show", "eth1").stdout
    assert ping(runc_driver, a.uuid, "10.78.0.12")
    route = in_container(runc_driver, a.uuid, "ip", "route", "get", "10.78.0.12").stdout
    assert "dev eth1" in route

    # Stop and start: the container's namespace, and so its NICs, stay.
    await runc_driver.power_off(a.uuid)
    await runc_driver.power_on(a)
    assert ping(runc_driver, a.uuid, "10.78.0.12") and ping(runc_driver, a.uuid, "10.77.0.12")

    # Detach: eth1 and its bridge end go; the network is no longer reachable from A.
    await runc_driver.detach_nic(a.uuid, hot_a.port_id)
    await runc_driver.detach_nic(a.uuid, hot_a.port_id)  # again: a no-op
    assert await bridge.ports(net2) == [hot_b.device]
    assert in_container(runc_driver, a.uuid, "ip", "link", "show", "eth1", check=False).returncode != 0
    assert not ping(runc_driver, a.uuid, "10.78.0.12")
    assert ping(runc_driver, a.uuid, "10.77.0.12")

    for spec in (a, b):
        await runc_driver.destroy(spec.uuid)
    assert await bridge.ports(net) == [] and await bridge.ports(net2) == []
    assert not runc_netns.exists(a.uuid) and not runc_netns.exists(b.uuid)
    assert_nothing_left(runc_driver, tmp_path)


async def test_a_rebuilt_container_keeps_its_nics_and_dns(
        runc_driver: RuncDriver, nets: Callable[[], Awaitable[str]], tmp_path: Path) -> None:  # noqa: F811
    net = await nets()
    nic = dataclasses.replace(nic_on(net, "10.82.0.5"), dns=("192.0.2.53",))
    peer = nic_on(net, "10.82.0.6")
    spec = dataclasses.replace(spec_for(tmp_path, "nic-rb", os_command_line=SLEEPER), nics=(nic,))
    other = dataclasses.replace(spec_for(tmp_path, "nic-rb-peer", os_command_line=SLEEPER), nics=(peer,))
    await runc_driver.spawn(spec)
    await runc_driver.spawn(other)
    await runc_driver.rebuild(spec)
    assert "10.82.0.5/24" in in_container(runc_driver, spec.uuid, "ip", "addr", "show", "eth0").stdout
    assert "nameserver 192.0.2.53" in in_container(runc_driver, spec.uuid, "cat", "/etc/resolv.conf").stdout
    assert ping(runc_driver, spec.uuid, "10.82.0.6")


async def test_spawn_onto_a_missing_network_fails_and_leaves_nothing(
        runc_driver: RuncDriver, nets: Callable[[], Awaitable[str]], tmp_path: Path) -> None:  # noqa: F811
    net = await nets()
    good = nic_on(net, "10.79.0.5")
    gone = nic_on(netns.network_ns(str(uuidlib.uuid4())), "10.79.0.6")
    spec = dataclasses.replace(spec_for(tmp_path, "nic-fail", os_command_line=SLEEPER), nics=(good, gone))
    with pytest.raises(DriverError, match="does not exist"):
        await runc_driver.spawn(spec)
    assert await bridge.ports(net) == []  # the first NIC, plugged before the second failed, is gone
    assert not runc_netns.exists(spec.uuid)
    assert_nothing_left(runc_driver, tmp_path)


# -- QEMU ---------------------------------------------------------------------------------------------


@pytest.fixture
async def qemu_driver(tmp_path: Path) -> AsyncIterator[QemuDriver]:
    async with guest.qemu_driver(tmp_path, "nic-host", stop_timeout=10.0) as drv:
        yield drv


def vm_spec(name: str, nic: NicSpec, user_data: bytes | None = None, **props: str) -> InstanceSpec:
    """The tiny VM with one NIC at boot, its static address in network_data.json (config drive)."""
    address = nic.addresses[0].split("/")[0]
    uid = str(uuidlib.uuid4())
    image = guest.tiny_image()
    image = dataclasses.replace(image, properties={**image.properties, **props})
    return InstanceSpec(
        uuid=uid, name=name, hostname=name, project_id="p", flavor=VM_FLAVOR, image=image,
        user_data=user_data, nics=(nic,),
        network_info=[{"id": nic.port_id, "mac": nic.mac, "address": address, "netmask": "255.255.255.0",
                       "version": 4}])


async def test_a_vm_and_a_container_ping_each_other(
        runc_driver: RuncDriver, qemu_driver: QemuDriver, nets: Callable[[], Awaitable[str]],  # noqa: F811
        tmp_path: Path) -> None:
    net = await nets()
    c_nic, vm_nic = nic_on(net, "10.80.0.12"), nic_on(net, "10.80.0.31")
    ctr = dataclasses.replace(spec_for(tmp_path, "nic-c", os_command_line=SLEEPER), nics=(c_nic,))
    await runc_driver.spawn(ctr)
    user_data = (b"#!/bin/sh\nif ping -c 3 -W 3 10.80.0.12; then echo NIC-PING-OK; else echo NIC-PING-FAILED; fi\n")
    vm = vm_spec("nic-vm", vm_nic, user_data)
    await qemu_driver.spawn(vm)
    assert vm_nic.device in await bridge.ports(net)  # the tap, on the bridge
    text = await guest.wait_console(qemu_driver, vm.uuid, lambda t: "NIC-PING-" in t, "ping result")
    assert "NIC-PING-OK" in text, text[-3000:]
    assert ping(runc_driver, ctr.uuid, "10.80.0.31", count=2)
    await qemu_driver.destroy(vm.uuid)
    assert vm_nic.device not in await bridge.ports(net)  # the tap went with QEMU
    await runc_driver.destroy(ctr.uuid)
    assert await bridge.ports(net) == []


def _dnsmasq(net: str, tmp: Path, mac: str, address: str) -> subprocess.Popen[bytes]:
    """A DHCP server on the network serving `address` to `mac` only (what the DHCP agent will do)."""
    subprocess.run(["ip", "-n", net, "addr", "add", "10.81.0.1/24", "dev", bridge.BRIDGE], check=True)  # noqa: S603, S607
    # nsenter: the network namespace only (`ip netns exec` would pin every host mount, see netplane/dhcp.py)
    argv = ["nsenter", f"--net=/run/netns/{net}", "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
            "--port=0", "--bind-interfaces", f"--interface={bridge.BRIDGE}", "--except-interface=lo",
            "--dhcp-range=10.81.0.0,static,255.255.255.0", f"--dhcp-host={mac},{address}",
            f"--dhcp-leasefile={tmp / 'leases'}", f"--pid-file={tmp / 'dnsmasq.pid'}", "--log-facility=-"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603


def _ns_ping(net: str, address: str) -> bool:
    cmd = ["ip", "netns", "exec", net, "busybox", "ping", "-c", "1", "-W", "1", address]
    return subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0  # noqa: S603


async def test_hot_plug_of_a_nic_on_a_running_vm(
        qemu_driver: QemuDriver, nets: Callable[[], Awaitable[str]], tmp_path: Path) -> None:
    net, net2 = await nets(), await nets()
    boot_nic = nic_on(net, "10.80.0.41")
    vm = vm_spec("nic-hot", boot_nic, hw_machine_type="q35")  # PCI, so NICs can come and go
    await qemu_driver.spawn(vm)
    await guest.wait_console(qemu_driver, vm.uuid, lambda t: "cumulo-tiny-vm ready" in t, "ready line")

    hot = nic_on(net2, "10.81.0.42")
    dhcp = _dnsmasq(net2, tmp_path, hot.mac, "10.81.0.42")
    try:
        await qemu_driver.attach_nic(vm.uuid, hot)
        assert hot.device in await bridge.ports(net2)
        # The guest brings the new NIC up by itself and asks DHCP for its address.
        await guest.wait_console(qemu_driver, vm.uuid, lambda t: "10.81.0.42/24 (DHCP)" in t, "DHCP lease on the new NIC")
        await until(lambda: _ns_ping(net2, "10.81.0.42"), "ping of the hot-plugged NIC")

        # Suspend and resume: the taps go with QEMU and come back in the same slots (the saved
        # device state must match), and the guest's addresses are still there.
        await qemu_driver.suspend(vm.uuid)
        assert hot.device not in await bridge.ports(net2)
        await qemu_driver.resume(vm)
        assert hot.device in await bridge.ports(net2) and boot_nic.device in await bridge.ports(net)
        await until(lambda: _ns_ping(net2, "10.81.0.42"), "ping of the hot-plugged NIC after resume")

        await qemu_driver.detach_nic(vm.uuid, hot.port_id)
        assert hot.device not in await bridge.ports(net2)
        assert not _ns_ping(net2, "10.81.0.42")
        assert boot_nic.device in await bridge.ports(net)
    finally:
        dhcp.kill()
        dhcp.wait(timeout=30)
    await qemu_driver.destroy(vm.uuid)
    assert await bridge.ports(net) == [] and await bridge.ports(net2) == []


async def test_a_running_microvm_refuses_hot_plug_but_takes_a_nic_at_its_next_start(
        qemu_driver: QemuDriver, nets: Callable[[], Awaitable[str]]) -> None:
    net = await nets()
    vm = vm_spec("nic-micro", nic_on(net, "10.80.0.51"))
    await qemu_driver.spawn(vm)
    if qemu_driver.read_record(qemu_driver.dir / vm.uuid)["vm"]["machine"] != "microvm":
        pytest.skip("the tiny VM does not boot on microvm here")
    extra = nic_on(net, "10.80.0.52")
    with pytest.raises(DriverError, match="microvm"):
        await qemu_driver.attach_nic(vm.uuid, extra)
    assert extra.device not in await bridge.ports(net)
    await qemu_driver.power_off(vm.uuid, timeout=0)
    await qemu_driver.attach_nic(vm.uuid, extra)
    await qemu_driver.power_on(vm)
    assert {vm.nics[0].device, extra.device} <= set(await bridge.ports(net))
    await qemu_driver.destroy(vm.uuid)
    assert await bridge.ports(net) == []
