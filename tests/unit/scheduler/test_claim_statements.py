"""The claim's hot statements are built once per shape and are cacheable (issue 14, session 11).

A statement without a cache key ("no key" in SQLAlchemy's stats) is compiled on every execution;
building node_and_pool's took 1.6 ms of Python per claim. These tests make either regression fail.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from cumulo.compute.conductor import manager
from cumulo.placement import claim_sql, pools

_PG = postgresql.asyncpg.dialect()  # type: ignore[no-untyped-call]


def _cacheable(stmt: sa.Executable) -> bool:
    return stmt._generate_cache_key() is not None  # type: ignore[attr-defined]


def test_node_and_pool_statement_is_built_once_per_shape_and_cacheable() -> None:
    for excluding in (False, True):
        stmt = pools._node_and_pool_statement(excluding)
        assert stmt is pools._node_and_pool_statement(excluding)
        assert _cacheable(stmt)
    assert "nap_exclude" in str(pools._node_and_pool_statement(True))
    assert "nap_exclude" not in str(pools._node_and_pool_statement(False))


def test_bump_and_allocate_is_cacheable_with_its_values_bound() -> None:
    stmt = claim_sql.bump_and_allocate(2, ("VCPU", "MEMORY_MB"))
    assert stmt is claim_sql.bump_and_allocate(2, ("VCPU", "MEMORY_MB"))
    assert _cacheable(stmt)
    params = claim_sql.bump_and_allocate_params([(7, 3), (9, 4)], 7, "c-1", {"VCPU": 1, "MEMORY_MB": 64})
    assert {params["ba_id_0"], params["ba_gen_0"], params["ba_id_1"], params["ba_gen_1"]} == {7, 3, 9, 4}
    assert (params["ba_used_0"], params["ba_used_1"]) == (1, 64)
    compiled = stmt.compile(dialect=_PG)
    assert set(params) <= set(compiled.params)


def test_the_placement_statement_is_built_once_per_shape_and_cacheable() -> None:
    for with_event in (False, True):
        stmt = manager._placing(with_event)
        assert stmt is manager._placing(with_event)
        assert _cacheable(stmt)
    compiled = manager._placing(True).compile(dialect=_PG)
    assert "recorded_event" in str(compiled)
    assert "recorded_event" not in str(manager._placing(False).compile(dialect=_PG))


def test_the_claim_with_the_conductors_placement_is_one_cacheable_statement_built_once() -> None:
    rider = manager._placing_rider("u" * 36, {"host": "h", "node": "n"}, "nova", "req-1", dt.datetime.now())
    stmt = claim_sql.claim_statement(2, ("VCPU", "MEMORY_MB"), rider)
    again = manager._placing_rider("v" * 36, {"host": "g", "node": "m"}, "nova", "req-2", dt.datetime.now())
    assert stmt is claim_sql.claim_statement(2, ("VCPU", "MEMORY_MB"), again)
    assert _cacheable(stmt)
    compiled = str(stmt.compile(dialect=_PG))
    for cte in ("bumped", "placed", "recorded_event", "inserted"):
        assert f"{cte} AS" in compiled
    params = {**claim_sql.bump_and_allocate_params([(1, 2), (3, 4)], 1, "u" * 36, {"VCPU": 1, "MEMORY_MB": 8}),
              **rider.params}
    assert set(params) <= set(stmt.compile(dialect=_PG).params)


def test_the_conductors_instance_read_is_built_once_and_cacheable() -> None:
    stmt = manager._build_row_statement()
    assert stmt is manager._build_row_statement() and _cacheable(stmt)
    assert "br_uuid" in stmt.compile(dialect=_PG).params
