"""The catalogue's checks (acceptance 6: each bad input named) and its store: visibility, the
snapshot engine.deploy takes, re-checks when a tier changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from _asgi_ctx import ctx_for, temp_database

from cumulo import errors
from cumulo.db import new_uuid
from cumulo.paas import catalogue as cat
from cumulo.paas import shapes
from cumulo.paas.models import paas_products

A = ctx_for("proj-a")
B = ctx_for("proj-b")


def prod(name: str, version: str = "1.0", **dto: Any) -> dict[str, Any]:
    return shapes.parse_product_release({"productName": name, "version": version, **dto})


def tier(name: str, *products: dict[str, Any], **dto: Any) -> dict[str, Any]:
    return shapes.parse_tier({"name": name, "flavour": "f", "image": "i", "productReleaseDtos": list(products), **dto})


def env(*tiers: dict[str, Any], name: str = "e") -> dict[str, Any]:
    return {"name": name, "description": "", "tiers": list(tiers)}


@pytest_asyncio.fixture
async def store(settings: Any) -> AsyncIterator[cat.Catalogue]:
    async with temp_database(settings) as db:
        yield cat.Catalogue(db)


@pytest.mark.parametrize(("attrs", "word"), [
    ([{"key": "9LIVES", "value": "v"}], "malformed attribute key '9LIVES'"),
    ([{"key": "A-B", "value": "v"}], "malformed attribute key"),
    ([{"key": "K" * 65, "value": "v"}], "malformed attribute key"),
    ([{"key": "K", "value": "a\x00"}], "NUL"),
    ([{"key": "K", "value": "é" * 2049}], "longer than 4096 bytes"),
    ([{"key": "K", "value": "v"}, {"key": "K", "value": "w"}], "given twice"),
    ([{"key": "K", "value": "IP(web", "type": "IP"}], r"IP\(<tier>\)"),
    ([{"key": "K", "value": "OUTPUT(db.pg)", "type": "OUTPUT"}], "OUTPUT"),
    ([{"key": "K", "value": "x", "type": "Chef"}], "unknown attribute type 'Chef'"),
])
def test_attribute_checks_name_the_problem(attrs: list[dict[str, Any]], word: str) -> None:
    with pytest.raises(errors.Invalid, match=word):
        cat.check_product(prod("p", attributes=attrs))


@pytest.mark.parametrize(("meta", "word"), [
    ({"key": "open_ports", "value": "80 65536"}, "65536"), ({"key": "open_ports_udp", "value": "90-80"}, "reversed"),
    ({"key": "open_ports", "value": "http"}, "'http' is not a port"), ({"key": "installator", "value": "puppet"}, "puppet"),
    ({"key": "timeout", "value": "7200"}, "1 to 3600"), ({"key": "timeout", "value": "²"}, "1 to 3600"),
    ({"key": "public", "value": "maybe"}, "yes or no"), ({"key": "artifact_dir", "value": "www/../../etc"}, "plain path"),
    ({"key": "artifact_dir", "value": "$HOME/x"}, "plain path"), ({"key": "dep1", "value": "no such thing!"}, "product"),
])
def test_product_metadata_checks(meta: dict[str, str], word: str) -> None:
    with pytest.raises(errors.Invalid, match=word):
        cat.check_product(prod("p", metadatas=[meta]))
    cat.check_product(prod("p", metadatas=[{"key": "open_ports", "value": "80 22, 8000-8080"},
                                           {"key": "artifact_dir", "value": "www/html"}, {"key": "timeout", "value": "60"}]))
    for ok in ("$PAAS_ROOT/site", "/srv/www", "./htdocs/app"):
        cat.check_product(prod("p", metadatas=[{"key": "artifact_dir", "value": ok}]))


@pytest.mark.parametrize(("dto", "word"), [
    ({"minimumNumberInstances": 3, "maximumNumberInstances": 1}, "minimumNumberInstances 3 is greater than maximumNumberInstances 1"),
    ({"minimumNumberInstances": 1, "maximumNumberInstances": 2, "initialNumberInstances": 3},
     "initialNumberInstances 3 is not between minimumNumberInstances 1 and maximumNumberInstances 2"),
    ({"maximumNumberInstances": 1000}, "outside 0 to 100"), ({"minimumNumberInstances": -1}, "outside"),
    ({"flavour": None}, "flavour is required"), ({"icono": None, "name": "bad name"}, "not a valid name"),
    ({"networkDto": [{"networkName": "n", "subNetworkDto": [{"cidr": "10.0.0.0/33"}]}]}, "not a CIDR"),
])
def test_tier_checks(dto: dict[str, Any], word: str) -> None:
    with pytest.raises(errors.Invalid, match=word):
        cat.check_tier(tier(dto.pop("name", "web"), **dto))


def test_tier_defaults() -> None:
    assert {k: cat.check_tier(tier("w"))[k] for k in ("min", "max", "initial")} == {"min": 1, "max": 1, "initial": 1}
    t = cat.check_tier(tier("w", initialNumberInstances=3))
    assert (t["min"], t["initial"], t["max"]) == (1, 3, 3)
    t = cat.check_tier(tier("w", initialNumberInstances=0))
    assert (t["min"], t["initial"], t["max"]) == (0, 0, 0)


POLICY = {"name": "up", "metric": "cpu", "comparison": "gt", "threshold": 80, "scalingAdjustment": 1}


@pytest.mark.parametrize(("change", "word"), [
    ({"metric": "disk"}, "cpu or memory"), ({"comparison": "eq"}, "gt, ge, lt, le"), ({"threshold": 120}, "0 to 100"),
    ({"threshold": None}, "threshold is required"), ({"period": 0}, "period"), ({"evaluationPeriods": 0}, "evaluationPeriods"),
    ({"adjustmentType": "double"}, "adjustmentType must be one of"), ({"minAdjustmentStep": 1}, "min_adjustment_step"),
    ({"scalingAdjustment": 1.5}, "whole number"), ({"statistic": "max"}, "avg"), ({"scalingAdjustment": 1e9}, "1000"),
])
def test_policy_checks_through_heats_rules(change: dict[str, Any], word: str) -> None:
    with pytest.raises(errors.Invalid, match=word):
        cat.check_tier(tier("web", minimumNumberInstances=1, maximumNumberInstances=3,
                            scalingPolicies=[{**POLICY, **change}]))


def test_policy_defaults() -> None:
    t = cat.check_tier(tier("web", scalingPolicies=[{**POLICY, "adjustmentType": "percent_change_in_capacity",
                                                     "scalingAdjustment": 50, "minAdjustmentStep": 1}]))
    p = t["policies"][0]
    assert (p["statistic"], p["period"], p["evaluation_periods"], p["cooldown"]) == ("avg", 60.0, 1, 60.0)
    assert p["min_adjustment_step"] == 1


async def test_environment_graph_checks(store: cat.Catalogue) -> None:
    await store.create_product(A, prod("kv"), public=False)
    await store.create_product(A, prod("web", attributes=[{"key": "B", "value": "IPALL(backend)", "type": "IPALL"}]),
                               public=False)
    kv = {"productName": "kv", "version": "1.0"}
    with pytest.raises(errors.Invalid, match="unknown product release nope-1.0 in tier web"):
        await store.create_environment(A, env(tier("web", {"productName": "nope", "version": "1.0"})))
    with pytest.raises(errors.Invalid, match="unknown product release kv-2.0 in tier web"):
        await store.create_environment(A, env(tier("web", {"productName": "kv", "version": "2.0"})))
    # a cycle made by the release's default attribute (web -> backend) and a tier reference back
    cyc = env(tier("front", {"productName": "web"}),
              tier("backend", {"productName": "kv", "attributes": [{"key": "W", "value": "IP(front)", "type": "IP"}]}))
    with pytest.raises(errors.Invalid, match="tier dependency cycle: backend -> front -> backend"):
        await store.create_environment(A, cyc)
    # the release's defaults need a tier named backend
    with pytest.raises(errors.Invalid, match="'backend', which is not in the environment"):
        await store.create_environment(A, env(tier("front", {"productName": "web"})))
    with pytest.raises(errors.Invalid, match="tier web is listed twice"):
        await store.create_environment(A, env(tier("web", kv), tier("web", kv)))
    await store.create_environment(A, env(tier("front", {"productName": "web"}), tier("backend", kv), name="shop"))
    with pytest.raises(errors.Conflict):
        await store.create_environment(A, env(tier("x", kv), name="shop"))
    # a tier change is checked against the whole environment
    with pytest.raises(errors.Invalid, match="cycle"):
        await store.put_tier(A, "shop", tier("backend", {**kv, "attributes": [{"key": "F", "value": "IP(front)", "type": "IP"}]}),
                             replace="backend")
    with pytest.raises(errors.Invalid, match="backend"):
        await store.delete_tier(A, "shop", "backend")


async def test_snapshot_merges_the_release_defaults(store: cat.Catalogue) -> None:
    await store.create_product(A, prod("kv", attributes=[{"key": "PORT", "value": "8080"}, {"key": "MODE", "value": "a"}],
                                       recipes={"install": "echo in"}), public=False)
    await store.create_environment(A, env(tier("db", {"productName": "kv", "attributes": [{"key": "MODE", "value": "b"},
                                                                                         {"key": "EXTRA", "value": "x"}]}),
                                          name="one"))
    snap = await store.snapshot(A, "one")
    p = snap["tiers"][0]["products"][0]
    assert {a["key"]: a["value"] for a in p["attributes"]} == {"PORT": "8080", "MODE": "b", "EXTRA": "x"}
    assert p["release"]["recipes"] == {"install": "echo in"} and p["version"] == "1.0"
    assert isinstance(p["release"]["created_at"], str)  # JSON-ready
    # a product deleted since: the deploy is refused, naming it
    async with store.db.write() as conn:
        await conn.execute(paas_products.delete())
    with pytest.raises(errors.Invalid, match="unknown product release kv-1.0 in tier db"):
        await store.snapshot(A, "one")
    with pytest.raises(errors.NotFound):
        await store.snapshot(B, "one")


async def test_product_visibility(store: cat.Catalogue) -> None:
    async with store.db.write() as conn:
        await conn.execute(paas_products.insert().values(id=new_uuid(), project_id="", name="httpd-web", version="1.0",
                                                         builtin=True, metadata=[], attributes=[], recipes={}))
    await store.create_product(A, prod("mine"), public=False)
    await store.create_product(B, prod("theirs"), public=False)
    names = [p["name"] for p in await store.list_products(A)]
    assert names == ["httpd-web", "mine"]
    with pytest.raises(errors.Conflict, match="built-in or public"):
        await store.create_product(A, prod("httpd-web"), public=False)
    with pytest.raises(errors.Forbidden, match="built in"):
        await store.delete_product(A, "httpd-web-1.0", may_publish=True)
    with pytest.raises(errors.NotFound):
        await store.get_product(A, "theirs-1.0")
    with pytest.raises(errors.NotFound):
        await store.delete_product(A, "theirs-1.0", may_publish=True)
    # two releases: the name alone is ambiguous
    await store.create_product(A, prod("mine", "2.0"), public=False)
    with pytest.raises(errors.NotFound):
        await store.get_product(A, "mine")
    with pytest.raises(errors.Invalid, match="several releases"):
        await store.create_environment(A, env(tier("t", {"productName": "mine"})))



def test_the_built_in_products_pass_the_checks_a_project_product_gets() -> None:
    from cumulo.paas.products.builtin import products

    for p in products():
        dto = shapes.render_product_release({**p, "project_id": ""})
        cat.check_product(shapes.parse_product_release(dto))


async def test_a_public_release_may_share_a_projects_name(store: cat.Catalogue) -> None:
    await store.create_product(A, prod("shared", description="A's"), public=False)
    admin = ctx_for("proj-admin", "admin")
    await store.create_product(admin, prod("shared", description="everyone's"), public=True)
    with pytest.raises(errors.Conflict, match="built-in or public"):
        await store.create_product(admin, prod("shared"), public=True)
    assert (await store.get_product(A, "shared-1.0"))["project_id"] == "proj-a"  # its own first
    assert (await store.get_product(B, "shared-1.0"))["project_id"] == ""
