"""Deferred delete and backups on real runc containers, through the real `openstack` CLI.

One `cumulo up` with real containers and `reclaim_instance_interval` set in its settings file:
`openstack server delete` powers the container off and leaves the server SOFT_DELETED,
`openstack server restore` starts it again, and left alone the agent reclaims it after the
interval with nothing of it left on the host. `openstack server backup create --type daily
--rotate 2` keeps the two newest backups of the server and deletes the oldest. And on the
scaled-out cloud (tests/system/cluster.py): the reclaim runs in the server's dev host's agent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from _runc_util import (
    inside,
    launch_runc,
    leftovers,
    runc_state,
    server,
    wait_for,
    wait_gone,
    wait_image_active,
    wait_status,
)

if TYPE_CHECKING:
    from conftest import CumuloCloud

# Long enough for a restore through the CLI (a few seconds on a busy machine) to beat the reclaim;
# the reclaim pass runs every INTERVAL / 2.
INTERVAL = 20
cumulo_configs = ("embedded", "scaled")
# The scaled variant keeps the soft delete, restore and reclaim on a dev host.
EMBEDDED_ONLY = pytest.mark.configs("embedded", reason="a force delete is a plain delete cast to the host, "
                                    "as every scaled module does: left out of the scaled variant for time")


class World:
    def __init__(self, cloud: CumuloCloud) -> None:
        self.cloud = cloud
        self.servers: list[str] = []
        self.images: list[str] = []

    def osc(self, *args: str, **kw: Any) -> Any:
        return self.cloud.osc(*args, **kw)

    def boot(self, name: str) -> str:
        made = self.osc("server", "create", "--image", "busybox", "--flavor", "m1.nano", name)
        self.servers.append(made["id"])
        wait_status(self.cloud, made["id"], "ACTIVE", timeout=120)
        return str(made["id"])


@pytest.fixture(scope="module")
def world(cumulo_launcher: Callable[..., CumuloCloud], tmp_path_factory: pytest.TempPathFactory,
          cumulo_config: str) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("runc-deferred")
    cloud = launch_runc(cumulo_launcher, tmp, settings={"reclaim_instance_interval": INTERVAL}, config=cumulo_config)
    w = World(cloud)
    yield w
    # Whatever a failed test left: force-delete servers (a plain delete would only soft-delete).
    for uuid in w.servers:
        if server(cloud, uuid) is not None:
            cloud.osc_run("server", "delete", "--force", uuid)
    for image_id in w.images:
        cloud.osc_run("image", "delete", image_id)
    for uuid in w.servers:
        try:
            wait_gone(cloud, uuid, timeout=60)
        except AssertionError:
            pass
    cloud.close()


def _running(cloud: CumuloCloud, uuid: str) -> bool:
    state = runc_state(cloud, uuid)
    return state is not None and state["status"] == "running"


def test_delete_restore_and_reclaim(world: World) -> None:
    w = world
    uuid = w.boot("deferred")
    inside(w.cloud, uuid, "echo before > /root/kept.txt")
    w.osc("server", "delete", uuid)
    s = wait_status(w.cloud, uuid, "SOFT_DELETED", timeout=60)
    assert s["OS-EXT-STS:vm_state"] == "soft-delete" and s["OS-EXT-STS:power_state"] == 4
    assert not _running(w.cloud, uuid)
    listed = w.osc("server", "list", "--status", "SOFT_DELETED")
    assert [x["ID"] for x in listed] == [uuid]

    w.osc("server", "restore", uuid)
    s = wait_status(w.cloud, uuid, "ACTIVE", timeout=60)
    assert s["OS-EXT-STS:power_state"] == 1 and _running(w.cloud, uuid)
    assert inside(w.cloud, uuid, "cat /root/kept.txt").strip() == "before"  # the same root, not a new one

    # Left alone this time: the agent reclaims it after the interval, and nothing of it remains.
    w.osc("server", "delete", uuid)
    wait_status(w.cloud, uuid, "SOFT_DELETED", timeout=60)
    wait_gone(w.cloud, uuid, timeout=INTERVAL * 2 + 60)
    wait_for(lambda: not leftovers(w.cloud, uuid), timeout=30, what=f"nothing of {uuid} on the host")
    out = w.cloud.osc_run("server", "restore", uuid)
    assert out.returncode != 0 and "No Server found" in out.stderr


@EMBEDDED_ONLY
def test_force_delete_skips_the_wait(world: World) -> None:
    w = world
    uuid = w.boot("forced")
    w.osc("server", "delete", uuid)
    wait_status(w.cloud, uuid, "SOFT_DELETED", timeout=60)
    w.osc("server", "delete", "--force", uuid)
    wait_gone(w.cloud, uuid, timeout=60)
    wait_for(lambda: not leftovers(w.cloud, uuid), timeout=30, what=f"nothing of {uuid} on the host")


def _backups(cloud: CumuloCloud, uuid: str) -> list[str]:
    with cloud.client("cumulo") as c:
        r = c.get("/image/v2/images", params={"image_type": "backup", "backup_type": "daily", "instance_uuid": uuid,
                                              "sort_key": "created_at", "sort_dir": "asc"})
    r.raise_for_status()
    return [str(i["name"]) for i in r.json()["images"]]


@pytest.mark.configs("embedded", reason="a backup is a snapshot uploaded to the API process, as "
                     "runc_cli[scaled] and cli_session[scaled] take: left out of the scaled variant for time")
def test_backup_rotation(world: World) -> None:
    w = world
    uuid = w.boot("backed-up")
    ids: list[str] = []
    for n in (1, 2, 3):
        inside(w.cloud, uuid, f"echo {n} > /root/generation.txt")
        image = w.osc("server", "backup", "create", "--type", "daily", "--rotate", "2", "--name", f"bk-{n}", uuid)
        w.images.append(image["id"])
        ids.append(image["id"])
        found = wait_image_active(w.cloud, image["id"], timeout=120)
        assert found["image_type"] == "backup" and found["backup_type"] == "daily"
        assert found["instance_uuid"] == uuid and found["container_format"] == "docker"
        wait_status(w.cloud, uuid, "ACTIVE", timeout=60)
    wait_for(lambda: _backups(w.cloud, uuid) == ["bk-2", "bk-3"], timeout=60, what="the oldest backup rotated out")
    with w.cloud.client("cumulo") as c:
        assert c.get(f"/image/v2/images/{ids[0]}").status_code == 404
    # The newest backup is the server as it was: boot from it and read what was written.
    child = w.osc("server", "create", "--image", ids[2], "--flavor", "m1.nano", "from-backup")
    w.servers.append(child["id"])
    wait_status(w.cloud, child["id"], "ACTIVE", timeout=120)
    assert inside(w.cloud, child["id"], "cat /root/generation.txt").strip() == "3"
