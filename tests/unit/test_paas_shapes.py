"""Pegasus's DTOs <-> the normalised shapes (paas/graph.py), and the Task JSON."""

from __future__ import annotations

import datetime as dt

import pytest

from cumulo.errors import Invalid
from cumulo.paas import shapes
from cumulo.paas import shapes_inventory as views

TIER_DTO = {
    "name": "web", "flavour": "m1.tiny", "image": "busybox", "minimumNumberInstances": "1",
    "maximumNumberInstances": 3, "initialNumberInstances": 1, "floatingip": "true", "keypair": "k",
    "securityGroup": "sg", "affinity": "None", "region": "RegionOne", "icono": "http://x/icon.png",
    "networkDto": {"networkName": "private", "subNetworkDto": {"subnetName": "s", "cidr": "10.0.0.0/24"}},
    "productReleaseDtos": {"productName": "httpd-web", "version": "1.0",
                           "attributes": {"key": "BACKENDS", "value": "IPALL(backend)", "type": "IPALL"}},
    "metadatas": [{"key": "dep", "value": "backend"}],
    "scalingPolicies": [{"name": "up", "metric": "cpu", "comparison": "gt", "threshold": 80, "period": 5,
                         "evaluationPeriods": 2, "adjustmentType": "change_in_capacity", "scalingAdjustment": 1,
                         "cooldown": 10}],
}


def test_tier_dto_to_the_normalised_tier_and_back() -> None:
    tier = shapes.parse_tier(TIER_DTO)
    # single-element unwrapped lists (Pegasus develop's JSON) are lists; numbers as text are numbers
    assert tier["min"] == 1 and tier["max"] == 3 and tier["floatingip"] is True
    assert tier["networks"] == [{"name": "private", "subnets": [{"name": "s", "cidr": "10.0.0.0/24"}]}]
    assert tier["products"] == [{"name": "httpd-web", "version": "1.0", "attributes": [
        {"key": "BACKENDS", "value": "IPALL(backend)", "type": "IPALL", "description": ""}]}]
    assert tier["policies"][0]["evaluation_periods"] == 2 and tier["policies"][0]["scaling_adjustment"] == 1.0
    out = shapes.render_tier(tier)
    assert out["floatingip"] == "true" and out["minimumNumberInstances"] == 1
    assert out["productReleaseDtos"] == [{"productName": "httpd-web", "version": "1.0", "attributes": [
        {"key": "BACKENDS", "value": "IPALL(backend)", "type": "IPALL"}]}]  # lists are always arrays
    assert out["networkDto"] == [{"networkName": "private", "subNetworkDto": [{"subnetName": "s", "cidr": "10.0.0.0/24"}]}]
    assert out["scalingPolicies"][0]["evaluationPeriods"] == 2 and "minAdjustmentStep" not in out["scalingPolicies"][0]
    assert shapes.parse_tier(out) == {**tier, "policies": [{**tier["policies"][0]}]}


def test_an_absent_attribute_type_is_plain() -> None:
    release = shapes.parse_product_release({"productName": "p", "version": "1",
                                            "attributes": [{"key": "K", "value": "v", "type": None}, {"key": "L"}]})
    assert [a["type"] for a in release["attributes"]] == ["Plain", "Plain"]


def test_product_release_dto() -> None:
    p = shapes.parse_product_release({"productName": "kv", "version": 1.0, "attributes": [{"key": "A", "value": 5}],
                                      "recipes": {"install": "echo hi", "deployArtifact": "tar x"}})
    assert p["version"] == "1.0" and p["attributes"][0] == {"key": "A", "value": "5", "type": "Plain", "description": ""}
    assert p["recipes"] == {"install": "echo hi", "deploy": "tar x"}
    out = shapes.render_product_release({**p, "project_id": "", "builtin": True})
    assert out["builtin"] is True and out["public"] is True and out["metadatas"] == []
    with pytest.raises(Invalid, match="unknown step 'backup'"):
        shapes.parse_product_release({"productName": "kv", "version": "1", "recipes": {"backup": "x"}})


@pytest.mark.parametrize(("dto", "word"), [
    ({"version": "1"}, "productName is required"),
    ({"productName": ["x"], "version": "1"}, "productName must be a string"),
    ({"productName": "p", "version": "1", "attributes": "x"}, "attributes must be a list"),
    ({"productName": "p", "version": "1", "attributes": [{"value": "v"}]}, "key is required"),
    ({"productName": "p", "version": "1", "attributes": [{"key": "K", "value": {"a": 1}}]}, "must be a string"),
    ({"productName": "p", "version": "1", "recipes": ["install"]}, "recipes must be a JSON object"),
    ({"productName": "p", "version": True}, "version must be a string"),
    ({"productName": "p", "version": "1", "attributes": [{"key": "K", "value": "v", "type": ""}]}, "type is empty"),
])
def test_bad_product_structure(dto: dict[str, object], word: str) -> None:
    with pytest.raises(Invalid, match=word):
        shapes.parse_product_release(dto)


@pytest.mark.parametrize(("field", "value", "word"), [
    ("minimumNumberInstances", 1.5, "whole number"), ("maximumNumberInstances", True, "whole number"),
    ("floatingip", "maybe", "true or false"), ("scalingPolicies", [{"name": "p", "colour": "red"}], "colour"),
    ("scalingPolicies", [{"name": "p", "threshold": "high"}], "threshold must be a number"),
])
def test_bad_tier_structure(field: str, value: object, word: str) -> None:
    with pytest.raises(Invalid, match=word):
        shapes.parse_tier({**TIER_DTO, field: value})


def test_task_json() -> None:
    start = dt.datetime(2026, 12, 6, 15, 0, 1, 250000)
    row = {"id": 7, "project_id": "p1", "kind": "deploy", "status": "ERROR", "description": "deploy shop1",
           "env_instance_name": "shop1", "tier": None, "start_time": start, "end_time": start,
           "result_href": shapes.instance_path("p1", "shop1"),
           "error": {"message": "install:web:1:kv: exit 3\nboom", "majorErrorCode": "install", "minorErrorCode": 3,
                     "step": "install:web:1:kv", "output": "boom"}}
    task = shapes.render_task(row, "http://h:1/paas")
    assert task == {
        "href": "http://h:1/paas/rest/vdc/p1/task/7", "startTime": "2026-12-06T15:00:01.250Z",
        "endTime": "2026-12-06T15:00:01.250Z", "status": "ERROR", "description": "deploy shop1", "vdc": "p1",
        "environment": "shop1",
        "result": {"href": "http://h:1/paas/rest/envInst/org/default/vdc/p1/environmentInstance/shop1", "name": "shop1",
                   "type": "EnvironmentInstance"},
        "error": {"message": "install:web:1:kv: exit 3\nboom", "majorErrorCode": "install", "minorErrorCode": "3",
                  "step": "install:web:1:kv", "output": "boom"},
    }
    running = shapes.render_task({**row, "status": "RUNNING", "end_time": None, "error": None, "result_href": None}, "b")
    assert set(running) == {"href", "startTime", "status", "description", "vdc", "environment"}


def test_inventory_views() -> None:
    node = {"id": "n1", "name": "shop1-web-2", "tier": "web", "replica": 2, "status": "INSTALLED", "server_id": "s",
            "ip": "10.0.0.5", "floating_ip": "172.24.9.3", "from_template": "img-1"}
    pi = {"id": "p1", "product": "httpd-web", "version": "1.0", "status": "INSTALLED", "attributes": {"BACKENDS": "a,b"},
          "outputs": {"PORT": "80"}}
    rec = {"step": "install", "attempt": 1, "skipped_reason": "template image img-1", "ended_at": None}
    out = views.render_tier_instance(node, "vdc", [pi], {"p1": [rec]})
    assert out["vm"] == {"id": "s", "hostname": "shop1-web-2", "fqn": "shop1-web-2", "ip": "10.0.0.5",
                         "floatingIp": "172.24.9.3", "domain": ""}
    prod = out["productInstanceDtos"][0]
    assert prod["name"] == "shop1-web-2_httpd-web_1.0" and prod["fromTemplate"] is True
    assert prod["steps"] == [{"step": "install", "attempt": 1, "status": "SKIPPED", "timedOut": False, "output": "",
                              "skippedReason": "template image img-1"}]
