"""The host's view of a running cloud (issue 8, items 1.2 and 1.5): the state dir is private to the
cloud's user, container roots are mounted nosuid,nodev, and the host user `nobody` reaches nothing.

One `cumulo up` on the runc driver (and the QEMU driver where QEMU is installed), started on a state
dir that already exists with mode 0755 in a dir everyone may enter (so only the cloud's own modes
stand between `nobody` and the files). A container boots from an image holding a setuid-root copy
of busybox, with user data and a key; a tiny-vm VM boots with user data and a key too (its disk
overlay and config-drive ISO are made by qemu-img and the driver under the cloud's umask). Then:
- every file and dir under the state dir is neither group- nor world-readable or -writable, except
  the documented ones (docs/operations.md, "The state dir"), each for a named reason;
- the container's overlay is mounted nosuid,nodev (/proc/self/mountinfo);
- `nobody` (setpriv --reuid 65534) cannot list the state dir, nor reach the container's root or its
  setuid binary.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from _runc_util import server, wait_gone, wait_image_active, wait_status, wait_tiny_vm, write_config
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from cumulo.image.demo import tinyvm

if TYPE_CHECKING:
    from conftest import CumuloCloud

WITH_QEMU = shutil.which("qemu-system-x86_64") is not None and shutil.which("qemu-img") is not None
BUILD_CACHE = os.environ.get("CUMULO_TEST_BUILD_CACHE") or str(tinyvm.default_cache())

# Through a shell: setpriv itself may start its program before it drops to the new uid.
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "/bin/sh", "-c", 'exec "$@"', "sh"]


def _suid_image(out: Path) -> Path:
    from cumulo.image.demo.busybox import BUSYBOX, busybox_layer
    from cumulo.oci.docker import write_docker_archive
    from cumulo.oci.layout import host_arch

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        data = BUSYBOX.read_bytes()
        info = tarfile.TarInfo("opt/suid-busybox")
        info.size, info.mode, info.mtime, info.uid, info.gid = len(data), 0o4755, 1_700_000_000, 0, 0
        tf.addfile(info, io.BytesIO(data))
    config = {"architecture": host_arch(), "os": "linux",
              "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh", "-c", "echo suid-image-up; exec sleep 3600"],
                         "WorkingDir": "/"}}
    return write_docker_archive(out, [busybox_layer(), buf.getvalue()], config, "cumulo/suid:test")


# Paths (relative to the state dir, as glob patterns) whose modes are the guest's business, not the
# host's: they are reachable only through the 0700 dirs above them. Each is named in operations.md.
def _exception(rel: str) -> str | None:
    parts = rel.split("/")
    if parts[:2] == ["images", "rootfs"] and len(parts) >= 3:
        return "unpacked image root: the image's own modes, which the container's users need"
    if parts[0] == "runc" and len(parts) >= 3:
        if parts[2] in ("rootfs", "upper", "work"):
            return "container root: the image's and the tenant's modes"
        if parts[2] == "disk":
            return "container root disk: the tenant's files (upper) and overlay's work dir"
        if parts[2] == "config-drive":
            return "config drive: 0644/0755 so any user of the container reads /mnt/config"
    if parts[0] == "runc-state":
        return "runc's own state (0711 dirs, its own modes), below the 0700 runc-state"
    return None


def _walk(state: Path) -> tuple[list[str], dict[str, str]]:
    """(problems, exceptions met): every path under state that group or others may read or write."""
    problems: list[str] = []
    met: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(state):
        for name in list(dirnames) + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(state))
            why = _exception(rel)
            if why is not None:
                met[rel.split("/")[0] + "/" + "/".join(rel.split("/")[1:3])] = why
                if name in dirnames:
                    dirnames.remove(name)  # nothing below is checked either
                continue
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                continue
            # A socket is reached by connect(), which needs write permission: QEMU's daemon makes its
            # QMP socket under its own umask 027 (srwxr-x---), which no other user can connect to.
            shared = st.st_mode & (0o022 if stat.S_ISSOCK(st.st_mode) else 0o066)
            if shared:
                problems.append(f"{rel} {stat.filemode(st.st_mode)}")
    return problems, met


@pytest.fixture(scope="module")
def cloud(cumulo_launcher: Callable[..., CumuloCloud], tmp_path_factory: pytest.TempPathFactory) -> Iterator[CumuloCloud]:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is missing")
    tmp = tmp_path_factory.mktemp("private-state")
    config = write_config(tmp, image_build_cache=BUILD_CACHE)
    c = cumulo_launcher(driver="runc,qemu" if WITH_QEMU else "runc", args=["--config", str(config)], start=False)
    # A dir `nobody` may enter, and a state dir a previous, laxer cloud made 0755.
    os.chmod(c.root, 0o755)
    c.state_dir.mkdir(mode=0o755)
    os.chmod(c.state_dir, 0o755)
    c.start()
    yield c
    c.close()


def test_state_dir_is_private_and_container_roots_are_nosuid_nodev(cloud: CumuloCloud, tmp_path: Path) -> None:
    image = _suid_image(tmp_path / "suid.tar")
    made = cloud.osc("image", "create", "--container-format", "docker", "--disk-format", "raw",
                     "--property", "hypervisor_type=container", "--file", str(image), "suid-image")
    wait_image_active(cloud, made["id"])
    key = tmp_path / "k.pub"
    public = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    key.write_text(public + " private@test\n")
    cloud.osc("keypair", "create", "--public-key", str(key), "private-key")
    (tmp_path / "ud").write_text("#!/bin/sh\necho secret user data\n")
    uuid = str(cloud.osc("server", "create", "--image", "suid-image", "--flavor", "m1.nano", "--key-name",
                         "private-key", "--user-data", str(tmp_path / "ud"), "private-one")["id"])
    vm = None
    try:
        if WITH_QEMU:
            wait_tiny_vm(cloud)
            vm = str(cloud.osc("server", "create", "--image", "tiny-vm", "--flavor", "m1.tiny", "--key-name",
                               "private-key", "--user-data", str(tmp_path / "ud"), "private-vm")["id"])
            wait_status(cloud, vm, "ACTIVE", timeout=180)
        wait_status(cloud, uuid, "ACTIVE", timeout=120)
        state = cloud.state_dir
        # 1. Modes: the state dir 0700 (narrowed from 0755), and nothing below it shared but the exceptions.
        assert state.stat().st_mode & 0o777 == 0o700
        for rel in ("cumulo.sqlite", "clouds.yaml", "runc", "runc-state", "images", f"runc/{uuid}",
                    f"runc/{uuid}/console.log", f"runc/{uuid}/config.json"):
            mode = (state / rel).stat().st_mode & 0o777
            assert mode & 0o077 == 0, f"{rel} is {oct(mode)}"
        if vm is not None:
            vm_files = [p for p in (state / "qemu" / vm).iterdir() if not p.is_symlink()]
            assert vm_files and (state / "qemu" / vm).stat().st_mode & 0o777 == 0o700
        problems, met = _walk(state)
        assert problems == [], "shared with other host users:\n" + "\n".join(problems)
        assert any(k.startswith("runc/") and "config-drive" in k for k in met), met  # the walk saw the drive
        # 2. Mount flags: the container's root is nosuid,nodev in the host's view.
        merged = str(state / "runc" / uuid / "rootfs")
        with open("/proc/self/mountinfo") as fh:
            lines = [ln for ln in fh if ln.split()[4] == merged]
        assert len(lines) == 1, lines
        assert {"nosuid", "nodev"} <= set(lines[0].split()[5].split(",")), lines[0]
        suid = state / "runc" / uuid / "rootfs" / "opt" / "suid-busybox"
        assert suid.stat().st_mode & 0o4000  # the tenant's bit is there; nosuid and the modes make it inert
        # 3. The host user nobody: cannot list the state dir, nor reach the root or run the binary.
        res = subprocess.run([*NOBODY, "ls", str(state)], capture_output=True, text=True,  # noqa: S603
                             timeout=30, check=False)
        assert res.returncode != 0 and "Permission denied" in res.stderr, res
        res = subprocess.run([*NOBODY, str(suid), "id", "-u"], capture_output=True, text=True,  # noqa: S603
                             timeout=30, check=False)
        assert res.returncode != 0 and "Permission denied" in res.stderr, res
        assert "uid=0" not in res.stdout
        res = subprocess.run([*NOBODY, "cat", str(state / "cumulo.sqlite")], capture_output=True,  # noqa: S603
                             text=True, timeout=30, check=False)
        assert res.returncode != 0, res
    finally:
        for sid in (uuid, vm):
            if sid is not None and server(cloud, sid) is not None:
                cloud.osc_run("server", "delete", sid)
        for sid in (uuid, vm):
            if sid is not None:
                wait_gone(cloud, sid, timeout=90)


def _fifo_passwd_image(out: Path) -> Path:
    from cumulo.image.demo.busybox import busybox_layer
    from cumulo.oci.docker import write_docker_archive
    from cumulo.oci.layout import host_arch

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        info = tarfile.TarInfo("etc/passwd")
        info.type, info.mode, info.mtime = tarfile.FIFOTYPE, 0o644, 1_700_000_000
        tf.addfile(info)
    config = {"architecture": host_arch(), "os": "linux",
              "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh", "-c", "exec sleep 3600"], "User": "app"}}
    return write_docker_archive(out, [busybox_layer(), buf.getvalue()], config, "cumulo/fifo-passwd:test")


def test_an_image_whose_passwd_is_a_fifo_fails_its_build_and_the_cloud_keeps_answering(
    cloud: CumuloCloud, tmp_path: Path,
) -> None:
    made = cloud.osc("image", "create", "--container-format", "docker", "--disk-format", "raw",
                     "--property", "hypervisor_type=container", "--file", str(_fifo_passwd_image(tmp_path / "f.tar")),
                     "fifo-passwd")
    wait_image_active(cloud, made["id"])
    uuid = str(cloud.osc("server", "create", "--image", "fifo-passwd", "--flavor", "m1.nano", "fifo-one")["id"])
    try:
        # Polled through the API: a loop blocked on the FIFO would answer nothing (the old bug).
        shown = wait_status(cloud, uuid, "ERROR", timeout=120)
        assert "/etc/passwd is a FIFO" in str(shown.get("fault")), shown.get("fault")
        assert cloud.osc("server", "list")  # still answering
    finally:
        if server(cloud, uuid) is not None:
            cloud.osc_run("server", "delete", uuid)
        wait_gone(cloud, uuid, timeout=60)
