"""Server group filters and weighers (per host, not per node), the request spec's instance_group,
and the late check the conductor runs when it records a host (on a real DB)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from test_filters_weighers import host_state

from cumulo.compute import server_groups as sg
from cumulo.compute.models import instances
from cumulo.compute.service import server_groups as group_service
from cumulo.compute.service.quotas import QuotaEngine
from cumulo.conf import Settings
from cumulo.context import RequestContext, expand_roles
from cumulo.db import Database, new_uuid, utcnow
from cumulo.scheduler import filters as filters_mod
from cumulo.scheduler import groups
from cumulo.scheduler import weighers as weighers_mod
from cumulo.scheduler.filters.affinity import ServerGroupAffinityFilter, ServerGroupAntiAffinityFilter
from cumulo.scheduler.hoststate import RequestSpec
from cumulo.scheduler.weighers import weigh_hosts
from cumulo.scheduler.weighers.affinity import (
    ServerGroupSoftAffinityWeigher,
    ServerGroupSoftAntiAffinityWeigher,
)


def spec(policy: str | None, hosts: list[str], **rules: int) -> RequestSpec:
    group = None if policy is None else {"uuid": "g", "policy": policy, "rules": rules, "hosts": hosts}
    return RequestSpec.from_dict({"resources": {"VCPU": 1}, "instance_group": group})


def test_request_spec_carries_the_group() -> None:
    s = spec("anti-affinity", ["a", "a"], max_server_per_host=2)
    assert s.instance_group == {"uuid": "g", "policy": "anti-affinity", "rules": {"max_server_per_host": 2}, "hosts": ["a", "a"]}
    assert RequestSpec.from_dict({}).instance_group is None


def test_filters_are_in_the_defaults(sched_conf: Settings) -> None:
    names = [f.name for f in filters_mod.configured_filters(sched_conf)]
    assert names[-2:] == ["ServerGroupAntiAffinityFilter", "ServerGroupAffinityFilter"]
    weighers = [w.name for w in weighers_mod.configured_weighers(sched_conf)]
    assert {"ServerGroupSoftAffinityWeigher", "ServerGroupSoftAntiAffinityWeigher"} <= set(weighers)


def test_anti_affinity_filter_counts_members_per_host(sched_conf: Settings) -> None:
    f = ServerGroupAntiAffinityFilter(sched_conf)
    a, b = host_state("a"), host_state("b")
    assert f.host_passes(a, spec("anti-affinity", []))
    assert not f.host_passes(a, spec("anti-affinity", ["a"]))
    assert f.host_passes(b, spec("anti-affinity", ["a"]))
    # max_server_per_host: a host passes while it holds fewer members than the rule.
    assert f.host_passes(a, spec("anti-affinity", ["a"], max_server_per_host=2))
    assert not f.host_passes(a, spec("anti-affinity", ["a", "a"], max_server_per_host=2))
    # Other policies and no group: the filter does nothing.
    for other in (None, "affinity", "soft-anti-affinity"):
        assert f.host_passes(a, spec(other, ["a"]))


def test_two_nodes_of_one_host_are_one_host(sched_conf: Settings) -> None:
    """The local host's runc and QEMU nodes: a member on either node excludes both."""
    runc = host_state("local", node="local-runc")
    qemu = host_state("local", node="local-qemu")
    anti = ServerGroupAntiAffinityFilter(sched_conf)
    assert not anti.host_passes(qemu, spec("anti-affinity", ["local"]))
    assert not anti.host_passes(runc, spec("anti-affinity", ["local"]))
    aff = ServerGroupAffinityFilter(sched_conf)
    assert aff.host_passes(qemu, spec("affinity", ["local"]))
    assert not aff.host_passes(host_state("other"), spec("affinity", ["local"]))


def test_affinity_filter(sched_conf: Settings) -> None:
    f = ServerGroupAffinityFilter(sched_conf)
    a, b = host_state("a"), host_state("b")
    assert f.host_passes(a, spec("affinity", [])) and f.host_passes(b, spec("affinity", []))
    assert f.host_passes(a, spec("affinity", ["a"])) and not f.host_passes(b, spec("affinity", ["a"]))
    assert f.host_passes(b, spec("soft-affinity", ["a"]))


@pytest.mark.parametrize(
    ("policy", "best"),
    [("soft-affinity", "busy"), ("soft-anti-affinity", "idle"), (None, "busy"), ("anti-affinity", "busy")],
)
def test_soft_weighers(sched_conf: Settings, policy: str | None, best: str) -> None:
    # Equal free RAM: without a soft policy the tie goes to the first name ("busy"), so "idle"
    # can only win through the soft-anti-affinity weigher. (As in Nova, the normalised weights
    # add up: a host with more free RAM can outweigh one member; raise the multiplier to stop it.)
    busy, idle = host_state("busy"), host_state("idle")
    ranked = [h.host for _, h in weigh_hosts(weighers_mod.configured_weighers(sched_conf), [idle, busy], spec(policy, ["busy", "busy"]))]
    assert ranked[0] == best
    strong = sched_conf.replace(extra={"soft_anti_affinity_weight_multiplier": 3.0})
    roomy = host_state("busy", ram=65536)
    ranked = [h.host for _, h in weigh_hosts(weighers_mod.configured_weighers(strong), [idle, roomy], spec("soft-anti-affinity", ["busy"]))]
    assert ranked[0] == "idle"
    assert ServerGroupSoftAffinityWeigher(sched_conf).weigh(busy, spec("soft-affinity", ["busy", "busy"])) == 2.0
    assert ServerGroupSoftAntiAffinityWeigher(sched_conf).weigh(busy, spec("soft-anti-affinity", ["busy"])) == -1.0


def test_violation_wording() -> None:
    assert groups.violation("anti-affinity", {}, ["a"], "a") == "Anti-affinity instance group policy was violated."
    assert groups.violation("affinity", {}, ["a"], "b") == "Affinity instance group policy was violated."
    assert groups.violation("anti-affinity", {"max_server_per_host": 2}, ["a"], "a") is None
    assert groups.violation("soft-anti-affinity", {}, ["a"], "a") is None


# --- the late check, on a real DB ---------------------------------------------------------------

def _ctx() -> RequestContext:
    return RequestContext(user_id="u", project_id="p", roles=expand_roles(["member"]))


async def _instance(db: Database, host: str | None = None, deleted: bool = False) -> str:
    uuid = new_uuid()
    async with db.write() as conn:
        await conn.execute(
            sa.insert(instances).values(
                uuid=uuid, project_id="p", user_id="u", display_name="vm", image_ref="", flavor={}, vcpus=1,
                memory_mb=64, root_gb=1, ephemeral_gb=0, vm_state="building", power_state=0, host=host, node=host,
                reservation_id="r-1", request_spec={}, metadata={}, system_metadata={}, tags=[], security_groups=[],
                addresses={}, created_at=utcnow(), updated_at=utcnow(), deleted=deleted,
            )
        )
    return uuid


async def _group(db: Database, sched_conf: Settings, policy: str, members: list[str], **rules: int) -> dict[str, Any]:
    group = await group_service.create_group(db, QuotaEngine(sched_conf), _ctx(), "g", policy, rules)
    async with db.write() as conn:
        await sg.add_members(conn, group, members, "u", -1)
    return group


async def _place(db: Database, uuid: str, host: str) -> None:
    """What the conductor does: the late check, then the host, in one write transaction."""
    async with db.write() as conn:
        await sg.check_late(conn, uuid, host)
        await conn.execute(sa.update(instances).where(instances.c.uuid == uuid).values(host=host))


async def test_late_check_refuses_a_second_member_on_a_host(db: Database, sched_conf: Settings) -> None:
    placed, new, gone = await _instance(db, "a"), await _instance(db), await _instance(db, "b", deleted=True)
    await _group(db, sched_conf, "anti-affinity", [placed, new, gone])
    with pytest.raises(sg.GroupPolicyViolated) as err:
        await _place(db, new, "a")
    assert err.value.host == "a" and err.value.message == "Anti-affinity instance group policy was violated."
    await _place(db, new, "b")  # a deleted member no longer counts
    info = await sg.scheduler_group(db, new)
    assert info is not None and info["hosts"] == ["a"] and info["policy"] == "anti-affinity"


async def test_late_check_serialises_concurrent_placements(db: Database, sched_conf: Settings) -> None:
    """Both builds chose host "a" from the same stale view: exactly one placement wins."""
    one, two = await _instance(db), await _instance(db)
    await _group(db, sched_conf, "anti-affinity", [one, two])
    results = await asyncio.gather(_place(db, one, "a"), _place(db, two, "a"), return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["GroupPolicyViolated", "NoneType"]


async def test_late_check_affinity_and_soft_policies(db: Database, sched_conf: Settings) -> None:
    first, second, third = await _instance(db, "a"), await _instance(db), await _instance(db)
    await _group(db, sched_conf, "affinity", [first, second])
    with pytest.raises(sg.GroupPolicyViolated):
        await _place(db, second, "b")
    await _place(db, second, "a")
    soft_member = await _instance(db, "a")
    await _group(db, sched_conf, "soft-anti-affinity", [soft_member, third])
    await _place(db, third, "a")  # soft policies never refuse


async def test_groups_and_members(db: Database, sched_conf: Settings) -> None:
    live, deleted = await _instance(db), await _instance(db, deleted=True)
    group = await _group(db, sched_conf, "affinity", [live, deleted])
    async with db.read() as conn:
        shown = await sg.get_group(conn, _ctx(), group["uuid"])
        assert shown["members"] == [live]
        assert await sg.groups_of_server(conn, live) == [group["uuid"]]
    async with db.write() as conn:
        assert await sg.forget_deleted_members(conn) == 1
    await group_service.delete_group(db, _ctx(), group["uuid"])
    async with db.read() as conn:
        assert await sg.groups_of_server(conn, live) == []
        assert (await conn.execute(sa.select(instances.c.deleted).where(instances.c.uuid == live))).scalar_one() is False
