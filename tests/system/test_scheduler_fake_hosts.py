"""Scheduler and placement on `cumulo up --fake-hosts 3` (acceptance item 4).

The three fake hosts are small on purpose (2 VCPU, 4096 MB, 100 GB each) with allocation ratios
CPU 2.0 and RAM 1.5, so each holds 4 VCPU, 6144 MB and 100 GB. The local host reports the real
machine, whose size differs from one machine to the next, so the tests disable its nova-compute
service with the real CLI first (`openstack compute service set --disable`); the ComputeFilter
then removes it, which the NoValidHost faults below also show.

Checked: capacity × ratio is a hard limit per resource class (the next server goes ERROR with a
fault naming the filter), 20 concurrent builds never double-claim (per-host usage within capacity,
allocations equal the live servers' flavors, and every refusal was right), spreading, image
hypervisor_type, and availability zones.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from _util_resilience import (
    UsageSampler,
    api,
    check_placement,
    create_flavor,
    create_servers,
    delete_all_servers,
    flavor_resources,
    host_of,
    osc_json,
    parallel,
    placement_view,
    post_servers,
    quota_limits,
    server_body,
    statuses,
    unlimited_quotas,
    upload_image,
    upload_image_http,
    wait_settled,
)

if TYPE_CHECKING:
    from conftest import CumuloCloud

pytestmark = pytest.mark.system

FAKE_HOSTS = ("fake-host-1", "fake-host-2", "fake-host-3")
LOCAL_HOST = "cumulo-local"
VCPUS, RAM_MB, DISK_GB = 2, 4096, 100
CPU_RATIO, RAM_RATIO = 2.0, 1.5
# Capacity of one fake host: 4 VCPU, 6144 MB, 100 GB.
CAP = {"VCPU": int(VCPUS * CPU_RATIO), "MEMORY_MB": int(RAM_MB * RAM_RATIO), "DISK_GB": DISK_GB}

cumulo_options = {
    "fake_hosts": len(FAKE_HOSTS),
    "env": {
        "CUMULO_FAKE_HOST_VCPUS": str(VCPUS),
        "CUMULO_FAKE_HOST_RAM_MB": str(RAM_MB),
        "CUMULO_FAKE_HOST_DISK_GB": str(DISK_GB),
        "CUMULO_CPU_ALLOCATION_RATIO": str(CPU_RATIO),
        "CUMULO_RAM_ALLOCATION_RATIO": str(RAM_RATIO),
        "CUMULO_DISK_ALLOCATION_RATIO": "1.0",
    },
}

# name → (vcpus, ram, disk); which resource runs out first, and after how many servers.
FLAVORS = {
    "cpu1": (1, 64, 1),  # 4 per host by VCPU (ratio 2.0): 12
    "ram2g": (1, 2048, 1),  # 3 per host by RAM (ratio 1.5; 2 without it): 9
    "disk40": (1, 64, 40),  # 2 per host by disk: 6
    "mid": (2, 1024, 10),  # for the mixed concurrent run
}


class Env:
    def __init__(self, cloud: CumuloCloud, image: str) -> None:
        self.cloud, self.image = cloud, image


@pytest.fixture(scope="module")
def env(cumulo: CumuloCloud) -> Env:
    # The admin's steps, through the real CLI (side by side: each CLI run costs ~1.5 s).
    disabled, _, image = parallel(
        lambda: cumulo.osc("compute", "service", "set", "--disable", LOCAL_HOST, "nova-compute", json=False),
        lambda: unlimited_quotas(cumulo),
        lambda: upload_image(cumulo, "sched-image"),
    )
    assert "Failed" not in disabled, disabled
    services, limits = parallel(
        lambda: osc_json(cumulo, "compute", "service", "list", "--service", "nova-compute"),
        lambda: quota_limits(cumulo),
    )
    states = {s["Host"]: s["Status"] for s in services}
    assert states == {LOCAL_HOST: "disabled", **{h: "enabled" for h in FAKE_HOSTS}}, states
    assert limits["instances"] == -1 and limits["cores"] == -1 and limits["ram"] == -1, limits
    for name, (vcpus, ram, disk) in FLAVORS.items():
        create_flavor(cumulo, name, vcpus, ram, disk)
    return Env(cumulo, image)


@pytest.fixture
def sched(env: Env) -> Iterator[Env]:
    """Each test starts and ends with no servers, so capacities are the hosts' full size."""
    delete_all_servers(env.cloud)
    yield env
    delete_all_servers(env.cloud)


def _hosts(servers: dict[str, dict[str, Any]]) -> Counter[str | None]:
    return Counter(host_of(s) for s in servers.values() if s["status"] == "ACTIVE")


def _removed(message: str, filter_name: str, removed: int, of: int) -> bool:
    """The fault names the filter and its toll ("RamFilter removed 3 of 3"; the "of N" may be
    dropped when the whole list would not fit Nova's 255-character fault message)."""
    return re.search(rf"\b{filter_name} removed {removed}( of {of}( hosts)?)?(?![0-9])", message) is not None


def _fault(server: dict[str, Any]) -> str:
    fault = server.get("fault") or {}
    return str(fault.get("message", ""))


def test_inventory_reports_size_and_ratios(sched: Env) -> None:
    view = placement_view(sched.cloud)
    for host in FAKE_HOSTS:
        p = view.providers[host]
        assert p.inventory["VCPU"] == (VCPUS, 0, CPU_RATIO)
        assert p.inventory["MEMORY_MB"] == (RAM_MB, 0, RAM_RATIO)
        assert p.inventory["DISK_GB"] == (DISK_GB, 0, 1.0)
        assert {rc: p.capacity(rc) for rc in CAP} == CAP
    # The local host reports the real machine (at least one CPU, some memory).
    assert view.providers[LOCAL_HOST].inventory["VCPU"][0] >= 1
    rows = {h["Hypervisor Hostname"]: h for h in sched.cloud.osc("hypervisor", "list", "--long")}
    for host in FAKE_HOSTS:
        assert rows[host]["vCPUs"] == VCPUS and rows[host]["Memory MB"] == RAM_MB, rows[host]


@pytest.mark.parametrize(
    ("flavor", "fits", "filter_name"),
    [("cpu1", 12, "CoreFilter"), ("ram2g", 9, "RamFilter"), ("disk40", 6, "DiskFilter")],
)
def test_capacity_times_ratio_is_a_hard_limit(sched: Env, flavor: str, fits: int, filter_name: str) -> None:
    c = sched.cloud
    uuids = create_servers(c, fits, sched.image, flavor, f"fit-{flavor}")
    servers = wait_settled(c, uuids)
    assert statuses(servers.values()) == {"ACTIVE": fits}, {u: s and s.get("fault") for u, s in servers.items()}
    # Exactly full: the same number on every host, nothing on the disabled local host.
    assert _hosts(servers) == {h: fits // 3 for h in FAKE_HOSTS}

    # One more does not fit anywhere: ERROR, and the fault (seen through the real CLI) says why.
    [extra] = create_servers(c, 1, sched.image, flavor, f"over-{flavor}")
    settled = wait_settled(c, [extra])[extra]
    assert settled["status"] == "ERROR"
    # Through the real CLI once; the other cases read the same view over HTTP.
    shown = c.osc("server", "show", extra) if filter_name == "CoreFilter" else settled
    assert shown["status"] == "ERROR"
    message = shown["fault"]["message"]
    assert message.startswith("No valid host was found."), message
    assert _removed(message, "ComputeFilter", 1, 4), message
    assert _removed(message, filter_name, 3, 3), message
    assert shown["OS-EXT-SRV-ATTR:host"] is None

    view, _ = check_placement(c)
    rc = {"CoreFilter": "VCPU", "RamFilter": "MEMORY_MB", "DiskFilter": "DISK_GB"}[filter_name]
    per_server = flavor_resources(settled["flavor"])[rc]
    for host in FAKE_HOSTS:
        assert view.providers[host].usage[rc] == (fits // 3) * per_server
        assert view.providers[host].free(rc) < per_server
    assert view.providers[LOCAL_HOST].usage == {}


def test_twenty_concurrent_builds_never_double_claim(sched: Env) -> None:
    c = sched.cloud
    with UsageSampler(c) as sampler:
        uuids = create_servers(c, 20, sched.image, "cpu1", "burst")
        servers = wait_settled(c, uuids)
    # Sampled all along the race: no host was ever above capacity × ratio.
    assert sampler.samples >= 5 and not sampler.over, (sampler.samples, sampler.over[:5])
    assert {h: sampler.peak[h]["VCPU"] for h in FAKE_HOSTS} == {h: CAP["VCPU"] for h in FAKE_HOSTS}
    # 3 hosts × 4 VCPU: exactly 12 fit, whatever the interleaving.
    assert statuses(servers.values()) == {"ACTIVE": 12, "ERROR": 8}
    assert _hosts(servers) == {h: 4 for h in FAKE_HOSTS}
    for s in servers.values():
        if s["status"] == "ERROR":
            assert _fault(s).startswith("No valid host was found."), s.get("fault")
            assert host_of(s) is None
    view, _ = check_placement(c)
    assert view.totals() == {"VCPU": 12, "MEMORY_MB": 12 * 64, "DISK_GB": 12}

    # The admin view of the hypervisors agrees with placement.
    hyps = {h["hypervisor_hostname"]: h for h in _hypervisors(c)}
    for host in FAKE_HOSTS:
        assert hyps[host]["vcpus_used"] == 4
        assert hyps[host]["running_vms"] == 4


def test_mixed_concurrent_builds_fill_hosts_without_overcommit(sched: Env) -> None:
    """Two flavors racing: usage stays within capacity, and every refusal was right (usage only
    grows during the run, so a flavor refused then still fits on no host at the end)."""
    c = sched.cloud
    bodies = [server_body(f"mix-{i}", sched.image, "mid" if i % 2 else "cpu1") for i in range(20)]
    with UsageSampler(c) as sampler:
        uuids = post_servers(c, bodies)
        servers = wait_settled(c, uuids)
    assert sampler.samples >= 5 and not sampler.over, (sampler.samples, sampler.over[:5])
    counts = statuses(servers.values())
    assert set(counts) <= {"ACTIVE", "ERROR"} and counts["ACTIVE"] >= 6, counts
    view, _ = check_placement(c)
    for s in servers.values():
        if s["status"] != "ERROR":
            continue
        want = flavor_resources(s["flavor"])
        room = [h for h in FAKE_HOSTS if all(view.providers[h].free(rc) >= n for rc, n in want.items())]
        assert not room, f"{s['name']} was refused ({_fault(s)}) but {room} still have room for it"


def test_spread_weigher_spreads_across_hosts(sched: Env) -> None:
    c = sched.cloud
    uuids = create_servers(c, 6, sched.image, "cpu1", "spread")
    servers = wait_settled(c, uuids)
    assert statuses(servers.values()) == {"ACTIVE": 6}
    assert _hosts(servers) == {h: 2 for h in FAKE_HOSTS}
    check_placement(c)


def test_image_hypervisor_type_no_host_offers(sched: Env) -> None:
    c = sched.cloud
    xen = upload_image_http(c, "xen-image", hypervisor_type="xen")
    qemu = upload_image_http(c, "qemu-image", hypervisor_type="qemu")
    [bad] = create_servers(c, 1, xen, "cpu1", "xen")
    [good] = create_servers(c, 1, qemu, "cpu1", "qemu")
    servers = wait_settled(c, [bad, good])
    assert servers[good]["status"] == "ACTIVE"
    failed = servers[bad]
    assert failed["status"] == "ERROR"
    message = _fault(failed)
    assert message.startswith("No valid host was found."), message
    assert _removed(message, "ImagePropertiesFilter", 3, 3), message
    check_placement(c)


def test_availability_zones(sched: Env) -> None:
    c = sched.cloud
    zone_list, err = parallel(
        lambda: osc_json(c, "availability", "zone", "list", "--compute"),
        # A zone that does not exist is refused by the API (Nova's 400), nothing is built.
        lambda: c.osc_run("--os-compute-api-version", "2.79", "server", "create", "--image", sched.image,
                          "--flavor", "cpu1", "--availability-zone", "nowhere", "--nic", "none", "az-nowhere"),
    )
    zones = {z["Zone Name"]: z["Zone Status"] for z in zone_list}
    assert zones.get("nova") == "available", zones
    assert err.returncode != 0 and "availability zone" in err.stderr.lower() and "400" in err.stderr, err.stderr

    # The zone every host is in: accepted and recorded.
    [in_nova] = create_servers(c, 1, sched.image, "cpu1", "az-nova", availability_zone="nova")
    # "zone:host" (admin) forces the host, even against the spread weigher.
    forced = create_servers(c, 3, sched.image, "cpu1", "az-forced", availability_zone="nova:fake-host-3")
    servers = wait_settled(c, [in_nova, *forced])
    assert statuses(servers.values()) == {"ACTIVE": 4}
    assert servers[in_nova]["OS-EXT-AZ:availability_zone"] == "nova"
    assert [host_of(servers[u]) for u in forced] == ["fake-host-3"] * 3

    # The "internal" zone holds only the conductor and scheduler: no compute host is in it, so a
    # server can never run there and the API refuses it up front, in Nova's words.
    resp = _post_server(c, sched.image, "cpu1", "az-internal", availability_zone="internal")
    assert resp.status_code == 400, resp.text
    assert resp.json()["badRequest"]["message"] == "The requested availability zone is not available"
    check_placement(c)


def _post_server(c: CumuloCloud, image: str, flavor: str, name: str, **extra: Any) -> Any:
    return api(c, "POST", "/servers", json=server_body(name, image, flavor, **extra), ok=(202, 400))


def _hypervisors(c: CumuloCloud) -> list[dict[str, Any]]:
    return list(api(c, "GET", "/os-hypervisors/detail").json()["hypervisors"])
