"""Volumes through a real `cumulo up` (issue 11, wave 2): the Cinder API at /volume, its catalog
entries, and the volume worker on file-backed storage, driven by the real `openstack` CLI.

One runc cloud for the module (no external link). Volumes are polled through the API (osc --wait
polls every 5 s); the files are checked on the host under this cloud's state dir.
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


@pytest.fixture(scope="module")
def cloud(cumulo_launcher: Callable[..., CumuloCloud], tmp_path_factory: pytest.TempPathFactory) -> Iterator[CumuloCloud]:
    config = write_config(tmp_path_factory.mktemp("volumes"), tiny_vm_image="off")
    c = cumulo_launcher(driver="runc", args=["--config", str(config), "--no-external"])
    yield c
    c.close()


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


def test_catalog_lists_cinder(cloud: CumuloCloud) -> None:
    catalog = {e["Type"]: e for e in cloud.osc("catalog", "list")}
    assert {"block-storage", "volumev3"} <= set(catalog)
    token = cloud.osc("token", "issue")
    for kind in ("block-storage", "volumev3"):
        assert catalog[kind]["Name"] == "cinder"
        urls = {ep["url"] for ep in catalog[kind]["Endpoints"]}
        assert urls == {f"{cloud.base_url}/volume/v3/{token['project_id']}"}, urls


def test_volume_lifecycle(cloud: CumuloCloud) -> None:
    osc, store = cloud.osc, cloud.state_dir / "volumes"
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
    bfile = cloud.state_dir / "backups" / f"{bak['id']}.qcow2"
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
    left = [p.name for d in (store, store / "snapshots", cloud.state_dir / "backups") if d.exists()
            for p in d.iterdir() if not p.name.startswith(".") and p.name != "snapshots"]
    assert left == [], left


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
        path = cloud.state_dir / "volumes" / f"{vol['id']}.raw"
        assert path.stat().st_size == GIB and read_at(path, 0, len(MARK)) == MARK
        # and back: upload the volume to a new (qcow2) image
        up = cloud.osc("image", "create", "--volume", vol["id"], "--disk-format", "qcow2", f"up-{MARK[-6:].decode()}")
        up_id = up.get("image_id") or up.get("id")
        try:
            def active() -> bool:
                return bool(cloud.osc("image", "show", up_id)["status"] == "active")

            wait_for(active, timeout=60, what="uploaded image active")
            shown = cloud.osc("image", "show", up_id)
            assert shown["disk_format"] == "qcow2" and 0 < shown["size"] < GIB, shown
            wait_status(cloud, "volume", vol["id"], "available")
        finally:
            cloud.osc("image", "delete", up_id)
        cloud.osc("volume", "delete", vol["id"])
        wait_gone(cloud, "volume", vol["id"])
        assert not path.exists()
    finally:
        cloud.osc("image", "delete", img["id"])
