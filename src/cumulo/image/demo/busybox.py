"""The busybox demo image: a small deterministic Docker-format image, built offline.

`cumulo image build busybox` writes it to a file; the demo seeder registers it at start-up.

The root is Debian's static busybox (`busybox-static`) plus applet symlinks, /etc/passwd,
/etc/group and the usual empty dirs. Every mtime, owner and name order is fixed, so the same
busybox binary always gives the same image bytes (and so the same content key in the store).
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from cumulo.oci.docker import FIXED_MTIME, write_docker_archive
from cumulo.oci.layout import host_arch

BUSYBOX = Path("/bin/busybox")
REPO_TAG = "cumulo/busybox:latest"
APPLETS = (
    "sh", "ash", "ls", "cat", "echo", "sleep", "hostname", "mkdir", "ps", "id", "env", "true", "false",
    "uname", "whoami", "pwd", "rm", "rmdir", "cp", "mv", "ln", "touch", "grep", "sed", "awk", "head", "tail",
    "wc", "sort", "find", "xargs", "date", "df", "du", "free", "top", "kill", "ip", "ping", "wget", "vi",
    "mount", "chmod", "chown", "tr", "cut", "tee", "printf", "test", "stat", "sync", "nc", "netstat",
    "dmesg", "basename", "dirname", "which", "less", "more", "uptime", "seq",
)
DIRS = {"bin": 0o755, "dev": 0o755, "etc": 0o755, "home": 0o755, "proc": 0o755, "root": 0o700,
        "run": 0o755, "sys": 0o755, "tmp": 0o1777, "var": 0o755}
PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = b"root:x:0:\nnogroup:x:65534:\n"
# The container runs until it is stopped (a PaaS node lives longer than one sleep).
CMD = ["/bin/sh", "-c", "echo hello from cumulo busybox; hostname; while :; do sleep 3600; done"]


class BusyboxMissing(Exception):
    pass


def _info(name: str, kind: bytes, mode: int, size: int = 0, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.linkname = kind, mode, size, linkname
    info.mtime, info.uid, info.gid, info.uname, info.gname = FIXED_MTIME, 0, 0, "root", "root"
    return info


def busybox_layer(busybox: Path = BUSYBOX) -> bytes:
    """The single layer tar of the demo image (uncompressed, deterministic)."""
    if not busybox.is_file():
        raise BusyboxMissing(
            f"{busybox} not found: install Debian's static busybox first (apt-get install busybox-static)."
        )
    binary = busybox.read_bytes()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, mode in sorted(DIRS.items()):
            tf.addfile(_info(f"{name}/", tarfile.DIRTYPE, mode))
        tf.addfile(_info("bin/busybox", tarfile.REGTYPE, 0o755, len(binary)), io.BytesIO(binary))
        for applet in sorted(set(APPLETS)):
            tf.addfile(_info(f"bin/{applet}", tarfile.SYMTYPE, 0o777, linkname="busybox"))
        for name, data in (("etc/group", GROUP), ("etc/passwd", PASSWD)):
            tf.addfile(_info(name, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
    return buf.getvalue()


def build_busybox(output: Path, busybox: Path = BUSYBOX) -> Path:
    """Write the demo image as a `docker save` tarball to `output`."""
    config = {
        "architecture": host_arch(),
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {
            "Env": ["PATH=/bin", "HOME=/root"],
            "Cmd": CMD,
            "WorkingDir": "/",
            "User": "0:0",
        },
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "cumulo image build busybox"}],
    }
    return write_docker_archive(output, [busybox_layer(busybox)], config, REPO_TAG)
