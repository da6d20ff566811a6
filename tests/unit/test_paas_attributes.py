"""paas/attributes.py on a migrated database: the release's defaults overridden by the tier's values,
IP / IPALL / MEMBERS from the instance's nodes (members only, replica order), OUTPUT from the first
member's product outputs, and the resolved values stored on the product instance."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cumulo.db import Database
from cumulo.paas import attributes
from cumulo.paas.engine.base import StepFailed
from cumulo.paas.models import paas_env_instances, paas_product_instances, paas_tier_instances

INST, OTHER = "i-1", "i-2"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    d = Database(f"sqlite+aiosqlite:///{tmp_path / 'paas.sqlite'}")
    await d.create_all()
    async with d.write() as conn:
        for iid in (INST, OTHER):
            await conn.execute(sa.insert(paas_env_instances).values(
                id=iid, project_id="p", user_id="u", name=f"shop{iid}", environment_name="shop", environment={},
                status="DEPLOYING"))
        nodes = [  # (instance, tier, replica, ip, status)
            (INST, "backend", 1, "10.0.0.11", "DEPLOYED"), (INST, "backend", 3, "10.0.0.13", "DEPLOYED"),
            (INST, "backend", 2, "10.0.0.12", "DEPLOYED"), (INST, "backend", 4, None, "DEPLOYING"),
            (INST, "backend", 5, "10.0.0.15", "UNDEPLOYED"), (INST, "backend", 6, "10.0.0.16", "ERROR"),
            (INST, "web", 2, "10.0.0.22", "DEPLOYED"), (INST, "web", 1, None, "UNDEPLOYED"),
            (OTHER, "backend", 1, "10.9.9.9", "DEPLOYED"),
        ]
        for iid, tier, r, ip, status in nodes:
            await conn.execute(sa.insert(paas_tier_instances).values(
                id=f"{iid}-{tier}-{r}", env_instance_id=iid, tier=tier, replica=r, name=f"shop-{tier}-{r}", ip=ip,
                status=status))
        await conn.execute(sa.insert(paas_product_instances).values(
            id="pi-db", tier_instance_id=f"{INST}-backend-1", env_instance_id=INST, product="db", version="1",
            status="INSTALLED", outputs={"PASSWORD": "s3 'cr3t'", "PORT": "5432"}))
        await conn.execute(sa.insert(paas_product_instances).values(
            id="pi-web", tier_instance_id=f"{INST}-web-2", env_instance_id=INST, product="app", version="1",
            status="INSTALLING"))
    yield d
    await d.dispose()


def product(*tier_attrs: dict[str, Any], defaults: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"name": "app", "version": "1", "attributes": list(tier_attrs),
            "release": {"attributes": defaults or [], "metadata": [], "recipes": {}}}


def test_tier_values_override_release_defaults() -> None:
    p = product({"key": "B", "value": "tier-b"}, {"key": "C", "value": "IP(web)", "type": "IP"},
                defaults=[{"key": "A", "value": "def-a"}, {"key": "B", "value": "def-b", "type": "Plain"},
                          {"key": "D", "value": "IPALL(backend)", "type": "IPALL"}])
    assert attributes.merged(p) == [
        {"key": "A", "value": "def-a", "type": "Plain"}, {"key": "B", "value": "tier-b", "type": "Plain"},
        {"key": "D", "value": "IPALL(backend)", "type": "IPALL"}, {"key": "C", "value": "IP(web)", "type": "IP"}]


async def test_refs_resolve_against_this_instances_members(db: Database) -> None:
    p = product({"key": "FIRST", "value": "IP(backend)", "type": "IP"},
                {"key": "ALL", "value": "IPALL(backend)", "type": "IPALL"},
                {"key": "WEB", "value": "MEMBERS(web)", "type": "MEMBERS"},
                {"key": "PW", "value": "OUTPUT(backend.db.PASSWORD)", "type": "OUTPUT"},
                {"key": "NOTE", "value": "a b $c"},
                defaults=[{"key": "NOTE", "value": "default"}, {"key": "NONE", "value": None},
                          {"key": "GONE", "value": "MEMBERS(cache)", "type": "MEMBERS"}])
    got = await attributes.resolve(db, INST, p)
    assert got == {"FIRST": "10.0.0.11", "ALL": "10.0.0.11,10.0.0.12,10.0.0.13", "WEB": "10.0.0.22",
                   "PW": "s3 'cr3t'", "NOTE": "a b $c", "NONE": "", "GONE": ""}


async def test_ip_is_the_lowest_live_replica_once_replica_one_left(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(sa.update(paas_tier_instances).where(paas_tier_instances.c.id == f"{INST}-backend-1")
                           .values(status="UNDEPLOYED", ip=None))
    got = await attributes.resolve(db, INST, product({"key": "FIRST", "value": "IP(backend)", "type": "IP"},
                                                     {"key": "ALL", "value": "IPALL(backend)", "type": "IPALL"}))
    assert got == {"FIRST": "10.0.0.12", "ALL": "10.0.0.12,10.0.0.13"}


async def test_an_output_nobody_wrote_fails_the_step_naming_it(db: Database) -> None:
    with pytest.raises(StepFailed, match=r"OUTPUT\(backend.db.MISSING\): product db on shop-backend-1 wrote no MISSING"):
        await attributes.resolve(db, INST, product({"key": "X", "value": "OUTPUT(backend.db.MISSING)", "type": "OUTPUT"}))
    with pytest.raises(StepFailed, match="tier cache has no node"):
        await attributes.resolve(db, INST, product({"key": "X", "value": "OUTPUT(cache.db.K)", "type": "OUTPUT"}))


async def test_the_resolved_values_are_stored_on_the_product_instance(db: Database) -> None:
    await attributes.store(db, "pi-web", {"BACKENDS": "10.0.0.11"})
    async with db.read() as conn:
        row = (await conn.execute(sa.select(paas_product_instances).where(paas_product_instances.c.id == "pi-web"))
               ).mappings().one()
    assert row["attributes"] == {"BACKENDS": "10.0.0.11"} and row["updated_at"] is not None
