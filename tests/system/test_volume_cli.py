"""Volumes through a real `cumulo up` (issue 11, wave 2): the Cinder API at /volume, its catalog
entries, and the volume worker on file-backed storage, driven by the real `openstack` CLI.

One runc cloud for the module (no external link). Volumes are polled through the API (osc --wait
polls every 5 s); the files are checked on the host under this cloud's state dir.

On the scaled-out cloud (tests/system/cluster.py) the lifecycle, a volume from an image and a clone
run again: the API process casts to the volume host's worker over RabbitMQ, the worker downloads
the image from the API, and the files are checked in the volume host's state dir.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from _runc_util import wait_for, write_config

if TYPE_CHECKING:
    from conftest import CumuloCloud

pytestmark = pytest.mark.system

GIB = 1 << 30
MARK = b"cumulo-volume-" + secrets.token_hex(8).encode()


# and on the scaled-out cloud (tests/system/cluster.py): the API process casts to the volume host's
# worker over RabbitMQ, which downloads images from the API and keeps the files in its state dir
cumulo_configs = ("embedded", "scaled")
# The scaled variant covers the cross-process essence (the worker's lifecycle, a volume from an
# image downloaded by the volume host, a clone) within the run's time budget; these are the volume
# API process's own checks, the same code on both configurations.
API_ONLY = "the volume API's own checks (quotas, isolation, 4xx, catalog): the same code in both configurations"


@pytest.fixture(scope="module")
def cloud(cumulo_launcher: Callable[..., CumuloCloud], tmp_path_factory: pytest.TempPathFactory,
          cumulo_config: str) -> Iterator[CumuloCloud]:
    config = write_config(tmp_path_factory.mktemp("volumes"), tiny_vm_image="off")
    c = cumulo_launcher(driver="runc", args=["--config", str(config), "--no-external"], config=cumulo_config)
    yield c
    c.close()


def host_dir(cloud: CumuloCloud) -> Path:
    """The state dir whose block store keeps the volumes: the cloud's, or a cluster's volume host's."""
    return cloud.host_dir(cloud.volume_host)


def status_of(cloud: CumuloCloud, kind: str, item_id: str, who: str = "cumulo") -> dict[str, Any] | None:
    """The volume/snapshot/backup as the API shows it now (None once it is gone)."""
    path = {"volume": "volumes", "snapshot": "snapshots", "backup": "backups"}[kind]
    with cloud.client(who) as c:
        resp = c.get(f"/volume/v3/{path}/{item_id}", headers={"OpenStack-API-Version": "volume 3.67"})
    if resp.status_code == 404:
        return None
    assert resp.status_code == 200, resp.text
    return dict(resp.json()[kind])


def wait_status(cloud: CumuloCloud, kind: str, item_id: str, status: str, who: str = "cumulo") -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        row = status_of(cloud, kind, item_id, who)
        assert row is not None, f"{kind} {item_id} vanished"
        assert row["status"] not in ("error", "error_extending", "error_restoring", "error_deleting"), row
        return row if row["status"] == status else None

    return dict(wait_for(ready, timeout=60, what=f"{kind} {item_id} {status}"))


def wait_gone(cloud: CumuloCloud, kind: str, item_id: str) -> None:
    wait_for(lambda: status_of(cloud, kind, item_id) is None, timeout=60, what=f"{kind} {item_id} gone")


def read_at(path: Path, offset: int, size: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, size, offset)
    finally:
        os.close(fd)


@pytest.mark.configs("embedded", reason=API_ONLY)
def test_catalog_lists_cinder(cloud: CumuloCloud) -> None:
    catalog = {e["Type"]: e for e in cloud.osc("catalog", "list")}
    assert {"block-storage", "volumev3"} <= set(catalog)
    token = cloud.osc("token", "issue")
    for kind in ("block-storage", "volumev3"):
        assert catalog[kind]["Name"] == "cinder"
        urls = {ep["url"] for ep in catalog[kind]["Endpoints"]}
        assert urls == {f"{cloud.base_url}/volume/v3/{token['project_id']}"}, urls


def test_volume_lifecycle(cloud: CumuloCloud) -> None:
    osc, store = cloud.osc, host_dir(cloud) / "volumes"
    v1 = osc("volume", "create", "--size", "1", "v1")
    assert v1["size"] == 1
    wait_status(cloud, "volume", v1["id"], "available")
    f1 = store / f"{v1['id']}.raw"
    assert f1.stat().st_size == GIB
    assert f1.stat().st_blocks * 512 < 64 << 20  # sparse
    assert v1["id"] in {v["ID"] for v in osc("volume", "list")}
    shown = osc("volume", "show", "v1")
    assert (shown["status"], shown["size"], shown["name"]) == ("available", 1, "v1")

    # data written on the host side (as an attached server would), to follow through copies
    fd = os.open(f1, os.O_WRONLY)
    try:
        os.pwrite(fd, MARK, 0)
        os.pwrite(fd, MARK, GIB - 4096)
    finally:
        os.close(fd)

    osc("volume", "set", "--size", "2", "v1")  # extend
    row = wait_status(cloud, "volume", v1["id"], "available")
    assert row["size"] == 2
    assert f1.stat().st_size == 2 * GIB
    assert read_at(f1, GIB - 4096, len(MARK)) == MARK  # the data stays

    snap = osc("volume", "snapshot", "create", "--volume", "v1", "s1")
    wait_status(cloud, "snapshot", snap["id"], "available")
    assert (store / "snapshots" / f"{snap['id']}.raw").exists()
    v2 = osc("volume", "create", "--snapshot", snap["id"], "v2")
    wait_status(cloud, "volume", v2["id"], "available")
    assert read_at(store / f"{v2['id']}.raw", 0, len(MARK)) == MARK

    bak = osc("volume", "backup", "create", "--name", "b1", "v1")
    wait_status(cloud, "backup", bak["id"], "available")
    assert wait_status(cloud, "volume", v1["id"], "available")["size"] == 2
    bfile = host_dir(cloud) / "backups" / f"{bak['id']}.qcow2"
    assert bfile.exists()
    restored = osc("volume", "backup", "restore", bak["id"], "v3")
    v3 = restored["volume_id"]
    wait_status(cloud, "volume", v3, "available")
    wait_status(cloud, "backup", bak["id"], "available")
    f3 = store / f"{v3}.raw"
    assert read_at(f3, 0, len(MARK)) == MARK and read_at(f3, GIB - 4096, len(MARK)) == MARK

    # the demo project sees none of it
    demo_ids = {v["ID"] for v in cloud.osc("volume", "list", cloud="cumulo-demo")}
    assert not demo_ids & {v1["id"], v2["id"], v3}
    hidden = cloud.osc_run("volume", "show", v1["id"], cloud="cumulo-demo")
    assert hidden.returncode != 0 and "No Volume found" in hidden.stderr + hidden.stdout, hidden.stderr

    # deleting a volume with a snapshot is refused; snapshot first, then the volumes and the backup
    refused = cloud.osc_run("volume", "delete", "v1")
    assert refused.returncode != 0 and "snapshot" in refused.stderr.lower(), refused.stderr
    osc("volume", "snapshot", "delete", snap["id"])
    wait_gone(cloud, "snapshot", snap["id"])
    osc("volume", "backup", "delete", bak["id"])
    wait_gone(cloud, "backup", bak["id"])
    osc("volume", "delete", v1["id"], v2["id"], v3)
    for vid in (v1["id"], v2["id"], v3):
        wait_gone(cloud, "volume", vid)
    assert not f1.exists() and not f3.exists() and not bfile.exists()
    left = [p.name for d in (store, store / "snapshots", host_dir(cloud) / "backups") if d.exists()
            for p in d.iterdir() if not p.name.startswith(".") and p.name != "snapshots"]
    assert left == [], left


@pytest.mark.configs("embedded", reason=API_ONLY)
def test_over_quota_is_a_clear_error(cloud: CumuloCloud) -> None:
    done = cloud.osc_run("volume", "create", "--size", "1001", "huge", cloud="cumulo-demo")
    assert done.returncode != 0
    text = done.stderr + done.stdout
    assert "413" in text or "quota" in text.lower() or "exceeded" in text.lower(), text
    assert "huge" not in {v["Name"] for v in cloud.osc("volume", "list", cloud="cumulo-demo")}


def test_volume_from_an_image(cloud: CumuloCloud, tmp_path: Path) -> None:
    """A raw image's bytes land at the start of the volume (converted by the worker from the
    image store's own file); the volume uploads to a new qcow2 image."""
    raw = tmp_path / "disk.raw"
    raw.write_bytes(MARK + bytes(1 << 20))
    img = cloud.osc("image", "create", "--disk-format", "raw", "--container-format", "bare", "--file", str(raw),
                    f"volimg-{MARK[-6:].decode()}")
    try:
        vol = cloud.osc("volume", "create", "--image", img["id"], "--size", "1", "from-image")
        row = wait_status(cloud, "volume", vol["id"], "available")
        assert row["bootable"] == "true"
        path = host_dir(cloud) / "volumes" / f"{vol['id']}.raw"
        assert path.stat().st_size == GIB and read_at(path, 0, len(MARK)) == MARK
        # and back: upload the volume to a new (qcow2) image, shared and protected (Cinder 3.1)
        up = cloud.osc("--os-volume-api-version", "3.1", "image", "create", "--volume", vol["id"], "--disk-format", "qcow2",
                       "--shared", "--protected", f"up-{MARK[-6:].decode()}")
        assert (up["visibility"], up["protected"]) == ("shared", True), up
        up_id = up.get("image_id") or up.get("id")
        try:
            def active() -> bool:
                return bool(cloud.osc("image", "show", up_id)["status"] == "active")

            wait_for(active, timeout=60, what="uploaded image active")
            shown = cloud.osc("image", "show", up_id)
            assert shown["disk_format"] == "qcow2" and 0 < shown["size"] < GIB, shown
            assert (shown["visibility"], shown["protected"]) == ("shared", True), shown
            wait_status(cloud, "volume", vol["id"], "available")
        finally:
            cloud.osc("image", "set", "--unprotected", up_id)
            cloud.osc("image", "delete", up_id)
        cloud.osc("volume", "delete", vol["id"])
        wait_gone(cloud, "volume", vol["id"])
        assert not path.exists()
    finally:
        cloud.osc("image", "delete", img["id"])


# ---- acceptance 3 and 5 through the CLI and openstacksdk --------------------------------------


def write_marks(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, MARK, 0)
        os.pwrite(fd, MARK, GIB - 4096)
    finally:
        os.close(fd)


def test_clone_has_the_same_bytes(cloud: CumuloCloud) -> None:
    """`openstack volume create --source`: the clone holds the source's bytes (start and end), may be
    larger, and is a copy (a write to the source after the clone does not show in it)."""
    osc, store = cloud.osc, host_dir(cloud) / "volumes"
    src = osc("volume", "create", "--size", "1", "clone-src")
    wait_status(cloud, "volume", src["id"], "available")
    write_marks(store / f"{src['id']}.raw")
    clone = osc("volume", "create", "--source", "clone-src", "--size", "2", "clone-dst")
    row = wait_status(cloud, "volume", clone["id"], "available")
    assert row["size"] == 2 and row["source_volid"] == src["id"], row
    dst = store / f"{clone['id']}.raw"
    assert dst.stat().st_size == 2 * GIB
    assert read_at(dst, 0, len(MARK)) == MARK and read_at(dst, GIB - 4096, len(MARK)) == MARK
    assert read_at(dst, GIB, 4096) == bytes(4096)  # the grown part is empty
    assert dst.stat().st_blocks * 512 < 64 << 20  # still sparse
    fd = os.open(store / f"{src['id']}.raw", os.O_WRONLY)
    try:
        os.pwrite(fd, b"changed-after-clone", 0)
    finally:
        os.close(fd)
    assert read_at(dst, 0, len(MARK)) == MARK
    # a clone smaller than its source: the CLI raises the size to the source's itself, the API
    # (through openstacksdk) answers 400
    from openstack import exceptions as sdk_exc

    conn = cloud.connect("cumulo")
    try:
        with pytest.raises(sdk_exc.BadRequestException) as err:
            conn.block_storage.create_volume(size=1, source_volid=clone["id"], name="too-small")
        assert "cannot be smaller than the source volume size 2GB" in str(err.value), err.value
    finally:
        conn.close()
    osc("volume", "delete", src["id"], clone["id"])
    for vid in (src["id"], clone["id"]):
        wait_gone(cloud, "volume", vid)
    assert not dst.exists()


@pytest.mark.configs("embedded", reason=API_ONLY)
def test_quota_is_per_project_and_a_clear_error(cloud: CumuloCloud) -> None:
    """The admin limits the demo project to 2 volumes and 3 GiB. The admin project's own volumes do
    not count against it; the demo's third volume and a volume over the gigabytes are clear errors
    naming the quota."""
    demo_project = cloud.osc("token", "issue", cloud="cumulo-demo")["project_id"]
    admin = cloud.connect("cumulo")
    made = [admin.block_storage.create_volume(size=1, name=f"admin-{i}").id for i in range(2)]
    try:
        cloud.osc("quota", "set", "--volumes", "2", "--gigabytes", "3", demo_project)
        for name in ("q1", "q2"):
            made.append(cloud.osc("volume", "create", "--size", "1", name, cloud="cumulo-demo")["id"])
        over = cloud.osc_run("volume", "create", "--size", "1", "q3", cloud="cumulo-demo")
        text = over.stderr + over.stdout
        assert over.returncode != 0 and "413" in text and "Maximum number of volumes allowed (2) exceeded" in text, text
        gone = made.pop()
        admin.block_storage.delete_volume(gone)
        wait_gone(cloud, "volume", gone)  # its quota is free once the row is
        big = cloud.osc_run("volume", "create", "--size", "3", "q-big", cloud="cumulo-demo")
        text = big.stderr + big.stdout
        assert big.returncode != 0 and "413" in text and "gigabytes" in text.lower(), text
        assert {v["Name"] for v in cloud.osc("volume", "list", cloud="cumulo-demo")} == {"q1"}
        usage = admin.block_storage.get_quota_set(demo_project, usage=True)
        assert usage.volumes == 2 and usage.usage["volumes"] == 1, usage
    finally:
        cloud.osc("quota", "set", "--volumes", "10", "--gigabytes", "1000", demo_project)
        for vid in made:
            admin.block_storage.delete_volume(vid)
        admin.close()
    for vid in made:
        wait_gone(cloud, "volume", vid)


@pytest.mark.configs("embedded", reason=API_ONLY)
def test_another_project_cannot_see_snapshot_back_up_or_clone(cloud: CumuloCloud) -> None:
    """The admin project's volume, snapshot and backup, as the demo project's user: the CLI finds
    none of them, and openstacksdk's direct calls by id are 404s that change nothing."""
    from openstack import exceptions as sdk_exc

    admin = cloud.connect("cumulo")
    vol = {"id": admin.block_storage.create_volume(size=1, name="private-vol").id}
    wait_status(cloud, "volume", vol["id"], "available")
    snap = {"id": admin.block_storage.create_snapshot(volume_id=vol["id"], name="private-snap").id}
    wait_status(cloud, "snapshot", snap["id"], "available")
    try:
        for args in (("volume", "show", vol["id"]),
                     ("volume", "snapshot", "create", "--volume", vol["id"], "steal"),
                     ("volume", "backup", "create", "--name", "steal", vol["id"]),
                     ("volume", "create", "--source", vol["id"], "--size", "1", "steal")):
            done = cloud.osc_run(*args, cloud="cumulo-demo")
            text = (done.stderr + done.stdout).lower()
            assert done.returncode != 0 and ("no volume" in text or "no snapshot" in text or "not found" in text
                                             or "could not be found" in text or "unable to" in text), (args, text)
        conn = cloud.connect("cumulo-demo")
        try:
            bs = conn.block_storage
            with pytest.raises(sdk_exc.NotFoundException):
                bs.get_volume(vol["id"])
            with pytest.raises(sdk_exc.NotFoundException):
                bs.create_snapshot(volume_id=vol["id"], name="steal", force=True)
            with pytest.raises(sdk_exc.NotFoundException):
                bs.create_backup(volume_id=vol["id"], name="steal", force=True)
            with pytest.raises(sdk_exc.NotFoundException):
                bs.create_volume(size=1, source_volid=vol["id"], name="steal")
            with pytest.raises(sdk_exc.NotFoundException):
                bs.create_volume(size=1, snapshot_id=snap["id"], name="steal")
            with pytest.raises(sdk_exc.NotFoundException):
                bs.extend_volume(vol["id"], 2)
            with pytest.raises(sdk_exc.NotFoundException):
                bs.delete_volume(vol["id"], ignore_missing=False)
            assert {v.id for v in bs.volumes()} & {vol["id"]} == set()
            assert [s for s in bs.snapshots() if s.id == snap["id"]] == []
            assert not [v for v in bs.volumes() if v.name == "steal"] and not list(bs.backups())
        finally:
            conn.close()
        row = wait_status(cloud, "volume", vol["id"], "available")
        assert (row["name"], row["size"]) == ("private-vol", 1)
    finally:
        admin.block_storage.delete_snapshot(snap["id"])
        wait_gone(cloud, "snapshot", snap["id"])
        admin.block_storage.delete_volume(vol["id"])
        admin.close()
        wait_gone(cloud, "volume", vol["id"])


@pytest.mark.configs("embedded", reason=API_ONLY)
def test_bad_requests_get_their_4xx(cloud: CumuloCloud) -> None:
    """Extending to a smaller size and deleting a volume that has snapshots: the API's 400s (through
    openstacksdk, which sends what the CLI refuses itself) and the CLI's clear errors."""
    from openstack import exceptions as sdk_exc

    osc = cloud.osc
    vol = osc("volume", "create", "--size", "2", "bad-req")
    wait_status(cloud, "volume", vol["id"], "available")
    snap = osc("volume", "snapshot", "create", "--volume", vol["id"], "bad-req-snap")
    wait_status(cloud, "snapshot", snap["id"], "available")
    conn = cloud.connect("cumulo")
    try:
        bs = conn.block_storage
        for size in (1, 2):  # smaller, and the same size
            with pytest.raises(sdk_exc.BadRequestException) as err:
                bs.extend_volume(vol["id"], size)
            assert err.value.status_code == 400 and "size" in str(err.value).lower(), err.value
        shrink = cloud.osc_run("volume", "set", "--size", "1", vol["id"])
        assert shrink.returncode != 0 and "greater than" in shrink.stderr, shrink.stderr
        with pytest.raises(sdk_exc.BadRequestException) as err:
            bs.delete_volume(vol["id"])
        assert "snapshot" in str(err.value).lower(), err.value
        refused = cloud.osc_run("volume", "delete", vol["id"])
        assert refused.returncode != 0 and "snapshot" in refused.stderr.lower(), refused.stderr
        row = wait_status(cloud, "volume", vol["id"], "available")
        assert row["size"] == 2
        assert (host_dir(cloud) / "volumes" / f"{vol['id']}.raw").stat().st_size == 2 * GIB
    finally:
        conn.close()
        osc("volume", "snapshot", "delete", snap["id"])
        wait_gone(cloud, "snapshot", snap["id"])
        osc("volume", "delete", vol["id"])
        wait_gone(cloud, "volume", vol["id"])
