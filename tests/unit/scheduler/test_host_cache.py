"""The scheduler's host-state cache and bounded candidate set (scheduler/cache.py, issue 14).

Every test turns the cache on at any size (host_cache_min_hosts 0) and bounds the candidates well
below the host count, so the paths taken at 1,000 hosts run here on a few dozen."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa
from sched_rig import Hosts

from cumulo.compute.service.hosts import HostService
from cumulo.conf import Settings
from cumulo.db import Database, new_uuid
from cumulo.errors import NoValidHost
from cumulo.hosts.models import services
from cumulo.placement.inventory import MEMORY_MB, VCPU
from cumulo.placement.service import Placement
from cumulo.scheduler.manager import MAX_ALTERNATES, SchedulerManager

HALF = {VCPU: 1, MEMORY_MB: 4096}  # two per host of the rig's default 8192 MB


def cached(conf: Settings, max_candidates: int = 4, **extra: Any) -> Settings:
    return conf.replace(extra={**conf.extra, "host_cache_min_hosts": 0, "max_candidates": max_candidates, **extra})


async def add_hosts(hosts: Hosts, n: int, **kw: Any) -> list[str]:
    names = [f"h{i:03d}" for i in range(n)]
    for name in names:
        await hosts.add(name, **kw)
    return names


async def place(sched: SchedulerManager, placement: Placement, resources: dict[str, int]) -> str | None:
    """What the conductor does: select, claim the choice or an alternate, reselect afresh after
    losing them all (three times); the host, or None when NoValidHost."""
    uuid = new_uuid()
    for attempt in range(3):
        spec: dict[str, Any] = {"resources": resources, **({"fresh": True} if attempt else {})}
        try:
            first = (await sched.select_destinations(spec, 1))[0]
        except NoValidHost:
            return None
        for dest in [first, *first["alternates"]]:
            if await placement.claim(uuid, dest["provider_uuid"], resources):
                return str(dest["host"])
    return None


async def test_picks_come_from_memory_and_consume_it(
    db: Database, sched_conf: Settings, placement: Placement, hosts: Hosts
) -> None:
    await add_hosts(hosts, 12)
    sched = SchedulerManager(db, cached(sched_conf), placement)
    chosen = [await place(sched, placement, HALF) for _ in range(24)]
    # One read for 24 placements; every pick consumed the cached host, so 24 fit 12 hosts of 2 exactly.
    assert sched.cache.reloads == 1
    assert None not in chosen and set(Counter(chosen).values()) == {2}
    # The 25th: the cache says full, it reads everything again before answering NoValidHost.
    with pytest.raises(NoValidHost, match="Out of MEMORY_MB"):
        await sched.select_destinations({"resources": HALF}, 1)
    assert sched.cache.reloads == 2


async def test_two_schedulers_racing_never_overcommit(
    db: Database, sched_conf: Settings, placement: Placement, hosts: Hosts
) -> None:
    """Two scheduler processes with their own caches on one database: claims stay atomic, so the
    stale views only cost retries; exactly the capacity is placed."""
    names = await add_hosts(hosts, 10)
    a = SchedulerManager(db, cached(sched_conf), placement)
    b = SchedulerManager(db, cached(sched_conf), placement)
    results = await asyncio.gather(*(place(a if i % 2 else b, placement, HALF) for i in range(30)))
    placed = [h for h in results if h is not None]
    assert len(placed) == 20 and Counter(placed) == dict.fromkeys(names, 2)
    for name in names:
        assert (await placement.usage(hosts.providers[name]))[MEMORY_MB] == 8192


async def test_stale_cache_costs_a_retry(
    db: Database, sched_conf: Settings, placement: Placement, hosts: Hosts
) -> None:
    names = await add_hosts(hosts, 8)
    sched = SchedulerManager(db, cached(sched_conf, max_candidates=8), placement)
    await sched.select_destinations({"resources": {MEMORY_MB: 1}}, 1)  # the cache is read
    # Another scheduler fills every host but the last behind this one's back.
    for name in names[:-1]:
        assert await placement.claim(new_uuid(), hosts.providers[name], {MEMORY_MB: 8192})
    stale = (await sched.select_destinations({"resources": HALF}, 1))[0]
    assert stale["host"] != names[-1]
    assert not await placement.claim(new_uuid(), stale["provider_uuid"], HALF)
    fresh = (await sched.select_destinations({"resources": HALF, "fresh": True}, 1))[0]
    assert fresh["host"] == names[-1] and fresh["alternates"] == []
    assert sched.cache.reloads == 2


async def test_disabled_or_forced_down_host_is_never_answered_from_the_cache(
    db: Database, sched_conf: Settings, placement: Placement, hosts: Hosts
) -> None:
    """The API's `services_changed` fanout (compute service set / delete) makes the next request
    read its candidates' services afresh, before the full read it started is in."""
    names = await add_hosts(hosts, 6)
    sched = SchedulerManager(db, cached(sched_conf, max_candidates=6), placement)
    await sched.select_destinations({"resources": {MEMORY_MB: 1}}, 1)
    async with db.write() as conn:
        await conn.execute(sa.update(services).where(services.c.host.in_(names[:3])).values(disabled=True))
        await conn.execute(sa.update(services).where(services.c.host.in_(names[3:5])).values(forced_down=True))
    await sched.services_changed()
    assert sched.cache.services_stale
    for _ in range(3):
        dest = (await sched.select_destinations({"resources": {MEMORY_MB: 1}}, 1))[0]
        assert dest["host"] == names[5] and dest["alternates"] == []
    assert sched.cache.rechecks >= 1


async def test_an_admin_service_change_reaches_the_scheduler_before_the_next_request(
    db: Database, sched_conf: Settings, placement: Placement, hosts: Hosts
) -> None:
    """HostService.update_service (os-services PUT) tells the schedulers (SchedulerAPI's fanout;
    here the scheduler itself stands in for it) before it returns: the next select never answers
    the disabled host, though the view is young."""
    names = await add_hosts(hosts, 2)
    sched = SchedulerManager(db, cached(sched_conf, max_candidates=2, host_cache_seconds=3600.0), placement)
    await sched.select_destinations({"resources": {MEMORY_MB: 1}}, 1)
    admin = HostService(db, sched_conf, placement, sched)
    found = await admin.find_service_id(names[0], "nova-compute")
    assert found is not None
    await admin.update_service(found, {"disabled": True})
    for _ in range(3):
        dest = (await sched.select_destinations({"resources": {MEMORY_MB: 1}}, 1))[0]
        assert dest["host"] == names[1] and dest["alternates"] == []


async def test_a_view_that_ran_out_is_read_again_ahead_of_the_next_request(
    db: Database, sched_conf: Settings, placement: Placement, hosts: Hosts
) -> None:
    """The pick that leaves the only passing host full starts a full read in the background
    (after its answer): a delete's freed capacity is then in the view before the next request, which
    is answered without waiting for a read (the NoValidHost path would read first)."""
    names = await add_hosts(hosts, 1)
    sched = SchedulerManager(db, cached(sched_conf, host_cache_seconds=3600.0), placement)
    consumers = [new_uuid(), new_uuid()]
    for i, consumer in enumerate(consumers):
        dest = (await sched.select_destinations({"resources": HALF}, 1))[0]
        assert await placement.claim(consumer, dest["provider_uuid"], HALF)
        if i == 0:
            await placement.release(consumer)  # a delete, which the scheduler is not told of
    assert sched.cache.reloads == 1  # the cached view says the host is full now; it is not
    deadline = asyncio.get_running_loop().time() + 30
    while sched.cache.reloads < 2:  # the read ahead, in the background
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    dest = (await sched.select_destinations({"resources": HALF}, 1))[0]
    assert dest["host"] == names[0] and sched.cache.reloads == 2


async def test_current_services_cost_no_query_per_request(
    db: Database, sched_conf: Settings, placement: Placement, hosts: Hosts
) -> None:
    """Without an announced change and within host_cache_seconds, a select reads nothing (the
    view's services are current); a change written behind the scheduler's back (no fanout) is seen
    once the view is older than host_cache_seconds: its candidates' services are read afresh."""
    names = await add_hosts(hosts, 4)
    sched = SchedulerManager(db, cached(sched_conf, max_candidates=4, host_cache_seconds=3600.0), placement)
    await sched.select_destinations({"resources": {MEMORY_MB: 1}}, 1)
    assert not sched.cache.services_stale
    for _ in range(5):
        await sched.select_destinations({"resources": {MEMORY_MB: 1}}, 1)
    assert (sched.cache.reloads, sched.cache.rechecks) == (1, 0)
    async with db.write() as conn:
        await conn.execute(sa.update(services).where(services.c.host.in_(names[:3])).values(disabled=True))
    sched.cache._loaded_at -= 7200.0  # the view is now older than host_cache_seconds
    assert sched.cache.services_stale
    dest = (await sched.select_destinations({"resources": {MEMORY_MB: 1}}, 1))[0]
    assert dest["host"] == names[3] and dest["alternates"] == []
    assert sched.cache.rechecks == 1


async def test_a_change_announced_during_a_full_read_keeps_the_view_stale(
    db: Database, sched_conf: Settings, placement: Placement, hosts: Hosts
) -> None:
    """A full read begun before the announcement may have missed the change: the view's services
    stay stale (rechecked) until a read begun after it is in."""
    await add_hosts(hosts, 2)
    sched = SchedulerManager(db, cached(sched_conf, max_candidates=2, host_cache_seconds=3600.0), placement)
    await sched.select_destinations({"resources": {MEMORY_MB: 1}}, 1)
    sched.cache.invalidate()
    loading = sched.cache._start_load()
    await asyncio.sleep(0)  # a read begins (it took the services' epoch) ...
    await sched.services_changed()  # ... then a change is announced
    await loading
    assert sched.cache.services_stale
    await sched.select_destinations({"resources": {MEMORY_MB: 1}}, 1)  # starts the read after it
    await sched.cache.reload()
    assert not sched.cache.services_stale


async def test_anti_affinity_over_many_hosts_with_a_bounded_subset(
    db: Database, sched_conf: Settings, placement: Placement, hosts: Hosts
) -> None:
    names = await add_hosts(hosts, 40)
    sched = SchedulerManager(db, cached(sched_conf, max_candidates=3), placement)
    group: dict[str, Any] = {"uuid": new_uuid(), "policy": "anti-affinity", "rules": {}, "hosts": list(names[:30])}
    for _ in range(10):  # the last ten free hosts, one each, though a subset of 3 rarely holds one
        dest = (await sched.select_destinations({"resources": {MEMORY_MB: 1}, "instance_group": group}, 1))[0]
        assert dest["host"] not in group["hosts"]
        group["hosts"].append(dest["host"])
    assert sorted(group["hosts"]) == names
    with pytest.raises(NoValidHost, match="ServerGroupAntiAffinityFilter removed 40"):
        await sched.select_destinations({"resources": {MEMORY_MB: 1}, "instance_group": group}, 1)


async def test_affinity_and_soft_affinity_see_the_group_host_outside_the_subset(
    db: Database, sched_conf: Settings, placement: Placement, hosts: Hosts
) -> None:
    names = await add_hosts(hosts, 30)
    # Soft affinity outweighs the RAM spread here (equal multipliers would tie them).
    sched = SchedulerManager(db, cached(sched_conf, max_candidates=2, soft_affinity_weight_multiplier=10.0), placement)
    target = names[17]
    # The group's host is the fullest, so without the group only chance would pick it.
    assert await placement.claim(new_uuid(), hosts.providers[target], {MEMORY_MB: 4096})
    for policy in ("affinity", "soft-affinity"):
        group: dict[str, Any] = {"uuid": new_uuid(), "policy": policy, "rules": {}, "hosts": [target]}
        for _ in range(4):
            spec = {"resources": {MEMORY_MB: 1}, "instance_group": group}
            assert (await sched.select_destinations(spec, 1))[0]["host"] == target


async def test_zone_forced_host_and_alternates_from_the_cache(
    db: Database, sched_conf: Settings, placement: Placement, hosts: Hosts
) -> None:
    await add_hosts(hosts, 20)
    for i in range(3):
        await hosts.add(f"z{i}", az="other")
    sched = SchedulerManager(db, cached(sched_conf, max_candidates=5), placement)
    for _ in range(5):
        dest = (await sched.select_destinations({"resources": {MEMORY_MB: 1}, "availability_zone": "other"}, 1))[0]
        assert dest["host"].startswith("z") and {a["host"][0] for a in dest["alternates"]} == {"z"}
    assert (await sched.select_destinations({"resources": {MEMORY_MB: 1}, "force_host": "h013"}, 1))[0]["host"] == "h013"
    dest = (await sched.select_destinations({"resources": {MEMORY_MB: 1}}, 1))[0]
    assert len(dest["alternates"]) == MAX_ALTERNATES
    # A host added after the cache was read is found before NoValidHost is answered.
    await hosts.add("late")
    assert (await sched.select_destinations({"resources": {MEMORY_MB: 1}, "force_host": "late"}, 1))[0]["host"] == "late"


async def test_below_the_threshold_every_request_reads_afresh(
    db: Database, sched_conf: Settings, placement: Placement, hosts: Hosts
) -> None:
    await add_hosts(hosts, 3)
    conf = sched_conf.replace(extra={**sched_conf.extra, "host_cache_min_hosts": 100})
    sched = SchedulerManager(db, conf, placement)
    for _ in range(3):
        await sched.select_destinations({"resources": {MEMORY_MB: 1}}, 1)
    assert sched.cache.reloads == 3 and not sched.cache.active


async def test_by_default_a_small_cloud_is_served_from_the_cache(
    db: Database, sched_conf: Settings, placement: Placement, hosts: Hosts
) -> None:
    """The default (host_cache_min_hosts 1): one read, then picks consume from memory and spread."""
    await add_hosts(hosts, 2)
    sched = SchedulerManager(db, sched_conf, placement)
    picked = [(await sched.select_destinations({"resources": HALF}, 1))[0]["host"] for _ in range(4)]
    assert sched.cache.reloads == 1 and sched.cache.active
    assert sorted(picked) == sorted(picked[:2] * 2) and picked[0] != picked[1]


async def test_an_old_cache_is_read_again_in_the_background(
    db: Database, sched_conf: Settings, placement: Placement, hosts: Hosts
) -> None:
    names = await add_hosts(hosts, 4)
    sched = SchedulerManager(db, cached(sched_conf, host_cache_seconds=0.0), placement)
    await sched.select_destinations({"resources": {MEMORY_MB: 1}}, 1)
    assert sched.cache.reloads == 1
    # Behind its back, every host but one fills up; the next answer may still come from the old view,
    # but a read has started, and once it is in, the full hosts are never answered again.
    for name in names[1:]:
        assert await placement.claim(new_uuid(), hosts.providers[name], {MEMORY_MB: 8192})
    await sched.select_destinations({"resources": {MEMORY_MB: 1}}, 1)
    async with asyncio.timeout(10):
        while sched.cache.reloads < 2:
            await asyncio.sleep(0.01)
    await sched.stop()  # no read left running
    assert sched.cache._loading is None
    dest = (await sched.select_destinations({"resources": {MEMORY_MB: 4096}}, 1))[0]
    assert dest["host"] == names[0]
