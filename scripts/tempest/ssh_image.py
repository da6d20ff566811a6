"""A container image Tempest can log in to: the busybox demo image plus OpenSSH's sshd.

Tempest's validation (`[validation] run_validation`) boots a server with a keypair, associates a
floating IP and logs in over SSH as `root` with the keypair's private key; the interface attach
tests run only with it. The busybox demo image has no SSH server, so the runner builds this one:

- sshd from Debian's `openssh-server` package (`apt-get download`, or the one apt cached), unpacked,
  never installed on the host, with the shared libraries `ldd` names copied from the host;
- a fixed ed25519 host key made at build time (Tempest does not check host keys);
- Cumulo's containers run without CAP_SYS_CHROOT and CAP_SETGID (bundle.py's DEFAULT_CAPS), which
  OpenSSH's pre-authentication sandbox wants (chroot to /run/sshd, setgroups, then the privsep
  user): the privsep user `sshd` is uid 0 here, and a small LD_PRELOAD library (compiled with the
  host's gcc) makes chroot(), setgroups() and initgroups() succeed without doing anything (a root login
  needs nothing else);
- at start, the server fetches its public key from the metadata service (EC2's
  /latest/meta-data/public-keys/0/openssh-key) into /root/.ssh/authorized_keys, then runs
  `sshd -D -e` (keys only, no PAM, no passwords).
"""

from __future__ import annotations

import glob
import io
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from cumulo.image.demo.busybox import busybox_layer  # noqa: E402
from cumulo.oci.docker import FIXED_MTIME, write_docker_archive  # noqa: E402
from cumulo.oci.layout import host_arch  # noqa: E402

PACKAGES = ("openssh-server", "libwrap0")
SHIM = b"""\
#include <sys/types.h>
#include <grp.h>
#include <unistd.h>
/* sshd's sandbox and session setup, in a container without CAP_SYS_CHROOT / CAP_SETGID: succeed, do nothing. */
int chroot(const char *path) { (void)path; return 0; }
int setgroups(size_t size, const gid_t *list) { (void)size; (void)list; return 0; }
int initgroups(const char *user, gid_t group) { (void)user; (void)group; return 0; }
"""
PASSWD = (b"root:x:0:0:root:/root:/bin/sh\nsshd:x:0:0::/run/sshd:/bin/false\n"
          b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
GROUP = b"root:x:0:\nnogroup:x:65534:\n"
NSSWITCH = b"passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"
SSHD_CONFIG = b"""\
Port 22
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PidFile /run/sshd.pid
AuthorizedKeysFile .ssh/authorized_keys
"""
INIT = b"""\
#!/bin/sh
# Tempest's login: the keypair's public key from the metadata service, then sshd.
mkdir -p /root/.ssh /run/sshd /var/empty
chmod 700 /root/.ssh
i=0
until wget -q -O /root/.ssh/authorized_keys http://169.254.169.254/latest/meta-data/public-keys/0/openssh-key; do
    i=$((i + 1)); [ "$i" -ge 120 ] && break; sleep 1
done
chmod 600 /root/.ssh/authorized_keys
echo "tempest-sshd: $(wc -l < /root/.ssh/authorized_keys) key(s)"
LD_PRELOAD=/lib/tempest-sshd-shim.so exec /usr/sbin/sshd -D -e
"""


def _debs(work: Path) -> list[Path]:
    """The packages' .deb files: downloaded with apt, else from apt's cache."""
    got = subprocess.run(["apt-get", "download", *PACKAGES], cwd=work, capture_output=True)  # noqa: S603,S607
    found = sorted(work.glob("*.deb")) if got.returncode == 0 else []
    if len(found) == len(PACKAGES):
        return found
    cached = []
    for pkg in PACKAGES:
        hits = sorted(glob.glob(f"/var/cache/apt/archives/{pkg}_*_amd64.deb"))
        if not hits:
            raise SystemExit(f"cannot get Debian's {pkg} (apt-get download failed: "
                             f"{got.stderr.decode(errors='replace').strip()})")
        cached.append(Path(hits[-1]))
    return cached


def _info(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size = kind, mode, size
    info.mtime, info.uid, info.gid, info.uname, info.gname = FIXED_MTIME, 0, 0, "root", "root"
    return info


def ssh_layer(work: Path) -> bytes:
    unpacked = work / "root"
    for deb in _debs(work):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)  # noqa: S603,S607
    sshd = unpacked / "usr/sbin/sshd"
    libdirs = ":".join(str(p) for p in unpacked.glob("**/x86_64-linux-gnu") if p.is_dir())
    out = subprocess.run(["ldd", str(sshd)], capture_output=True, check=True, text=True,  # noqa: S603,S607
                         env={"LD_LIBRARY_PATH": libdirs}).stdout
    files: dict[str, bytes] = {"usr/sbin/sshd": sshd.read_bytes()}
    for line in out.splitlines():
        m = re.search(r"(?:=>\s+)?(/\S+)\s+\(0x", line)
        if not m:
            if "not found" in line:
                raise SystemExit(f"sshd needs a library this host lacks: {line.strip()}")
            continue
        path = Path(m.group(1))
        name = str(path).lstrip("/")
        if str(path).startswith(str(unpacked)):  # libwrap, from the unpacked package
            name = str(path.relative_to(unpacked))
        files[name] = path.resolve().read_bytes()
    shim = work / "shim.c"
    shim.write_bytes(SHIM)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(work / "shim.so"), str(shim)], check=True)  # noqa: S603,S607
    files["lib/tempest-sshd-shim.so"] = (work / "shim.so").read_bytes()
    key = work / "ssh_host_ed25519_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "tempest", "-f", str(key)],  # noqa: S603,S607
                   check=True)
    extra = {"etc/passwd": (PASSWD, 0o644), "etc/group": (GROUP, 0o644), "etc/nsswitch.conf": (NSSWITCH, 0o644),
             "etc/ssh/sshd_config": (SSHD_CONFIG, 0o644), "etc/ssh/ssh_host_ed25519_key": (key.read_bytes(), 0o600),
             "sbin/tempest-sshd": (INIT, 0o755)}
    dirs = {"etc/ssh", "run/sshd", "var/empty", "sbin", "usr", "usr/sbin"}
    for name in [*files, *extra]:
        parent = Path(name).parent
        while str(parent) != ".":
            dirs.add(str(parent))
            parent = parent.parent
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for d in sorted(dirs):
            tf.addfile(_info(f"{d}/", tarfile.DIRTYPE, 0o755))
        for name, data in sorted(files.items()):
            tf.addfile(_info(name, tarfile.REGTYPE, 0o755, len(data)), io.BytesIO(data))
        for name, (data, mode) in sorted(extra.items()):
            tf.addfile(_info(name, tarfile.REGTYPE, mode, len(data)), io.BytesIO(data))
    return buf.getvalue()


def build(output: Path) -> Path:
    """Write the image as a `docker save` tarball to `output`."""
    with tempfile.TemporaryDirectory(prefix="tempest-ssh-") as tmp:
        layers = [busybox_layer(), ssh_layer(Path(tmp))]
    config = {
        "architecture": host_arch(), "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/bin:/sbin:/usr/sbin", "HOME=/root"], "Cmd": ["/bin/sh", "/sbin/tempest-sshd"],
                   "WorkingDir": "/", "User": "0:0"},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "scripts/tempest/ssh_image.py"}],
    }
    return write_docker_archive(output, layers, config, "cumulo/tempest-ssh:latest")


if __name__ == "__main__":
    print(build(Path(sys.argv[1] if len(sys.argv) > 1 else "tempest-ssh.tar")))
