"""Filters, weighers, their registries and select_destinations with NoValidHost explanations."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa
from sched_rig import Hosts

from cumulo.conf import Settings
from cumulo.db import Database, utcnow
from cumulo.errors import NoValidHost
from cumulo.hosts.models import services
from cumulo.placement.inventory import DISK_GB, MEMORY_MB, VCPU, Inventory
from cumulo.placement.service import Placement
from cumulo.scheduler import filters as filters_mod
from cumulo.scheduler import weighers as weighers_mod
from cumulo.scheduler.filters.base import BaseHostFilter
from cumulo.scheduler.filters.builtin import (
    AvailabilityZoneFilter,
    ComputeCapabilitiesFilter,
    ComputeFilter,
    CoreFilter,
    DiskFilter,
    ImagePropertiesFilter,
    RamFilter,
    match_requirement,
)
from cumulo.scheduler.hoststate import HostState, RequestSpec
from cumulo.scheduler.manager import SchedulerManager, no_valid_host_message
from cumulo.scheduler.weighers import normalize, weigh_hosts


def host_state(name: str = "h1", *, ram: int = 8192, used_ram: int = 0, vcpus: int = 4, disk: int = 100,
               az: str = "nova", up: bool = True, disabled: bool = False, **kw: Any) -> HostState:
    seen = utcnow() - dt.timedelta(seconds=0 if up else 3600)
    values: dict[str, Any] = {
        "host": name, "node": name, "provider_uuid": f"rp-{name}", "hypervisor_type": "fake",
        "hypervisor_version": 1, "instance_types": ("fake", "container", "qemu"), "cpu_info": {"arch": "x86_64"},
        "details": {}, "availability_zone": az,
        "service": {"disabled": disabled, "forced_down": False, "last_seen_up": seen},
        "inventory": {
            VCPU: Inventory(total=vcpus, max_unit=vcpus, allocation_ratio=4.0),
            MEMORY_MB: Inventory(total=ram, max_unit=ram),
            DISK_GB: Inventory(total=disk, max_unit=disk),
        },
        "usage": {MEMORY_MB: used_ram},
    }
    values.update(kw)
    return HostState(**values)


def test_compute_filter(sched_conf: Settings) -> None:
    f = ComputeFilter(sched_conf)
    spec = RequestSpec()
    assert f.host_passes(host_state(), spec)
    assert not f.host_passes(host_state(up=False), spec)
    assert not f.host_passes(host_state(disabled=True), spec)
    assert not f.host_passes(host_state(service=None), spec)


def test_availability_zone_filter(sched_conf: Settings) -> None:
    f = AvailabilityZoneFilter(sched_conf)
    assert f.host_passes(host_state(az="az1"), RequestSpec())
    assert f.host_passes(host_state(az="az1"), RequestSpec.from_dict({"availability_zone": "az1"}))
    assert not f.host_passes(host_state(az="az2"), RequestSpec.from_dict({"availability_zone": "az1"}))


def test_image_properties_filter(sched_conf: Settings) -> None:
    f = ImagePropertiesFilter(sched_conf)
    h = host_state()
    assert f.host_passes(h, RequestSpec.from_dict({"image": {"properties": {"hypervisor_type": "qemu"}}}))
    assert f.host_passes(h, RequestSpec.from_dict({"image_properties": {"img_hv_type": "FAKE"}}))
    assert not f.host_passes(h, RequestSpec.from_dict({"image": {"properties": {"hypervisor_type": "xen"}}}))
    assert f.host_passes(h, RequestSpec.from_dict({"image_properties": {"architecture": "amd64"}}))
    assert not f.host_passes(h, RequestSpec.from_dict({"image_properties": {"hw_architecture": "aarch64"}}))
    assert f.host_passes(h, RequestSpec.from_dict({"image_properties": {"img_hv_requested_version": ">= 1"}}))
    assert not f.host_passes(h, RequestSpec.from_dict({"image_properties": {"img_hv_requested_version": ">= 2"}}))
    vm = host_state(details={"vm_modes": ["hvm"]})
    assert not f.host_passes(vm, RequestSpec.from_dict({"image_properties": {"vm_mode": "exe"}}))


def test_compute_capabilities_filter(sched_conf: Settings) -> None:
    f = ComputeCapabilitiesFilter(sched_conf)
    h = host_state(details={"accelerator": "kvm"})

    def spec(**extra: str) -> RequestSpec:
        return RequestSpec.from_dict({"flavor": {"extra_specs": extra}})

    assert f.host_passes(h, spec(**{"hw:cpu_policy": "dedicated"}))  # other scopes are not ours
    assert f.host_passes(h, spec(**{"capabilities:cpu_info:arch": "x86_64"}))
    assert f.host_passes(h, spec(**{"capabilities:details:accelerator": "s== kvm"}))
    assert not f.host_passes(h, spec(**{"capabilities:details:accelerator": "tcg"}))
    assert not f.host_passes(h, spec(**{"capabilities:no_such": "x"}))


def test_match_requirement_operators() -> None:
    assert match_requirement(8, "= 4") and not match_requirement(2, "= 4")
    assert match_requirement("2", "== 2") and match_requirement(3, "!= 2")
    assert match_requirement("abc", "s== abc") and match_requirement("b", "s> a")
    assert match_requirement("x86_64 sse", "<in> sse")
    assert match_requirement("kvm", "<or> qemu <or> kvm") and not match_requirement("xen", "<or> qemu <or> kvm")
    assert match_requirement(["a", "b"], "<all-in> a b")


def test_resource_filters_use_ratio_and_usage(sched_conf: Settings) -> None:
    h = host_state(ram=4096, used_ram=3072, vcpus=2, disk=10)
    assert RamFilter(sched_conf).host_passes(h, RequestSpec(resources={MEMORY_MB: 1024}))
    assert not RamFilter(sched_conf).host_passes(h, RequestSpec(resources={MEMORY_MB: 1025}))
    assert CoreFilter(sched_conf).host_passes(h, RequestSpec(resources={VCPU: 2}))  # 2 x 4.0 = 8 free
    assert not CoreFilter(sched_conf).host_passes(h, RequestSpec(resources={VCPU: 3}))  # above max_unit 2
    assert not DiskFilter(sched_conf).host_passes(h, RequestSpec(resources={DISK_GB: 11}))
    assert DiskFilter(sched_conf).host_passes(h, RequestSpec(resources={}))


def test_filter_registry_is_pluggable(sched_conf: Settings) -> None:
    @filters_mod.register
    class NoOddHostsFilter(BaseHostFilter):
        name = "NoOddHostsFilter"

        def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
            return not host.host.endswith(("1", "3"))

    try:
        conf = sched_conf.replace(extra={"scheduler_filters": "ComputeFilter, NoOddHostsFilter"})
        chosen = filters_mod.configured_filters(conf)
        assert [f.name for f in chosen] == ["ComputeFilter", "NoOddHostsFilter"]
        with pytest.raises(ValueError, match="NoSuchFilter"):
            filters_mod.configured_filters(sched_conf.replace(extra={"scheduler_filters": ["NoSuchFilter"]}))
    finally:
        filters_mod.REGISTRY.pop("NoOddHostsFilter", None)
    assert [f.name for f in filters_mod.configured_filters(sched_conf)] == list(filters_mod.DEFAULT_FILTERS)


def test_weighers_spread_by_default_and_stack_when_negative(sched_conf: Settings) -> None:
    hosts = [host_state("a", used_ram=4000), host_state("b", used_ram=1000), host_state("c", used_ram=2000)]
    spread = weigh_hosts(weighers_mod.configured_weighers(sched_conf), hosts, RequestSpec())
    assert [h.host for _, h in spread] == ["b", "c", "a"]
    stack_conf = sched_conf.replace(extra={"ram_weight_multiplier": -1.0})
    stacked = weigh_hosts(weighers_mod.configured_weighers(stack_conf), hosts, RequestSpec())
    assert [h.host for _, h in stacked] == ["a", "c", "b"]
    both = sched_conf.replace(extra={"scheduler_weighers": ["RAMWeigher", "CPUWeigher", "DiskWeigher"]})
    assert len(weighers_mod.configured_weighers(both)) == 3
    assert normalize([5, 5]) == [0.0, 0.0] and normalize([0, 5, 10]) == [0.0, 0.5, 1.0]


def test_ties_break_by_host_name(sched_conf: Settings) -> None:
    hosts = [host_state("z"), host_state("m"), host_state("a")]
    ranked = weigh_hosts(weighers_mod.configured_weighers(sched_conf), hosts, RequestSpec())
    assert [h.host for _, h in ranked] == ["a", "m", "z"]


def test_no_valid_host_message_names_filters() -> None:
    msg = no_valid_host_message(3, [("ComputeFilter", 0, 3), ("RamFilter", 3, 3)])
    assert msg.startswith("No valid host was found.")
    assert "ComputeFilter removed 0 of 3 hosts" in msg and "RamFilter removed 3 of 3 hosts" in msg
    many = [(f, 0, 3) for f in filters_mod.DEFAULT_FILTERS[:7]]
    compact = no_valid_host_message(3, [*many[:-1], ("DiskFilter", 3, 3)])
    assert len(compact) <= 255 and all(f"{f} removed" in compact for f in filters_mod.DEFAULT_FILTERS[:7])
    # Every default filter run (the server group ones last): the one that removed the hosts is named.
    every = [(f, 0, 3) for f in filters_mod.DEFAULT_FILTERS[:-1]] + [(filters_mod.DEFAULT_FILTERS[-1], 3, 3)]
    shortest = no_valid_host_message(3, every)
    assert len(shortest) <= 255 and f"{filters_mod.DEFAULT_FILTERS[-1]} removed 3" in shortest
    assert "no compute hosts" in no_valid_host_message(0, [])


# -- select_destinations over real rows ------------------------------------------------------


async def test_select_destinations_spreads_and_gives_alternates(
    db: Database, sched_conf: Settings, placement: Placement, hosts: Hosts
) -> None:
    for name in ("h1", "h2", "h3"):
        await hosts.add(name, memory_mb=8192)
    await placement.claim("x", hosts.providers["h1"], {MEMORY_MB: 4096})
    sched = SchedulerManager(db, sched_conf, placement)
    dests = await sched.select_destinations({"resources": {MEMORY_MB: 1024}}, 3)
    # h1 is the fullest; the in-request consumption spreads the three picks over h2, h3, then h2.
    assert [d["host"] for d in dests] == ["h2", "h3", "h2"]
    assert dests[0]["provider_uuid"] == hosts.providers["h2"]
    assert {a["host"] for a in dests[0]["alternates"]} == {"h1", "h3"}
    assert dests[0]["availability_zone"] == "nova"


async def test_no_valid_host_names_each_filter_and_count(
    db: Database, sched_conf: Settings, placement: Placement, hosts: Hosts
) -> None:
    await hosts.add("h1", memory_mb=2048)
    await hosts.add("h2", memory_mb=2048)
    await hosts.add("h3", memory_mb=2048, az="other")
    sched = SchedulerManager(db, sched_conf, placement)
    with pytest.raises(NoValidHost) as err:
        await sched.select_destinations({"availability_zone": "nova", "flavor": {"vcpus": 1, "memory_mb": 4096}}, 1)
    msg = err.value.message
    assert msg.startswith("No valid host was found.")
    assert "ComputeFilter removed 0 of 3" in msg
    assert "AvailabilityZoneFilter removed 1 of 3" in msg
    assert "RamFilter removed 2 of 2" in msg
    assert "DiskFilter" not in msg  # filters after the last host is gone do not run


async def test_down_and_disabled_hosts_are_skipped(
    db: Database, sched_conf: Settings, placement: Placement, hosts: Hosts
) -> None:
    await hosts.add("h1")
    await hosts.add("h2")
    await hosts.add("h3")
    async with db.write() as conn:
        await conn.execute(sa.update(services).where(services.c.host == "h1").values(disabled=True))
        await conn.execute(sa.update(services).where(services.c.host == "h2")
                           .values(last_seen_up=utcnow() - dt.timedelta(hours=1)))
    sched = SchedulerManager(db, sched_conf, placement)
    dests = await sched.select_destinations({"resources": {MEMORY_MB: 1}}, 1)
    assert dests[0]["host"] == "h3" and dests[0]["alternates"] == []


async def test_forced_host_and_ignore_hosts(
    db: Database, sched_conf: Settings, placement: Placement, hosts: Hosts
) -> None:
    await hosts.add("h1")
    await hosts.add("h2", memory_mb=1024)
    sched = SchedulerManager(db, sched_conf, placement)
    assert (await sched.select_destinations({"availability_zone": "nova:h2"}, 1))[0]["host"] == "h2"
    assert (await sched.select_destinations({"force_host": "h2"}, 1))[0]["host"] == "h2"
    assert (await sched.select_destinations({"ignore_hosts": ["h1"]}, 1))[0]["host"] == "h2"
    with pytest.raises(NoValidHost, match="matching host nope"):
        await sched.select_destinations({"force_host": "nope"}, 1)


async def test_scheduler_registers_its_service(db: Database, sched_conf: Settings, placement: Placement) -> None:
    sched = SchedulerManager(db, sched_conf, placement)
    await sched.start()
    try:
        async with db.read() as conn:
            row = (await conn.execute(sa.select(services).where(services.c.binary == "nova-scheduler"))).mappings().one()
        assert row["host"] == sched_conf.host_name and row["availability_zone"] == "internal"
        assert row["last_seen_up"] is not None
    finally:
        await sched.stop()


def test_physical_network_filter(sched_conf: Settings) -> None:
    """Issue 14: servers on a flat network go only to hosts that map its physnet (or carry any)."""
    from cumulo.scheduler.filters.builtin import PhysicalNetworkFilter

    f = PhysicalNetworkFilter(sched_conf)
    public = RequestSpec.from_dict({"network_metadata": {"physnets": ["public"]}})
    assert public.physnets == {"public"}
    assert f.host_passes(host_state(details={"physnets": ["public"]}), public)
    assert f.host_passes(host_state(details={"physnets": ["*"]}), public)
    assert not f.host_passes(host_state(details={"physnets": []}), public)
    assert not f.host_passes(host_state(details={}), public)
    assert f.host_passes(host_state(details={}), RequestSpec())  # no flat network: any host


async def test_no_host_mapping_the_physnet_is_a_clear_no_valid_host(
    db: Database, sched_conf: Settings, placement: Placement, hosts: Hosts
) -> None:
    await hosts.add("h1", memory_mb=2048)
    await hosts.add("h2", memory_mb=2048)
    sched = SchedulerManager(db, sched_conf, placement)
    with pytest.raises(NoValidHost) as err:
        await sched.select_destinations({"network_metadata": {"physnets": ["public"]},
                                         "flavor": {"vcpus": 1, "memory_mb": 512}}, 1)
    assert "No host maps physical network public (physical_interface_mappings)." in err.value.message
    assert "PhysicalNetworkFilter removed 2" in err.value.message
