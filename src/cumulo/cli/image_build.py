"""`cumulo image build busybox`: a small Docker-format demo image, built offline (tiny-vm: image_build_vm).

The root is Debian's static busybox (`busybox-static`) plus applet symlinks, /etc/passwd,
/etc/group and the usual empty dirs. Every mtime, owner and name order is fixed, so the same
busybox binary always gives the same image bytes (and so the same content key in the store).
"""

from __future__ import annotations

import argparse
import io
import sys
import tarfile
from pathlib import Path

from cumulo.oci.docker import FIXED_MTIME, write_docker_archive
from cumulo.oci.layout import host_arch

BUSYBOX = Path("/bin/busybox")
REPO_TAG = "cumulo/busybox:latest"
DEFAULT_OUTPUT = Path("busybox.tar")
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
CMD = ["/bin/sh", "-c", "echo hello from cumulo busybox; hostname; exec sleep 3600"]


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


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]  # argparse's private generic
    image = sub.add_parser("image", help="container image tools")
    image_sub = image.add_subparsers(dest="image_command", required=True)
    build = image_sub.add_parser("build", help="build a demo image offline")
    build.add_argument("name", choices=["busybox", "tiny-vm"], help="which image to build")
    build.add_argument("--output", "-o", type=Path, default=None,
                       help="where to write it (busybox: busybox.tar; tiny-vm: a directory, ./tiny-vm)")
    build.add_argument("--cache-dir", type=Path, default=None,
                       help="tiny-vm: where the kernel .deb is cached (./tiny-vm-cache); a cached kernel builds offline")


def run(args: argparse.Namespace) -> int:
    if args.name == "tiny-vm":
        from cumulo.cli.image_build_vm import run_tiny_vm

        return run_tiny_vm(args.output or Path("tiny-vm"), args.cache_dir or Path("tiny-vm-cache"))
    args.output = args.output or DEFAULT_OUTPUT
    try:
        out = build_busybox(args.output)
    except BusyboxMissing as exc:
        print(f"cumulo image build: {exc}", file=sys.stderr)
        return 1
    print(f"{out} ({out.stat().st_size} bytes, docker save format, tag {REPO_TAG})")
    print(f"  openstack image create --container-format docker --disk-format raw --file {out} busybox")
    return 0
