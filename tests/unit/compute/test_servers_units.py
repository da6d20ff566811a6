"""Pure pieces of the servers API, without a cloud: schemas and their wording, the state table,
sort normalisation, the status filter, the view field table, and the list query on a bare DB."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import pytest

from cumulo.compute import states as st
from cumulo.compute.api import server_views as views
from cumulo.compute.api.microversion import v
from cumulo.compute.api.schemas import servers as schema
from cumulo.compute.api.schemas._base import b64decode_strict, parse_isotime, validate
from cumulo.compute.api.servers import _states_for
from cumulo.compute.models import instances
from cumulo.compute.service import transitions as tr
from cumulo.compute.service.boot import sanitize_hostname
from cumulo.compute.service.listing import ListQuery, install_sqlite_functions, list_instances, normalise_sort
from cumulo.context import RequestContext
from cumulo.db import Database, utcnow
from cumulo.errors import Conflict, Invalid


def test_create_schema_versions_are_derived_not_shared() -> None:
    v21 = schema.CREATE.for_version(v("2.1"))
    v219 = schema.CREATE.for_version(v("2.19"))
    v279 = schema.CREATE.for_version(v("2.79"))
    assert v21 is not None and v219 is not None and v279 is not None
    assert "description" not in v21["properties"]["server"]["properties"]
    assert "description" in v219["properties"]["server"]["properties"]
    assert "networks" in v279["properties"]["server"]["required"]
    assert "personality" not in v279["properties"]["server"]["properties"]
    assert "personality" in v21["properties"]["server"]["properties"]
    assert schema.CREATE.for_version(v("2.32")) is not schema.CREATE.for_version(v("2.33"))


@pytest.mark.parametrize(
    "server,message",
    [
        ({"name": "ok", "flavorRef": "1", "min_count": "0"}, "'0' is less than the minimum of 1"),
        ({"name": "ok\u0007", "flavorRef": "1"}, "An invalid 'name' value was provided. The name must be: printable characters."),
        ({"name": "ok", "flavorRef": ""}, "Invalid input for field/attribute flavorRef. Value: . '' should be non-empty"),
        ({"name": "ok", "flavorRef": "1", "config_drive": "maybe"}, "Invalid input for field/attribute config_drive"),
    ],
)
def test_validation_wording(server: dict[str, Any], message: str) -> None:
    with pytest.raises(Invalid) as exc:
        validate(schema.create, {"server": server})
    assert message in exc.value.message


def test_helpers() -> None:
    assert parse_isotime("2024-05-01T10:00:00+02:00") == dt.datetime(2024, 5, 1, 8, 0)
    assert parse_isotime("2024-05-01T10:00:00.5Z") == dt.datetime(2024, 5, 1, 10, 0, 0, 500000)
    with pytest.raises(ValueError):
        parse_isotime("yesterday")
    assert b64decode_strict("aGk=\n") == b"hi"
    assert b64decode_strict("%%%") is None
    assert sanitize_hostname("My Server_1.example!", "Server-x") == "my-server-1-example"
    assert sanitize_hostname("!!!", "Server-abc") == "Server-abc"


def test_status_filter_follows_nova() -> None:
    assert _states_for(["ACTIVE"]) == ([st.ACTIVE], None)  # a default matched: no task filter
    vm, tasks = _states_for(["REBOOT"])
    assert vm == [st.ACTIVE] and tasks == sorted([st.REBOOTING, st.REBOOT_PENDING, st.REBOOT_STARTED])
    vm, tasks = _states_for(["resize"])
    assert vm == [st.ACTIVE, st.STOPPED] and st.RESIZE_PREP in (tasks or [])
    assert _states_for(["NOPE"]) == ([], [])


def test_sort_normalisation() -> None:
    assert normalise_sort([], []) == [("created_at", "desc"), ("id", "desc")]
    assert normalise_sort(["display_name"], ["asc"]) == [("display_name", "asc"), ("created_at", "asc"), ("id", "asc")]
    assert normalise_sort(["uuid", "display_name"], []) == [("uuid", "desc")]
    with pytest.raises(Invalid, match="Unknown sort direction"):
        normalise_sort(["display_name"], ["up"])
    with pytest.raises(Invalid, match="exceeds sort key size"):
        normalise_sort(["display_name"], ["asc", "desc"])


def _inst(**kw: Any) -> dict[str, Any]:
    base = {"uuid": str(uuid.uuid4()), "locked": False, "host": "h1", "launched_at": utcnow(),
            "vm_state": st.ACTIVE, "task_state": None}
    return base | kw


def test_transition_checks_in_nova_order() -> None:
    member = RequestContext(user_id="u", project_id="p", roles=frozenset({"member", "reader"}))
    admin = RequestContext(user_id="a", project_id="q", roles=frozenset({"admin", "member", "reader"}))
    stop = tr.TRANSITIONS["stop"]
    tr.check(member, _inst(), stop)
    locked = _inst(locked=True, vm_state=st.STOPPED)
    with pytest.raises(Conflict, match="is locked"):
        tr.check(member, locked, stop)
    with pytest.raises(Conflict, match="in vm_state stopped"):
        tr.check(admin, locked, stop)  # admins pass the lock, not the state check
    with pytest.raises(Conflict, match="is not ready"):
        tr.check(member, _inst(host=None), stop)
    with pytest.raises(Conflict, match="while it is in launched_at None"):
        tr.check(member, _inst(vm_state=st.ERROR, launched_at=None, host=None), tr.TRANSITIONS["rebuild"])
    hard = tr.TRANSITIONS["reboot_hard"]
    tr.check(member, _inst(task_state=st.REBOOTING), hard)  # a hard reboot may interrupt a soft one
    with pytest.raises(Conflict, match="in task_state rebooting"):
        tr.check(member, _inst(task_state=st.REBOOTING), tr.TRANSITIONS["reboot_soft"])
    tr.check(member, _inst(locked=True), tr.TRANSITIONS["createImage"])  # snapshots ignore the lock


def _row(**kw: Any) -> dict[str, Any]:
    now = utcnow()
    return {
        "id": 7, "uuid": "u-1", "project_id": "p", "user_id": "u", "display_name": "n", "display_description": None,
        "hostname": "n", "image_ref": "img", "flavor": {"flavorid": "1", "name": "m1.tiny", "memory_mb": 512,
        "vcpus": 1, "root_gb": 1, "ephemeral_gb": 0, "swap": 0, "extra_specs": {"a": 1}}, "key_name": None,
        "user_data": None, "metadata": {}, "system_metadata": {}, "tags": [], "vm_state": st.ACTIVE, "task_state": None,
        "power_state": 1, "locked": False, "locked_by": None, "locked_reason": None, "host": "h", "node": "h",
        "availability_zone": "nova", "reservation_id": "r-1", "launch_index": 0, "access_ip_v4": None,
        "access_ip_v6": None, "config_drive": "", "progress": 0, "security_groups": ["default"],
        "addresses": {"private": [{"addr": "10.0.0.3", "version": 4, "OS-EXT-IPS:type": "fixed",
                                   "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01"}]},
        "launched_at": now, "terminated_at": None, "created_at": now, "updated_at": now, "deleted_at": None,
        "deleted": False,
    } | kw


class _Req:
    """Just enough of a request for ViewContext."""


def _vc(view: str, version: str, admin: bool = False) -> views.ViewContext:
    return views.ViewContext(
        request=_Req(),  # type: ignore[arg-type]
        version=v(version), is_admin=admin, view=view, root="http://h/compute", api_root="http://h/compute/v2.1",
        default_az="nova",
    )


def test_view_field_table() -> None:
    show_21 = views.server(_row(), _vc(views.SHOW, "2.1"))
    assert show_21["flavor"] == {"id": "1", "links": [{"rel": "bookmark", "href": "http://h/compute/flavors/1"}]}
    assert "locked" not in show_21 and "OS-EXT-SRV-ATTR:host" not in show_21
    assert show_21["addresses"]["private"][0]["OS-EXT-IPS-MAC:mac_addr"] == "fa:16:3e:00:00:01"
    show_279 = views.server(_row(), _vc(views.SHOW, "2.79", admin=True))
    assert show_279["flavor"]["extra_specs"] == {"a": "1"} and show_279["flavor"]["original_name"] == "m1.tiny"
    assert show_279["OS-EXT-SRV-ATTR:instance_name"] == "instance-00000007"
    assert show_279["server_groups"] == [] and show_279["host_status"] == "UNKNOWN"
    assert "server_groups" not in views.server(_row(), _vc(views.DETAIL, "2.79"))
    update_21 = views.server(_row(), _vc(views.UPDATE, "2.1", admin=True))
    assert "OS-EXT-SRV-ATTR:host" not in update_21 and "key_name" not in update_21
    assert set(update_21["addresses"]["private"][0]) == {"addr", "version"}
    rebuild_254 = views.server(_row(), _vc(views.REBUILD, "2.54"))
    assert "key_name" in rebuild_254 and "user_data" not in rebuild_254
    assert "user_data" in views.server(_row(), _vc(views.REBUILD, "2.57"))
    building = views.server(_row(vm_state=st.BUILDING, task_state=st.SCHEDULING), _vc(views.SHOW, "2.1"))
    assert building["addresses"] == {} and building["status"] == "BUILD" and building["progress"] == 0
    stopped = views.server(_row(vm_state=st.STOPPED), _vc(views.SHOW, "2.1"))
    assert "progress" not in stopped and "fault" not in stopped
    assert views.server(_row(deleted=True), _vc(views.SHOW, "2.1"))["status"] == "DELETED"
    assert views.host_id("p", None) == "" and len(views.host_id("p", "h")) == 56


async def test_list_query_on_bare_db(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/x.db")
    from sqlalchemy import event

    event.listen(db.engine.sync_engine, "connect", install_sqlite_functions)
    await db.create_all()
    base = dt.datetime(2024, 1, 1)
    rows = []
    for i in range(6):
        rows.append(
            {
                "uuid": f"00000000-0000-0000-0000-00000000000{i}", "project_id": "p" if i < 5 else "q", "user_id": "u",
                "display_name": f"vm-{i % 3}", "image_ref": "img", "flavor": {"flavorid": "1" if i % 2 else "2"},
                "vcpus": 1, "memory_mb": 64, "root_gb": 1, "vm_state": st.ACTIVE, "reservation_id": "r",
                "tags": ["even"] if i % 2 == 0 else ["odd", "x"], "metadata": {}, "system_metadata": {},
                "request_spec": {}, "security_groups": [], "ephemeral_gb": 0, "created_at": base + dt.timedelta(minutes=i),
                "updated_at": base + dt.timedelta(minutes=i),
                "addresses": {"net": [{"addr": f"10.0.0.{i}", "version": 4}]} if i == 3 else {},
            }
        )
    async with db.write() as conn:
        await conn.execute(instances.insert(), rows)
    async with db.read() as conn:
        names = [r["uuid"][-1] for r in await list_instances(conn, ListQuery(project_id="p"))]
        assert names == ["4", "3", "2", "1", "0"]
        q = ListQuery(project_id="p", sort=normalise_sort(["display_name"], ["asc"]))
        assert [r["uuid"][-1] for r in await list_instances(conn, q)] == ["0", "3", "1", "4", "2"]
        q.limit, q.marker = 2, "00000000-0000-0000-0000-000000000003"
        assert [r["uuid"][-1] for r in await list_instances(conn, q)] == ["1", "4"]
        assert [r["uuid"][-1] for r in await list_instances(conn, ListQuery(project_id="p", flavor="1"))] == ["3", "1"]
        assert [r["uuid"][-1] for r in await list_instances(conn, ListQuery(project_id="p", tags=["odd", "x"]))] == ["3", "1"]
        assert [r["uuid"][-1] for r in await list_instances(conn, ListQuery(project_id="p", not_tags_any=["odd"]))] == ["4", "2", "0"]
        assert [r["uuid"][-1] for r in await list_instances(conn, ListQuery(project_id="p", ip=r"^10\.0\.0\.3$"))] == ["3"]
        assert [r["uuid"][-1] for r in await list_instances(conn, ListQuery(project_id="p", regex={"name": "-2$"}))] == ["2"]
        assert len(await list_instances(conn, ListQuery(project_id=None))) == 6
        with pytest.raises(Invalid, match="marker"):
            await list_instances(conn, ListQuery(project_id="q", marker="00000000-0000-0000-0000-000000000001"))
    await db.dispose()
