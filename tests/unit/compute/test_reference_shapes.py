"""Self-tests of the reference-shape oracle (tests/reference): version boundaries, admin views and
the checker's reports. No cloud needed; the live comparisons are in test_microversions.py and the
identity/image shape tests."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/, for `reference`
from reference import ShapeError, check, glance, keystone, nova, shape_errors  # noqa: E402

VERSIONS = ["2.1", "2.47", "2.79"]
UUID1 = "0e44cc9c-e052-415d-afbf-469b0d384170"
UUID2 = "70a599e0-31e7-49b7-b260-868f441e862b"


def props(resource: str, version: str, admin: bool = False, key: str | None = None) -> set[str]:
    s = nova.schema(resource, version, admin)
    if key:
        s = s["properties"][key]
    return set(s["properties"])


def server_body(version: str = "2.1", **overrides: Any) -> dict[str, Any]:
    """A non-admin GET /servers/{id} body as the reference describes it, for `version`."""
    base = "http://cumulo.test/compute"
    server: dict[str, Any] = {
        "accessIPv4": "",
        "accessIPv6": "",
        "addresses": {},
        "config_drive": "",
        "created": "2024-01-01T00:00:00Z",
        "flavor": {"id": "1", "links": [{"rel": "bookmark", "href": f"{base}/flavors/1"}]},
        "hostId": "abc",
        "id": UUID1,
        "image": {"id": UUID2, "links": [{"rel": "bookmark", "href": f"{base}/images/{UUID2}"}]},
        "key_name": None,
        "links": [
            {"rel": "self", "href": f"{base}/v2.1/servers/{UUID1}"},
            {"rel": "bookmark", "href": f"{base}/servers/{UUID1}"},
        ],
        "metadata": {"a": "b"},
        "name": "vm",
        "OS-DCF:diskConfig": "MANUAL",
        "OS-EXT-AZ:availability_zone": "nova",
        "OS-EXT-STS:power_state": 1,
        "OS-EXT-STS:task_state": None,
        "OS-EXT-STS:vm_state": "active",
        "os-extended-volumes:volumes_attached": [],
        "OS-SRV-USG:launched_at": "2024-01-01T00:00:01.000000",
        "OS-SRV-USG:terminated_at": None,
        "progress": 0,
        "status": "ACTIVE",
        "tenant_id": "p",
        "updated": "2024-01-01T00:00:02Z",
        "user_id": "u",
    }
    v = tuple(int(x) for x in version.split("."))
    if v >= (2, 9):
        server["locked"] = False
    if v >= (2, 19):
        server["description"] = None
    if v >= (2, 26):
        server["tags"] = []
    if v >= (2, 47):
        server["flavor"] = {
            "vcpus": 1, "ram": 512, "disk": 1, "ephemeral": 0, "swap": 0,
            "original_name": "m1.tiny", "extra_specs": {},
        }
    if v >= (2, 63):
        server["trusted_image_certificates"] = None
    if v >= (2, 71):
        server["server_groups"] = []
    if v >= (2, 73):
        server["locked_reason"] = None
    server.update(overrides)
    return {"server": server}


@pytest.mark.parametrize("version", ["2.1", "2.2", "2.3", "2.9", "2.19", "2.26", "2.47", "2.63", "2.71", "2.73", "2.79"])
def test_hand_built_server_matches(version: str) -> None:
    check(server_body(version), nova.schema("server", version))


@pytest.mark.parametrize("resource", sorted(nova.RESOURCES))
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("admin", [False, True])
def test_every_nova_schema_is_valid_2020_12(resource: str, version: str, admin: bool) -> None:
    s = nova.schema(resource, version, admin)
    jsonschema.Draft202012Validator.check_schema(s)
    assert s["type"] == "object"


def test_out_of_range_versions_are_refused() -> None:
    for bad in ("2.0", "2.80", "3.0", "1.9"):
        with pytest.raises(ValueError):
            nova.schema("server", bad)
    with pytest.raises(KeyError):
        nova.schema("no-such-thing", "2.1")


def test_checker_names_extra_missing_and_wrong_fields() -> None:
    body = server_body("2.1", extra_field=1, name=5)
    del body["server"]["hostId"]
    errors = shape_errors(body, nova.schema("server", "2.1"))
    text = "\n".join(errors)
    assert "extra_field" in text
    assert "'hostId' is a required property" in text
    assert "/server/name" in text
    with pytest.raises(ShapeError):
        check(body, nova.schema("server", "2.1"))


def test_version_boundaries_of_the_server_view() -> None:
    assert {"id", "links"} == props("server", "2.46", key="server") & {"id", "links"}
    flavor_21 = nova.schema("server", "2.46")["properties"]["server"]["properties"]["flavor"]
    flavor_247 = nova.schema("server", "2.47")["properties"]["server"]["properties"]["flavor"]
    assert set(flavor_21["required"]) == {"id", "links"}
    assert set(flavor_247["required"]) == {"vcpus", "ram", "disk", "ephemeral", "swap", "original_name", "extra_specs"}
    for field, first in (
        ("locked", "2.9"),
        ("description", "2.19"),
        ("tags", "2.26"),
        ("trusted_image_certificates", "2.63"),
        ("server_groups", "2.71"),
        ("locked_reason", "2.73"),
    ):
        before = f"2.{int(first.split('.')[1]) - 1}"
        assert field not in props("server", before, key="server"), (field, before)
        assert field in props("server", first, key="server"), (field, first)
    # server_groups is in show but not in /servers/detail [servers.inc "List Servers Detailed"].
    assert "server_groups" not in props("server_detail_entry", "2.79")
    # delete_on_termination from 2.3.
    vol = lambda v: nova.schema("server", v)["properties"]["server"]["properties"][  # noqa: E731
        "os-extended-volumes:volumes_attached"
    ]["items"]["required"]
    assert vol("2.2") == ["id"]
    assert vol("2.3") == vol("2.79") == ["id", "delete_on_termination"]


def test_admin_only_server_fields() -> None:
    admin_only = {
        "OS-EXT-SRV-ATTR:host",
        "OS-EXT-SRV-ATTR:hypervisor_hostname",
        "OS-EXT-SRV-ATTR:instance_name",
    }
    assert admin_only <= props("server", "2.1", admin=True, key="server")
    assert not admin_only & props("server", "2.1", key="server")
    at_23 = props("server", "2.3", admin=True, key="server") - props("server", "2.1", admin=True, key="server")
    assert {f"OS-EXT-SRV-ATTR:{k}" for k in ("hostname", "kernel_id", "launch_index", "ramdisk_id", "reservation_id", "root_device_name", "user_data")} <= at_23
    assert "host_status" in props("server", "2.16", admin=True, key="server")
    assert "host_status" not in props("server", "2.79", key="server")
    admin_body = server_body("2.1")
    with pytest.raises(ShapeError, match="required"):
        check(admin_body, nova.schema("server", "2.1", admin=True))


def test_state_dependent_fields() -> None:
    s = nova.schema("server", "2.79")
    with pytest.raises(ShapeError, match="fault"):  # a fault on an ACTIVE server
        check(server_body("2.79", fault={"code": 500, "created": "2024-01-01T00:00:00Z", "message": "x"}), s)
    with pytest.raises(ShapeError, match="progress"):  # ACTIVE shows progress
        body = server_body("2.79")
        del body["server"]["progress"]
        check(body, s)
    error = server_body("2.79", status="ERROR")
    error["server"].update({"OS-EXT-STS:vm_state": "error"})
    del error["server"]["progress"]
    with pytest.raises(ShapeError, match="fault"):  # ERROR carries a fault
        check(error, s)
    error["server"]["fault"] = {"code": 500, "created": "2024-01-01T00:00:00Z", "message": "No valid host"}
    check(error, s)
    shutoff = server_body("2.79", status="SHUTOFF", **{"OS-EXT-STS:vm_state": "stopped", "OS-EXT-STS:power_state": 4})
    with pytest.raises(ShapeError, match="progress"):  # SHUTOFF does not show progress
        check(shutoff, s)


def test_resource_version_boundaries() -> None:
    absolute = lambda v: set(nova.schema("limits", v)["properties"]["limits"]["properties"]["absolute"]["required"])  # noqa: E731
    assert "maxSecurityGroups" in absolute("2.35") and "maxSecurityGroups" not in absolute("2.36")
    assert "maxImageMeta" in absolute("2.38") and "maxImageMeta" not in absolute("2.39")
    assert "maxPersonality" in absolute("2.56") and "maxPersonality" not in absolute("2.57")
    quota = lambda v: props("quota_set", v, key="quota_set")  # noqa: E731
    assert "floating_ips" in quota("2.35") and "floating_ips" not in quota("2.36")
    assert "injected_files" in quota("2.56") and "injected_files" not in quota("2.57")
    assert "id" not in props("quota_set_update", "2.1", key="quota_set")
    svc = lambda v: nova.schema("service_list_entry", v)["properties"]  # noqa: E731
    assert svc("2.52")["id"]["type"] == "integer" and svc("2.53")["id"]["type"] == "string"
    assert "forced_down" not in svc("2.10") and "forced_down" in svc("2.11")
    hyp = lambda v: nova.schema("hypervisor", v, True)["properties"]["hypervisor"]["properties"]  # noqa: E731
    assert hyp("2.27")["cpu_info"]["type"] == "string" and hyp("2.28")["cpu_info"]["type"] == "object"
    assert hyp("2.52")["id"]["type"] == "integer" and hyp("2.53")["id"]["type"] == "string"
    assert "hypervisors_links" not in props("hypervisors", "2.32") and "hypervisors_links" in props("hypervisors", "2.33")
    kp = lambda v: nova.schema("keypair", v)["properties"]["keypair"]["required"]  # noqa: E731
    assert "type" not in kp("2.1") and "type" in kp("2.2")
    assert "keypairs_links" not in props("keypairs", "2.34") and "keypairs_links" in props("keypairs", "2.35")
    fl = lambda v: nova.schema("flavor", v)["properties"]["flavor"]["properties"]  # noqa: E731
    assert "description" not in fl("2.54") and "description" in fl("2.55")
    assert "extra_specs" not in fl("2.60") and "extra_specs" in fl("2.61")
    assert jsonschema.Draft202012Validator(fl("2.74")["swap"]).is_valid("")
    assert not jsonschema.Draft202012Validator(fl("2.75")["swap"]).is_valid("")


def test_instance_action_events_by_version_and_role() -> None:
    action = lambda v, a: nova.schema("instance_action", v, a)["properties"]["instanceAction"]  # noqa: E731
    assert "events" not in action("2.50", False)["properties"]
    assert "events" in action("2.50", True)["required"]
    assert "events" in action("2.51", False)["required"]
    event = lambda v, a: action(v, a)["properties"]["events"]["items"]["properties"]  # noqa: E731
    assert "traceback" not in event("2.51", False) and "traceback" in event("2.51", True)
    assert "hostId" in event("2.62", False) and "host" not in event("2.62", False)
    assert "host" in event("2.62", True) and "hostId" not in event("2.61", True)
    assert "updated_at" in action("2.58", False)["required"] and "updated_at" not in action("2.57", False)["properties"]


def test_fault_schema() -> None:
    check({"computeFault": {"code": 406, "message": "Version 2.80 is not supported"}}, nova.fault("computeFault", 406))
    check({"badRequest": {"code": 400, "message": "x"}}, nova.schema("fault", "2.1"))
    assert shape_errors({"error": {"code": 400, "message": "x"}}, nova.schema("fault", "2.1"))
    assert shape_errors({"badRequest": {"code": 400, "message": "x", "details": "y"}}, nova.schema("fault", "2.1"))


def test_schemas_are_fresh_copies() -> None:
    a = nova.schema("server", "2.1")
    a["properties"]["server"]["properties"].clear()
    assert nova.schema("server", "2.1")["properties"]["server"]["properties"]
    k = keystone.schema("project")
    k.clear()
    assert keystone.schema("project")


def test_keystone_token_shapes() -> None:
    user = {"id": "u", "name": "demo", "domain": {"id": "default", "name": "Default"}, "password_expires_at": None}
    unscoped = {
        "token": {
            "methods": ["password"],
            "user": user,
            "audit_ids": ["abc"],
            "expires_at": "2030-01-01T00:00:00.000000Z",
            "issued_at": "2029-12-31T23:00:00.000000Z",
        }
    }
    check(unscoped, keystone.schema("token_unscoped"))
    scoped = copy.deepcopy(unscoped)
    scoped["token"].update(
        {
            "project": {"id": "p", "name": "demo", "domain": {"id": "default", "name": "Default"}},
            "is_domain": False,
            "roles": [{"id": "r", "name": "member"}],
            "catalog": [
                {
                    "type": "compute",
                    "name": "nova",
                    "id": "s",
                    "endpoints": [
                        {"id": "e", "interface": "public", "region": "RegionOne", "region_id": "RegionOne", "url": "http://h/compute/v2.1"}
                    ],
                }
            ],
        }
    )
    check(scoped, keystone.schema("token_project"))
    assert shape_errors(scoped, keystone.schema("token_unscoped"))  # a scoped token is not unscoped


def test_glance_image_shape_and_extra_properties() -> None:
    image = {
        "id": UUID2, "name": "cirros", "status": "active", "visibility": "private", "protected": False,
        "os_hidden": False, "checksum": "64d7c1cd2b6f60c92c14662941cb7913", "os_hash_algo": "sha512",
        "os_hash_value": "0" * 128, "owner": "p", "size": 3, "virtual_size": None,
        "container_format": "bare", "disk_format": "raw", "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z", "tags": [], "min_ram": 0, "min_disk": 0,
        "self": f"/v2/images/{UUID2}", "file": f"/v2/images/{UUID2}/file", "schema": "/v2/schemas/image",
    }
    check(image, glance.schema("image"))
    with_prop = {**image, "hw_machine_type": "q35"}
    assert shape_errors(with_prop, glance.schema("image"))
    check(with_prop, glance.schema("image", extra_properties=["hw_machine_type"]))
    check({"images": [image], "first": "/v2/images", "schema": "/v2/schemas/images"}, glance.schema("images"))
