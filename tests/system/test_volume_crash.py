"""Crash safety of volumes (issue 11, acceptance 6): kill -9 `cumulo up` while the volume worker
converts an image into a volume or backs a volume up, and while a running container's volume is
attached, detached or grown; then start it again on the same state dir.

After the restart every volume is available, in-use or error (error with its reason in
error_message, which its owner reads in `openstack volume message list`; a backup cut short is
error with its fail_reason), no temporary file is left in the
store's dirs, the qemu-img the dead cloud ran is gone (it was started tied to its worker:
`setpriv --pdeathsig KILL`), and no loop device is bound to the cloud's files. An attachment obeys
one rule: in-use AND attached on the host (Cinder's and Nova's records, the driver's volumes.json,
the loop device, the host mount under volmounts/, the mount in the container, usable), or
available with none of these.

A hot plug into a running q35 VM is killed too (the QEMU driver's record written), then, once its
guest booted, a hot unplug (the agent's detach event open: device_del sent): the volume is in-use
and QEMU holds its file (a block node), or available and QEMU has no node of it; QEMU outlives the
cloud.

One cloud (runc + qemu on the local host, no external link), one container and one VM for the
module, killed and restarted by each test. The moment to kill is an observation, never a fixed sleep, polled every 5 ms: the worker's
temporary file beside the final name AND the qemu-img child writing it (found under the cloud's
pid, by its argv); the volume's row reserved or detaching (the cloud's SQLite, read-only); the
driver's record of the volume; the container's mount of it gone. A kill that came after the attach
or detach completed proves nothing and is tried again. The image is a qcow2 of 2 GiB of non-zero
data compressed to ~10 MB (zstd, 2 MiB clusters): the upload is cheap, the convert writes 2 GiB,
so it is surely in progress when seen.
"""

# ruff: noqa: S603, S607 - fixed argv of host tools (qemu-img, qemu-io, losetup) over the test's own paths
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from _runc_util import inside, kill_our_qemus, runc_state, wait_for, wait_tiny_vm, write_config
from _runc_util import wait_gone as runc_wait_gone
from _runc_util import wait_status as runc_wait_status
from _util_resilience import read_only

from cumulo.image.demo import tinyvm

if TYPE_CHECKING:
    from conftest import CumuloCloud

BIN = Path(sys.executable).parent
BUILD_CACHE = os.environ.get("CUMULO_TEST_BUILD_CACHE") or str(tinyvm.default_cache())
DEMO = "cumulo-demo"

pytestmark = pytest.mark.system

GIB = 1 << 30
IMAGE_GIB = 2
MICROVERSION = {"OpenStack-API-Version": "volume 3.67"}
TEMP = re.compile(r"^\..+\.\d+\.[0-9a-f]{8}\.tmp$")  # the block store's temporary names
SETTLED = {"available", "in-use", "error"}


@pytest.fixture(scope="module")
def cloud(cumulo_launcher: Callable[..., CumuloCloud], tmp_path_factory: pytest.TempPathFactory) -> Iterator[CumuloCloud]:
    if shutil.which("qemu-io") is None or shutil.which("qemu-img") is None:
        pytest.skip("needs qemu-img and qemu-io (qemu-utils)")
    config = write_config(tmp_path_factory.mktemp("volcrash"), image_build_cache=BUILD_CACHE, qemu_stop_timeout=5)
    c = cumulo_launcher(driver="runc,qemu", args=["--config", str(config), "--no-external"])
    yield c
    if not c.running:  # a test failed between its kill and its restart: the restart reconciles
        c.start()
    c.stop()
    kill_our_qemus(c.state_dir)  # last resort: QEMU outlives the cloud by design
    c.close()


@pytest.fixture(scope="module")
def big_image(cloud: CumuloCloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A qcow2 image whose convert writes IMAGE_GIB GiB of non-zero data (made in ~1 s with qemu-io's
    compressed writes of a byte pattern; ~10 MB to upload)."""
    path = tmp_path_factory.mktemp("volcrash-img") / "big.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "compression_type=zstd,cluster_size=2M",
                    str(path), f"{IMAGE_GIB}G"], check=True)
    writes = [a for g in range(IMAGE_GIB) for a in ("-c", f"write -q -c -P {0x5a + g} {g}G 1G")]
    subprocess.run(["qemu-io", "-f", "qcow2", *writes, str(path)], check=True, capture_output=True)
    img = cloud.osc("image", "create", "--disk-format", "qcow2", "--container-format", "bare", "--file", str(path),
                    "volcrash-big")
    path.unlink()
    yield str(img["id"])
    cloud.osc("image", "delete", img["id"])


# -- observing the cloud and the host ----------------------------------------------------------


def api(cloud: CumuloCloud, kind: str, item_id: str) -> dict[str, Any] | None:
    """The volume or backup as the API shows it now (None once it is gone)."""
    with cloud.client() as c:
        resp = c.get(f"/volume/v3/{kind}s/{item_id}", headers=MICROVERSION)
    if resp.status_code == 404:
        return None
    assert resp.status_code == 200, resp.text
    return dict(resp.json()[kind])


def error_message(cloud: CumuloCloud, volume_id: str) -> str:
    """The reason the worker recorded (Cinder's volume view has no such field; read-only DB read)."""
    con = read_only(cloud)
    try:
        row = con.execute("SELECT error_message FROM volumes WHERE id = ?", (volume_id,)).fetchone()
    finally:
        con.close()
    return str(row["error_message"] or "") if row else ""


def wait_status(cloud: CumuloCloud, kind: str, item_id: str, want: set[str], timeout: float = 120) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        row = api(cloud, kind, item_id)
        assert row is not None, f"{kind} {item_id} vanished"
        return row if row["status"] in want else None

    return dict(wait_for(ready, timeout=timeout, what=f"{kind} {item_id} in {sorted(want)}"))


def wait_gone(cloud: CumuloCloud, kind: str, item_id: str) -> None:
    wait_for(lambda: api(cloud, kind, item_id) is None, timeout=60, what=f"{kind} {item_id} gone")


def store_dirs(cloud: CumuloCloud) -> list[Path]:
    vols = cloud.state_dir / "volumes"
    return [vols, vols / "snapshots", cloud.state_dir / "backups", vols / ".run"]


def temp_files(cloud: CumuloCloud) -> list[str]:
    return [str(p) for d in store_dirs(cloud) if d.is_dir() for p in d.iterdir() if TEMP.match(p.name)]


def children(pid: int) -> list[int]:
    """The direct children of `pid` (every thread's)."""
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            continue
    return kids


def argv_of(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie waiting for its reaper does not)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] not in ("Z", "X")


def converting(cloud: CumuloCloud, directory: Path, name: str) -> tuple[Path, int] | None:
    """(the temporary file beside `directory/name`, the pid of the qemu-img convert writing it)
    once both exist."""
    assert cloud.pid is not None
    temps = [p for p in directory.glob(f".{name}.*.tmp") if TEMP.match(p.name)] if directory.is_dir() else []
    if not temps:
        return None
    for kid in children(cloud.pid):
        argv = argv_of(kid)
        if argv and argv[0].endswith("qemu-img") and "convert" in argv and str(temps[0]) in argv:
            return temps[0], kid
    return None


def loop_devices_of(path: Path) -> str:
    return subprocess.run(["losetup", "-j", str(path)], capture_output=True, text=True, check=True).stdout.strip()


def check_no_leftovers(cloud: CumuloCloud) -> None:
    """No temporary file in the store's dirs, no loop device on any of the cloud's volume files,
    no loop record of a volume (nothing is attached in these tests)."""
    assert temp_files(cloud) == []
    vols = cloud.state_dir / "volumes"
    for f in sorted(vols.glob("*.raw")):
        assert loop_devices_of(f) == "", f
    loops = vols / ".run" / "loops"
    assert not loops.is_dir() or not list(loops.iterdir()), list(loops.iterdir())
    volmounts = str(cloud.state_dir / "volmounts")
    with open("/proc/self/mountinfo") as fh:
        assert not [line for line in fh if volmounts in line.split()[4]]


def kill_while(cloud: CumuloCloud, seen: Callable[[], tuple[Path, int] | None], what: str) -> tuple[Path, int]:
    """Wait (polling every 5 ms) until `seen` observes the convert, then kill -9 the cloud. Returns
    (temporary file, qemu-img pid) as seen just before the kill."""
    found = wait_for(seen, timeout=120, interval=0.005, what=what)
    cloud.kill()
    assert cloud.proc is not None and cloud.proc.returncode == -9
    return found  # type: ignore[no-any-return]


def restart_and_check_reaped(cloud: CumuloCloud, tmp: Path, qemu_img: int) -> float:
    """The convert the kill cut short left its temporary file (proof that it was in flight); the
    qemu-img dies with its worker; the restart reaps the file. Returns the restart's wall time."""
    wait_for(lambda: not alive(qemu_img), timeout=30, interval=0.05, what=f"qemu-img {qemu_img} gone")
    assert tmp.exists(), f"{tmp} vanished before the restart: the kill came after the convert"
    t0 = time.monotonic()
    cloud.start()
    took = time.monotonic() - t0
    assert not tmp.exists()
    assert not alive(qemu_img)
    return took


# -- the tests ---------------------------------------------------------------------------------


def test_kill_during_create_from_image(cloud: CumuloCloud, big_image: str) -> None:
    vol = cloud.osc("volume", "create", "--image", big_image, "--size", str(IMAGE_GIB), "crash-from-image")
    vid = vol["id"]
    final = cloud.state_dir / "volumes" / f"{vid}.raw"
    tmp, qemu_img = kill_while(cloud, lambda: converting(cloud, final.parent, final.name), "the image convert")
    assert not final.exists()
    took = restart_and_check_reaped(cloud, tmp, qemu_img)

    row = wait_status(cloud, "volume", vid, SETTLED)
    assert row["status"] == "error", row
    why = error_message(cloud, vid)
    assert "restarted while the volume was creating" in why, why
    # the owner reads the reason through Cinder's user messages (3.3), as `openstack` shows them
    told = cloud.osc("--os-volume-api-version", "3.3", "volume", "message", "list")
    mine = [m for m in told if m["Resource UUID"] == vid]
    assert [(m["Resource Type"], m["Event ID"], m["Message Level"]) for m in mine] == [
        ("VOLUME", "VOLUME_VOLUME_005_012", "ERROR")], told
    assert why in mine[0]["User Message"], mine
    assert not final.exists()
    check_no_leftovers(cloud)
    print(f"kill during create-from-image: restart {took:.1f} s; volume {row['status']}: {why}")

    # an error volume deletes cleanly, and a second try of the same image succeeds
    cloud.osc("volume", "delete", vid)
    again = cloud.osc("volume", "create", "--image", big_image, "--size", str(IMAGE_GIB), "crash-from-image-2")
    wait_status(cloud, "volume", again["id"], {"available"})
    wait_gone(cloud, "volume", vid)
    cloud.osc("volume", "delete", again["id"])
    wait_gone(cloud, "volume", again["id"])
    check_no_leftovers(cloud)


def test_kill_during_backup(cloud: CumuloCloud, big_image: str) -> None:
    vol = cloud.osc("volume", "create", "--image", big_image, "--size", str(IMAGE_GIB), "crash-backed-up")
    vid = vol["id"]
    wait_status(cloud, "volume", vid, {"available"})
    bak = cloud.osc("volume", "backup", "create", "--name", "crash-backup", vid)
    bid = bak["id"]
    final = cloud.state_dir / "backups" / f"{bid}.qcow2"
    tmp, qemu_img = kill_while(cloud, lambda: converting(cloud, final.parent, final.name), "the backup convert")
    assert not final.exists()
    took = restart_and_check_reaped(cloud, tmp, qemu_img)

    row = wait_status(cloud, "volume", vid, SETTLED)
    assert row["status"] == "available", row  # the volume itself is whole: back to its status before
    backup = wait_status(cloud, "backup", bid, {"available", "error"})
    assert backup["status"] == "error" and "restarted" in (backup.get("fail_reason") or ""), backup
    assert not final.exists()
    check_no_leftovers(cloud)
    print(f"kill during backup: restart {took:.1f} s; volume {row['status']}, backup error: {backup['fail_reason']}")

    # the failed backup deletes; a new backup of the same volume completes
    cloud.osc("volume", "backup", "delete", bid)
    wait_gone(cloud, "backup", bid)
    again = cloud.osc("volume", "backup", "create", "--name", "crash-backup-2", vid)
    wait_status(cloud, "backup", again["id"], {"available"})
    wait_status(cloud, "volume", vid, {"available"})
    cloud.osc("volume", "backup", "delete", again["id"])
    wait_gone(cloud, "backup", again["id"])
    cloud.osc("volume", "delete", vid)
    wait_gone(cloud, "volume", vid)
    check_no_leftovers(cloud)
    assert not any(p for p in (cloud.state_dir / "backups").iterdir()), list((cloud.state_dir / "backups").iterdir())


# -- attach and detach of a running container ---------------------------------------------------

COMPUTE = "/compute/v2.1"
IN_FLIGHT = {"reserved", "attaching", "detaching"}


@pytest.fixture(scope="module")
def container(cloud: CumuloCloud) -> Iterator[str]:
    """One running runc server (busybox, no network) for the attach/detach kills."""
    with cloud.client() as c:
        image = c.get("/image/v2/images", params={"name": "busybox"}).json()["images"][0]["id"]
        r = c.post(f"{COMPUTE}/servers", json={"server": {"name": "volcrash", "imageRef": image, "flavorRef": "1",
                                                           "networks": "none"}},
                   headers={"X-OpenStack-Nova-API-Version": "2.37"})
        assert r.status_code == 202, r.text
    uuid = str(r.json()["server"]["id"])
    runc_wait_status(cloud, uuid, "ACTIVE", timeout=120)
    yield uuid
    if cloud.running:
        with cloud.client() as c:
            c.delete(f"{COMPUTE}/servers/{uuid}")
        runc_wait_gone(cloud, uuid)


def container_pid(cloud: CumuloCloud, uuid: str) -> int:
    state = runc_state(cloud, uuid)
    assert state is not None and state.get("status") == "running", state
    return int(state["pid"])


def mount_points(pid: int | str) -> set[str]:
    with open(f"/proc/{pid}/mountinfo") as fh:
        return {line.split()[4] for line in fh}


def recorded(cloud: CumuloCloud, uuid: str) -> set[str]:
    """The volumes the runc driver recorded for the server (volumes.json, written first)."""
    try:
        doc = json.loads((cloud.state_dir / "runc" / uuid / "volumes.json").read_text())
    except (OSError, ValueError):
        return set()
    return {str(d.get("volume_id")) for d in doc.get("disks") or []}


def volume_row(cloud: CumuloCloud, volume_id: str) -> dict[str, Any]:
    """The volume's row, and its server mapping: "none", "no attachment id yet" or "recorded"."""
    con = read_only(cloud)
    try:
        row = con.execute("SELECT status, attach_status, size, error_message FROM volumes WHERE id = ?",
                          (volume_id,)).fetchone()
        bdm = con.execute("SELECT attachment_id FROM block_device_mapping WHERE volume_id = ?",
                          (volume_id,)).fetchone()
    finally:
        con.close()
    mapping = "none" if bdm is None else "recorded" if bdm["attachment_id"] else "no attachment id yet"
    return {**dict(row), "mapping": mapping} if row else {}


def nova_attached(cloud: CumuloCloud, uuid: str) -> set[str]:
    with cloud.client() as c:
        r = c.get(f"{COMPUTE}/servers/{uuid}/os-volume_attachments")
    assert r.status_code == 200, r.text
    return {str(a["volumeId"]) for a in r.json()["volumeAttachments"]}


def host_view(cloud: CumuloCloud, uuid: str, volume_id: str) -> dict[str, bool]:
    """What the host shows of the volume: each piece of an attach."""
    vfile = cloud.state_dir / "volumes" / f"{volume_id}.raw"
    return {
        "recorded": volume_id in recorded(cloud, uuid),
        "loop_record": (cloud.state_dir / "volumes" / ".run" / "loops" / f"{volume_id}.json").exists(),
        "loop_device": bool(loop_devices_of(vfile)),
        "host_mount": str(cloud.state_dir / "volmounts" / uuid / volume_id) in mount_points("self"),
        "in_container": f"/mnt/volumes/{volume_id}" in mount_points(container_pid(cloud, uuid)),
    }


def settled(cloud: CumuloCloud, uuid: str, volume_id: str) -> str:
    """Wait until the volume is out of every transitional status, then check the consistency rule:
    in-use AND attached on the host (in both APIs, mounted in the container and usable), or
    available/error AND nothing of it on the host. Returns the status."""
    row = wait_status(cloud, "volume", volume_id, SETTLED, timeout=60)
    status = row["status"]
    host = host_view(cloud, uuid, volume_id)
    cinder = {str(a.get("server_id")) for a in row.get("attachments") or []}
    if status == "in-use":
        assert cinder == {uuid} and nova_attached(cloud, uuid) == {volume_id}, (cinder, row)
        assert all(host.values()), host
        probe = f"/mnt/volumes/{volume_id}/probe"
        assert inside(cloud, uuid, f"echo ok > {probe} && cat {probe} && rm {probe}").strip() == "ok"
    else:
        assert cinder == set() and volume_id not in nova_attached(cloud, uuid), (cinder, row)
        assert not any(host.values()), host
        if status == "error":
            assert volume_row(cloud, volume_id).get("error_message"), volume_row(cloud, volume_id)
    assert not any(str(cloud.state_dir / "volmounts") in m for m in mount_points("self")) or status == "in-use"
    return str(status)


def run_cli(cloud: CumuloCloud, *args: str) -> subprocess.Popen[str]:
    """`openstack ARGS` started in the background (the kill may cut its request short)."""
    return subprocess.Popen([str(BIN / "openstack"), "--os-cloud", "cumulo", *args], env=cloud.osc_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_on(cloud: CumuloCloud, cli: subprocess.Popen[str], moment: Callable[[], bool], what: str) -> None:
    try:
        wait_for(moment, timeout=120, interval=0.005, what=what)
    except AssertionError:
        out, err = cli.communicate(timeout=60)
        raise AssertionError(f"{what} never seen; the CLI said: {out}{err}") from None
    cloud.kill()
    cli.communicate(timeout=60)  # it fails or not, as the kill fell


def attach(cloud: CumuloCloud, uuid: str, volume_id: str) -> None:
    cloud.osc("server", "add", "volume", uuid, volume_id)
    wait_status(cloud, "volume", volume_id, {"in-use"})


def detach(cloud: CumuloCloud, uuid: str, volume_id: str) -> None:
    cloud.osc("server", "remove", "volume", uuid, volume_id)
    wait_status(cloud, "volume", volume_id, {"available"})


@pytest.mark.parametrize("moment", ["reserved", "host"])
def test_kill_during_attach(cloud: CumuloCloud, container: str, moment: str) -> None:
    """Killed once the API reserved the volume (nothing on the host yet), or once the driver
    recorded it (the host's part under way, not yet complete in the DB)."""
    vol = cloud.osc("volume", "create", "--size", "1", f"crash-attach-{moment}")
    vid = vol["id"]
    wait_status(cloud, "volume", vid, {"available"})
    kills = 0
    for _ in range(5):  # a kill that comes after the attach completed proves nothing: again
        kills += 1
        cli = run_cli(cloud, "server", "add", "volume", container, vid)
        if moment == "reserved":
            kill_on(cloud, cli, lambda: volume_row(cloud, vid).get("status") in IN_FLIGHT, "the volume reserved")
        else:
            kill_on(cloud, cli, lambda: vid in recorded(cloud, container), "the driver's record of the volume")
        at_kill = (volume_row(cloud, vid), host_view(cloud, container, vid))
        cloud.start()
        if at_kill[0].get("status") != "in-use":
            break
        settled(cloud, container, vid)
        detach(cloud, container, vid)
    else:
        pytest.fail(f"the attach completed before every kill: {at_kill}")
    status = settled(cloud, container, vid)
    print(f"kill during attach ({moment}, kill {kills}): at the kill {at_kill}; after the restart {status}")
    # whichever way it went, the volume works: detach (or attach and detach) through the API
    if status == "in-use":
        detach(cloud, container, vid)
    else:
        attach(cloud, container, vid)
        assert settled(cloud, container, vid) == "in-use"
        detach(cloud, container, vid)
    assert settled(cloud, container, vid) == "available"
    cloud.osc("volume", "delete", vid)
    wait_gone(cloud, "volume", vid)
    check_no_leftovers(cloud)


@pytest.mark.parametrize("moment", ["detaching", "host"])
def test_kill_during_detach(cloud: CumuloCloud, container: str, moment: str) -> None:
    """Killed once the API marked the volume detaching, or once the container let go of it (the
    host's part under way). The data written before stays."""
    vol = cloud.osc("volume", "create", "--size", "1", f"crash-detach-{moment}")
    vid = vol["id"]
    wait_status(cloud, "volume", vid, {"available"})
    mark = f"written before the detach {moment}"
    kills = 0
    for _ in range(5):
        kills += 1
        attach(cloud, container, vid)
        assert settled(cloud, container, vid) == "in-use"
        inside(cloud, container, f"echo '{mark}' > /mnt/volumes/{vid}/mark && sync")
        cli = run_cli(cloud, "server", "remove", "volume", container, vid)
        pid = container_pid(cloud, container)
        if moment == "detaching":
            kill_on(cloud, cli, lambda: volume_row(cloud, vid).get("status") == "detaching", "the volume detaching")
        else:
            kill_on(cloud, cli, lambda p=pid: f"/mnt/volumes/{vid}" not in mount_points(p), "the container letting go")
        at_kill = (volume_row(cloud, vid), host_view(cloud, container, vid))
        cloud.start()
        if at_kill[0].get("status") != "available":
            break
        settled(cloud, container, vid)
    else:
        pytest.fail(f"the detach completed before every kill: {at_kill}")
    status = settled(cloud, container, vid)
    print(f"kill during detach ({moment}, kill {kills}): at the kill {at_kill}; after the restart {status}")
    if status == "in-use":
        detach(cloud, container, vid)
    attach(cloud, container, vid)  # the bytes written before the kill are there
    assert inside(cloud, container, f"cat /mnt/volumes/{vid}/mark").strip() == mark
    detach(cloud, container, vid)
    assert settled(cloud, container, vid) == "available"
    cloud.osc("volume", "delete", vid)
    wait_gone(cloud, "volume", vid)
    check_no_leftovers(cloud)


def test_kill_during_online_extend(cloud: CumuloCloud, container: str) -> None:
    """Killed while the runc driver grows the ext4 of an attached volume offline (this host cannot
    grow a mounted ext4: the volume is unmounted from the container and the host for a moment):
    after the restart the volume is in-use, mounted again, bigger, and its data is kept."""
    vol = cloud.osc("volume", "create", "--size", "1", "crash-extend")
    vid = vol["id"]
    wait_status(cloud, "volume", vid, {"available"})
    attach(cloud, container, vid)
    inside(cloud, container, f"echo kept > /mnt/volumes/{vid}/mark && sync")
    pid = container_pid(cloud, container)
    with cloud.client(headers={"OpenStack-API-Version": "volume 3.42"}) as c:
        r = c.post(f"/volume/v3/volumes/{vid}/action", json={"os-extend": {"new_size": 2}})
    assert r.status_code == 202, r.text
    wait_for(lambda: f"/mnt/volumes/{vid}" not in mount_points(pid), timeout=60, interval=0.005,
             what="the container letting go of the volume for the grow")
    cloud.kill()
    at_kill = (volume_row(cloud, vid), host_view(cloud, container, vid))
    cloud.start()
    assert settled(cloud, container, vid) == "in-use"
    assert inside(cloud, container, f"cat /mnt/volumes/{vid}/mark").strip() == "kept"
    size_kib = int(inside(cloud, container, f"df -k /mnt/volumes/{vid} | tail -1").split()[1])
    print(f"kill during the grow of an attached volume: at the kill {at_kill}; after the restart in-use, "
          f"{size_kib} KiB")
    if size_kib < 1_200_000:  # the growth cut short is pending: done at the next detach (or attach)
        detach(cloud, container, vid)
        attach(cloud, container, vid)
        size_kib = int(inside(cloud, container, f"df -k /mnt/volumes/{vid} | tail -1").split()[1])
    assert size_kib > 1_200_000, size_kib  # the filesystem grew beyond 1 GiB
    assert inside(cloud, container, f"cat /mnt/volumes/{vid}/mark").strip() == "kept"
    detach(cloud, container, vid)
    cloud.osc("volume", "delete", vid)
    wait_gone(cloud, "volume", vid)
    check_no_leftovers(cloud)


# -- hot plug into a running VM (QEMU) -----------------------------------------------------------


def boot_vm(cloud: CumuloCloud) -> str:
    """A q35 tiny VM of the demo project (its NIC gives it spare PCIe root ports for hot plug). Its
    guest is not waited for: QEMU plugs a disk whatever the guest does (a hot unplug would need the
    guest's answer, which is why only the attach is killed here)."""
    image = wait_tiny_vm(cloud)
    cloud.osc("image", "set", "--property", "hw_machine_type=q35", image, json=False)
    uuid = str(cloud.osc("server", "create", "--image", "tiny-vm", "--flavor", "m1.tiny", "--network", "private",
                         "volcrash-vm", cloud=DEMO)["id"])
    runc_wait_status(cloud, uuid, "ACTIVE", timeout=180)
    return uuid


def qemu_record(cloud: CumuloCloud, uuid: str) -> set[str]:
    """The volumes the QEMU driver recorded for the server (instance.json "disks", written first)."""
    try:
        doc = json.loads((cloud.state_dir / "qemu" / uuid / "instance.json").read_text())
    except (OSError, ValueError):
        return set()
    return {str(d.get("volume_id")) for d in doc.get("disks") or []}


def qemu_opens(cloud: CumuloCloud, uuid: str, volume_id: str) -> int:
    """How many fds the server's QEMU holds on the volume's file: its block node's (0: no node)."""
    pid = int((cloud.state_dir / "qemu" / uuid / "qemu.pid").read_text().strip())
    want = str(cloud.state_dir.resolve() / "volumes" / f"{volume_id}.raw")
    n = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            n += os.readlink(fd) == want
        except OSError:
            continue
    return n


def demo_api(cloud: CumuloCloud, volume_id: str) -> dict[str, Any]:
    with cloud.client(DEMO) as c:
        resp = c.get(f"/volume/v3/volumes/{volume_id}", headers=MICROVERSION)
    assert resp.status_code == 200, resp.text
    return dict(resp.json()["volume"])


def settled_vm(cloud: CumuloCloud, uuid: str, volume_id: str) -> str:
    """The consistency rule on a VM: in-use AND recorded by the driver AND a block node in QEMU (its
    fd on the file), or available with none of these."""
    row: dict[str, Any] = wait_for(lambda: (r := demo_api(cloud, volume_id))["status"] in SETTLED and r,
                                   timeout=60, what=f"volume {volume_id} settled")
    with cloud.client(DEMO) as c:
        nova = {str(a["volumeId"]) for a in c.get(f"{COMPUTE}/servers/{uuid}/os-volume_attachments").json()[
            "volumeAttachments"]}
    cinder = {str(a.get("server_id")) for a in row.get("attachments") or []}
    host = {"recorded": volume_id in qemu_record(cloud, uuid), "block_node": qemu_opens(cloud, uuid, volume_id)}
    if row["status"] == "in-use":
        assert cinder == {uuid} and volume_id in nova, (cinder, nova)
        assert host["recorded"] and host["block_node"] >= 1, host
    else:
        assert row["status"] == "available" and not cinder and volume_id not in nova, (row, nova)
        assert not host["recorded"] and host["block_node"] == 0, host
    return str(row["status"])


def test_kill_during_vm_hot_plug_and_unplug(cloud: CumuloCloud) -> None:
    """Killed once the QEMU driver recorded the volume (blockdev-add/device_add under way or not yet
    done), then during an unplug: after each restart the volume is in-use and plugged (QEMU holds
    its file), or available and QEMU has no node of it. QEMU itself outlives the cloud. The VM's
    delete then gives the volumes back."""
    vm = boot_vm(cloud)
    made: list[str] = []
    try:
        hot_plug_kills(cloud, vm, made)
        hot_unplug_kill(cloud, vm, made)
    finally:
        if cloud.running:
            with cloud.client(DEMO) as c:
                c.delete(f"{COMPUTE}/servers/{vm}")
            runc_wait_gone(cloud, vm, timeout=90)
            for vid in made:
                wait_for(lambda v=vid: demo_api(cloud, v)["status"] == "available", timeout=60,
                         what=f"volume {vid} given back by the server's delete")
                cloud.osc("volume", "delete", vid, cloud=DEMO)
            for vid in made:
                wait_gone(cloud, "volume", vid)
    check_no_leftovers(cloud)


def hot_plug_kills(cloud: CumuloCloud, vm: str, made: list[str]) -> None:
    qemu = int((cloud.state_dir / "qemu" / vm / "qemu.pid").read_text().strip())
    for _ in range(3):  # a kill that comes after the attach completed proves nothing: a new volume
        vid = str(cloud.osc("volume", "create", "--size", "1", f"crash-vm-{len(made)}", cloud=DEMO)["id"])
        made.append(vid)
        wait_for(lambda v=vid: demo_api(cloud, v)["status"] == "available", timeout=60, what="volume available")
        cli = subprocess.Popen([str(BIN / "openstack"), "--os-cloud", DEMO, "server", "add", "volume", vm, vid],
                               env=cloud.osc_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        kill_on(cloud, cli, lambda v=vid: v in qemu_record(cloud, vm), "the QEMU driver's record of the volume")
        at_kill = (volume_row(cloud, vid), qemu_opens(cloud, vm, vid))
        assert alive(qemu), "QEMU died with the cloud"
        cloud.start()
        status = settled_vm(cloud, vm, vid)
        print(f"kill during a VM hot plug: at the kill {at_kill}; after the restart {status}")
        if at_kill[0].get("status") != "in-use":
            break
    else:
        pytest.fail(f"the hot plug completed before every kill: {at_kill}")
    assert alive(qemu)
    for v in made:  # every earlier attempt's volume consistent too
        settled_vm(cloud, vm, v)


def console(cloud: CumuloCloud, uuid: str) -> str:
    with cloud.client(DEMO) as c:
        r = c.post(f"{COMPUTE}/servers/{uuid}/action", json={"os-getConsoleOutput": {}})
    assert r.status_code == 200, r.text
    return str(r.json()["output"])


def hot_unplug_kill(cloud: CumuloCloud, vm: str, made: list[str]) -> None:
    """Killed while the agent's detach waits for the guest (its compute_detach_volume event open for
    50 ms: device_del sent, DEVICE_DELETED not yet; the tiny VM answers in ~0.2 s): after the
    restart the volume is available and QEMU has no node of it, or in-use and still plugged."""
    vid = next((v for v in made if demo_api(cloud, v)["status"] == "in-use"), made[-1])
    if demo_api(cloud, vid)["status"] != "in-use":
        cloud.osc("server", "add", "volume", vm, vid, cloud=DEMO)
        wait_for(lambda: demo_api(cloud, vid)["status"] == "in-use", timeout=60, what="volume in-use")
    wait_for(lambda: "cumulo-tiny-vm ready" in console(cloud, vm), timeout=300, interval=1.0,
             what="the VM's guest booted (it answers a hot unplug)")
    cli = subprocess.Popen([str(BIN / "openstack"), "--os-cloud", DEMO, "server", "remove", "volume", vm, vid],
                           env=cloud.osc_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kill_on(cloud, cli, lambda: unplugging_for(cloud, vm) > 0.05, "the driver waiting for the guest's unplug")
    at_kill = (volume_row(cloud, vid), qemu_opens(cloud, vm, vid))
    cloud.start()
    status = settled_vm(cloud, vm, vid)
    print(f"kill during a VM hot unplug: at the kill {at_kill}; after the restart {status}")


def unplugging_for(cloud: CumuloCloud, uuid: str) -> float:
    """Seconds the agent's open compute_detach_volume event of the server has run (0: none open):
    past a few ms, its device_del is sent and the driver waits for the guest."""
    con = read_only(cloud)
    try:
        row = con.execute(
            "SELECT e.start_time FROM instance_action_events e JOIN instance_actions a ON a.id = e.action_id "
            "WHERE a.instance_uuid = ? AND e.event = 'compute_detach_volume' AND e.finish_time IS NULL",
            (uuid,)).fetchone()
    finally:
        con.close()
    if row is None:
        return 0.0
    started = datetime.fromisoformat(str(row["start_time"])).replace(tzinfo=UTC)
    return (datetime.now(UTC) - started).total_seconds()
