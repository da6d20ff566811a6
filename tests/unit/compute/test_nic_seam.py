"""The NIC seam without a host: names derived from ids, what a NicSpec may carry onto a command line,
the record both drivers keep, and how the QEMU driver lays NICs out on its machine."""

from __future__ import annotations

import dataclasses
import uuid as uuidlib
from pathlib import Path

import pytest

from cumulo.compute.drivers import nicrecord
from cumulo.compute.drivers.base import NicSpec
from cumulo.compute.drivers.nicrecord import PluggedNic
from cumulo.compute.drivers.qemu import netdev
from cumulo.compute.drivers.qemu.process import Layout, VmConfig, build_argv
from cumulo.errors import DriverError, Invalid
from cumulo.netplane import netns
from cumulo.netplane import nic as plane

PORT = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


def spec(**kw: object) -> NicSpec:
    base = NicSpec(port_id=PORT, mac="fa:16:3e:01:02:03", netns=netns.network_ns(str(uuidlib.uuid4())),
                   bridge="br0", device=netns.port_device(PORT), addresses=("10.0.0.5/24", "2001:db8::5/64"),
                   gateway="10.0.0.1", routes=(("192.168.0.0/16", "10.0.0.254"),), mtu=1450)
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def test_names_derive_from_ids_and_fit_ifnamsiz() -> None:
    assert netns.port_device(PORT) == "tap0f1e2d3c4b5"
    assert len(netns.port_device(PORT)) <= 15
    assert netns.network_ns(PORT.upper()) == f"cnet-{PORT}"
    assert netns.router_ns(PORT) == f"crtr-{PORT}"
    for bad in ("my-net", "../etc", "", "0f1e2d3c"):
        with pytest.raises(Invalid):
            netns.network_ns(bad)
    for bad in ("a/b", "-n", "x y", ""):
        with pytest.raises(Invalid):
            netns.check_name(bad)


def test_only_sound_nics_reach_a_command_line() -> None:
    plane.check(spec())
    for bad in (dict(mac="01:16:3e:01:02:03"), dict(mac="fa:16:3e:01:02"), dict(mac="fa:16:3e:01:02:0g"),
                dict(device="tap -rf"), dict(device="a" * 16), dict(bridge="-br0"), dict(mtu=40),
                dict(addresses=("10.0.0.300/24",)), dict(gateway="gw"), dict(routes=(("10/8", "x"),)),
                dict(netns="../../proc/1/ns/net")):
        with pytest.raises(Invalid):
            plane.check(spec(**bad))


def test_container_end_configuration_lines() -> None:
    lines = plane._config_lines(spec(), "eth1")
    assert lines == [
        "link set dev eth1 mtu 1450 up",
        "addr replace 10.0.0.5/24 dev eth1",
        "addr replace 2001:db8::5/64 dev eth1 nodad",
        "route replace 192.168.0.0/16 via 10.0.0.254 dev eth1",
        "route replace default via 10.0.0.1 dev eth1",
    ]
    assert plane.host_mac("FA:16:3E:01:02:03") == "fe:16:3e:01:02:03"


def test_the_record_round_trips_and_finds_free_slots() -> None:
    a, b = PluggedNic(0, spec()), PluggedNic(2, spec(port_id=str(uuidlib.uuid4()), gateway=None, routes=()))
    docs = [nicrecord.to_json(a), nicrecord.to_json(b), {"slot": "x"}, "junk"]
    assert nicrecord.load(docs) == [a, b]
    assert nicrecord.load(None) == []
    assert nicrecord.free_slot([a, b]) == 1 and nicrecord.free_slot([]) == 0
    assert nicrecord.find([a, b], b.nic.port_id) is b and nicrecord.find([a], "other") is None


def cfg(machine: str, nics: int) -> VmConfig:
    return VmConfig(memory_mb=256, vcpus=1, accel="tcg", machine=machine,
                    hotplug_ports=netdev.hotplug_ports(machine, nics))


def test_q35_nics_sit_in_root_ports_with_spares_for_hot_plug() -> None:
    q35 = cfg("q35", 1)
    assert q35.hotplug_ports == 1 + netdev.SPARE_PORTS
    ports = root_ports(build_argv(Layout(Path("/srv/qemu/x")), q35))
    assert ports[0] == "pcie-root-port,id=hp0,bus=pcie.0,chassis=1" and len(ports) == q35.hotplug_ports
    boot = netdev.boot_nics(q35, (spec(),))
    assert boot[0][1] == "hp0"
    props = netdev.device_props(q35, boot[0][0], boot[0][1])
    assert props == {"driver": "virtio-net-pci", "netdev": "net0", "id": "nic0", "mac": "fa:16:3e:01:02:03",
                     "bus": "hp0", "host_mtu": 1450}
    assert netdev.device_option(props).startswith("virtio-net-pci,netdev=net0,id=nic0,mac=fa:16:3e:01:02:03,bus=hp0")
    assert netdev.free_port(q35, boot, live=True) == "hp1"
    full = [(PluggedNic(k, spec()), f"hp{k}") for k in range(q35.hotplug_ports)]
    with pytest.raises(DriverError, match="no free PCIe slot"):
        netdev.free_port(q35, full, live=True)


def root_ports(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "-device" and argv[i + 1].startswith("pcie-root-port")]


def test_q35_servers_without_nics_or_volumes_get_the_spare_root_ports_too() -> None:
    # A server booted with `--nic none` and no volume still takes a hot-plugged NIC or volume.
    bare = cfg("q35", 0)
    assert bare.hotplug_ports == netdev.SPARE_PORTS == 4
    assert root_ports(build_argv(Layout(Path("/srv/qemu/x")), bare)) == [
        f"pcie-root-port,id=hp{k},bus=pcie.0,chassis={k + 1}" for k in range(4)]
    assert netdev.free_port(bare, [], live=True) == "hp0"
    assert netdev.with_spare_ports(bare) is bare
    # Other machines have none (microvm: no PCI; pc: its bus hot plugs itself).
    assert cfg("microvm", 0).hotplug_ports == cfg("pc", 2).hotplug_ports == 0


def test_a_q35_record_made_without_ports_gets_them_at_a_cold_start_only() -> None:
    # instance.json of a q35 server made before every q35 server had ports: hotplug_ports 0. Its
    # argv stays port-less (a resume from a saved state needs the same devices); core._start adds
    # the spare ports at a cold start (with_spare_ports), and an attach while stopped takes one.
    legacy = VmConfig(memory_mb=256, vcpus=1, accel="tcg", machine="q35")
    assert not root_ports(build_argv(Layout(Path("/srv/qemu/x")), legacy))
    with pytest.raises(DriverError, match="without hot-plug root ports.*stop it first"):
        netdev.free_port(legacy, [], live=True)
    cold = netdev.with_spare_ports(legacy)
    assert cold == dataclasses.replace(legacy, hotplug_ports=netdev.SPARE_PORTS)
    assert len(root_ports(build_argv(Layout(Path("/srv/qemu/x")), cold))) == netdev.SPARE_PORTS
    # A NIC already on the root complex (bus "") stays there; the new one takes the first port.
    old_nic = (PluggedNic(0, spec()), "")
    assert "bus" not in netdev.device_props(cold, *old_nic)
    assert netdev.free_port(cold, [old_nic], live=False) == "hp0"
    micro = VmConfig(memory_mb=256, vcpus=1, accel="tcg", machine="microvm")
    assert netdev.with_spare_ports(micro) is micro


def test_microvm_nics_are_boot_time_only() -> None:
    micro = cfg("microvm", 1)
    assert micro.hotplug_ports == 0
    entry = PluggedNic(0, spec(mtu=1500))
    assert netdev.device_props(micro, entry, "hp0") == {
        "driver": "virtio-net-device", "netdev": "net0", "id": "nic0", "mac": "fa:16:3e:01:02:03"}
    with pytest.raises(DriverError, match="microvm"):
        netdev.free_port(micro, [], live=True)
    assert netdev.free_port(micro, [], live=False) == ""
