"""Admin server actions and migration records on real runc containers, through the real `openstack` CLI.

`openstack server set --state error|active` (os-resetState), a server in ERROR listed by status,
rebuilt back to a running container and deleted with nothing left on the host; `server resize`
recorded as a migration (`server migration list`) that follows it to confirmed; `server migrate`
refused with the scheduler's reason (one runc host; on the scaled-out cloud it moves the container to
another dev host, confirmed); `server show --diagnostics` in the 2.48 shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
from _runc_util import launch_runc, leftovers, runc_state, server, wait_for, wait_gone, wait_status

if TYPE_CHECKING:
    from conftest import CumuloCloud


# and on the scaled-out cloud (tests/system/cluster.py): 3 runc dev hosts, where migrate moves
cumulo_configs = ("embedded", "scaled")


@pytest.fixture(scope="module")
def cloud(cumulo_launcher: Callable[..., CumuloCloud], tmp_path_factory: pytest.TempPathFactory,
          cumulo_config: str) -> Iterator[CumuloCloud]:
    c = launch_runc(cumulo_launcher, tmp_path_factory.mktemp("runc-admin-actions"), config=cumulo_config)
    made: list[str] = []
    c.made = made  # type: ignore[attr-defined]
    yield c
    for uuid in made:
        if server(c, uuid) is not None:
            c.osc_run("server", "delete", uuid)
    for uuid in made:
        try:
            wait_gone(c, uuid, timeout=60)
        except AssertionError:
            pass
    c.close()


def _boot(cloud: CumuloCloud, name: str) -> str:
    made = cloud.osc("server", "create", "--image", "busybox", "--flavor", "m1.nano", name)
    cloud.made.append(made["id"])  # type: ignore[attr-defined]
    wait_status(cloud, made["id"], "ACTIVE", timeout=120)
    return str(made["id"])


def _running(cloud: CumuloCloud, uuid: str) -> bool:
    state = runc_state(cloud, uuid)
    return state is not None and state["status"] == "running"


def test_reset_state_rebuild_and_delete_from_error(cloud: CumuloCloud) -> None:
    uuid = _boot(cloud, "reset-me")
    cloud.osc("server", "set", "--auto-approve", "--state", "error", uuid)
    shown = cloud.osc("server", "show", uuid)
    assert shown["status"] == "ERROR" and shown["OS-EXT-STS:task_state"] is None
    assert [s["ID"] for s in cloud.osc("server", "list", "--status", "ERROR")] == [uuid]
    assert _running(cloud, uuid)  # a reset changes the record, not the container
    cloud.osc("server", "set", "--auto-approve", "--state", "active", uuid)
    assert cloud.osc("server", "show", uuid)["status"] == "ACTIVE"
    actions = [a["Action"] for a in cloud.osc("server", "event", "list", uuid)]
    assert actions[:2] == ["resetState", "resetState"]

    # From ERROR, a rebuild brings a fresh container up, and a delete leaves nothing behind.
    cloud.osc("server", "set", "--auto-approve", "--state", "error", uuid)
    cloud.osc("server", "rebuild", "--image", "busybox", uuid)
    wait_status(cloud, uuid, "ACTIVE", timeout=120)
    assert _running(cloud, uuid)
    cloud.osc("server", "set", "--auto-approve", "--state", "error", uuid)
    cloud.osc("server", "delete", uuid)
    wait_gone(cloud, uuid, timeout=60)
    wait_for(lambda: not leftovers(cloud, uuid), timeout=30, what=f"nothing of {uuid} on the host")


def test_resize_is_a_migration_record_and_migrate_is_refused(cloud: CumuloCloud) -> None:
    uuid = _boot(cloud, "resize-me")
    cloud.osc("server", "resize", "--flavor", "m1.micro", uuid)
    wait_status(cloud, uuid, "VERIFY_RESIZE", timeout=120)
    listed = cloud.osc("server", "migration", "list", "--server", uuid, microversion="2.59")
    assert len(listed) == 1 and listed[0]["Status"] == "finished" and listed[0]["Type"] == "resize"
    cloud.osc("server", "resize", "confirm", uuid)
    wait_status(cloud, uuid, "ACTIVE", timeout=120)
    listed = cloud.osc("server", "migration", "list", "--server", uuid, microversion="2.59")
    assert [m["Status"] for m in listed] == ["confirmed"]
    host = cloud.osc("server", "show", uuid)["OS-EXT-SRV-ATTR:host"]
    assert listed[0]["Source Compute"] == listed[0]["Dest Compute"] == host

    if cloud.config_name == "embedded":  # one runc host: nowhere to go
        out = cloud.osc_run("server", "migrate", uuid)
        assert out.returncode != 0 and "No valid host was found" in out.stderr, out.stderr
    else:  # another dev host takes it: its root disk sent to the destination's transfer endpoint
        cloud.osc("server", "migrate", uuid, json=False)
        wait_status(cloud, uuid, "VERIFY_RESIZE", timeout=180)
        moved = cloud.osc("server", "migration", "list", "--server", uuid, microversion="2.59")
        assert [(m["Type"], m["Source Compute"], m["Status"]) for m in moved][0] == ("migration", host, "finished")
        assert cloud.osc("server", "show", uuid)["OS-EXT-SRV-ATTR:host"] == moved[0]["Dest Compute"] != host
        cloud.osc("server", "migrate", "confirm", uuid, json=False)
        wait_status(cloud, uuid, "ACTIVE", timeout=120)
    shown = cloud.osc("server", "show", uuid)
    assert shown["status"] == "ACTIVE" and _running(cloud, uuid)

    out = cloud.osc_run("server", "migration", "list", cloud="cumulo-demo")  # the demo user is no admin
    assert out.returncode != 0 and "403" in out.stderr, out.stderr


def test_diagnostics_248(cloud: CumuloCloud) -> None:
    uuid = _boot(cloud, "diag")
    diag = cloud.osc("server", "show", "--diagnostics", uuid, microversion="2.48")
    assert diag["driver"] == "libvirt" and diag["hypervisor"] == "runc" and diag["state"] == "running"
    assert diag["num_cpus"] == 1 and diag["memory_details"]["maximum"] == 64
