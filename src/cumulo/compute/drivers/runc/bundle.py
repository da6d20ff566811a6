"""The OCI runtime config (config.json) of one container, built from an InstanceSpec and its image.

Isolation: private pid, mount, uts, ipc and network namespaces (the network namespace is the
server's named one, `netns.py`, holding only loopback until NICs are plugged), runc's default
capabilities, no new privileges, and no host path mounted but the server's own config drive
(read-only at /mnt/config, `configdrive.py`): otherwise only proc, sysfs (read-only), a tmpfs /dev
and the container's own cgroup (read-only).
Limits: memory = flavor RAM (no extra swap), CPU quota = vCPUs x period, a pids limit.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from cumulo.compute.drivers import rootfs as rootfs_files
from cumulo.compute.drivers.base import InstanceSpec
from cumulo.errors import DriverError
from cumulo.oci import ImageConfig

CPU_PERIOD_US = 100_000
DEFAULT_PIDS_LIMIT = 1024
DEFAULT_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
# What `runc spec` grants: enough for a service, nothing that reaches the host.
DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
MASKED_PATHS = [
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def process_args(spec: InstanceSpec, image: ImageConfig) -> list[str]:
    """The image's Entrypoint + Cmd, or the `os_command_line` image property (nova-docker's override)."""
    props = spec.image.properties if spec.image is not None else {}
    override = props.get("os_command_line")
    if override:
        try:
            args = shlex.split(str(override))
        except ValueError as exc:
            raise DriverError(f"Image property os_command_line cannot be parsed: {exc}") from None
    else:
        args = list(image.argv)
    if not args:
        raise DriverError("The image has no command (no Entrypoint, Cmd or os_command_line property)")
    return args


CONTAINER_UMASK = 0o022
PASSWD_MAX_BYTES = 1 << 20  # /etc/passwd and /etc/group of an image: more is refused


def _image_file(rootfs: Path, rel: str) -> list[list[str]] | None:
    """The colon-separated lines of an image's /etc/passwd or /etc/group, read inside the root
    (rootfs.read_file: links stay in the image, FIFOs and devices are refused); None if missing."""
    try:
        data = rootfs_files.read_file(rootfs, rel, max_bytes=PASSWD_MAX_BYTES)
    except FileNotFoundError:
        return None
    except rootfs_files.UnsafeFile as exc:
        raise DriverError(f"Refusing the image: {exc.strerror}") from None
    except OSError as exc:
        raise DriverError(f"Cannot read the image's /{rel}: {exc.strerror or exc}") from None
    return [line.split(":") for line in data.decode(errors="replace").splitlines()]


def resolve_user(image: ImageConfig, rootfs: Path) -> dict[str, int]:
    """uid/gid of the image's User, as Docker reads it: "uid[:gid]", or names from the image's own
    /etc/passwd and /etc/group ("name", "name:group", "uid:group"); root if unset.

    Blocking (it reads the image): call in a thread.
    """
    raw = image.user.strip()
    if not raw:
        return {"uid": 0, "gid": 0}
    name, _, group = raw.partition(":")
    uid: int | None = int(name) if name.isdigit() else None
    gid: int | None = int(group) if group.isdigit() else (0 if not group and uid is not None else None)
    if uid is None:
        for fields in _image_file(rootfs, "etc/passwd") or []:
            if len(fields) >= 4 and fields[0] == name and fields[2].isdigit() and fields[3].isdigit():
                uid = int(fields[2])
                if not group:
                    gid = int(fields[3])
                break
        else:
            raise DriverError(f"Image user {raw!r} is not in the image's /etc/passwd")
    if gid is None:
        for fields in _image_file(rootfs, "etc/group") or []:
            if len(fields) >= 3 and fields[0] == group and fields[2].isdigit():
                gid = int(fields[2])
                break
        else:
            raise DriverError(f"Image group {group!r} (of user {raw!r}) is not in the image's /etc/group")
    return {"uid": uid, "gid": gid}


def runtime_config(
    spec: InstanceSpec, image: ImageConfig, rootfs: Path, *, cgroups_path: str, pids_limit: int = DEFAULT_PIDS_LIMIT,
    netns_path: str | None = None, extra_mounts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """config.json for runc; `root.path` is "rootfs" relative to the bundle (the overlay mount).

    Blocking: a named image user is looked up in the image's /etc/passwd (call in a thread).

    `netns_path` names an existing network namespace to join (else runc makes an anonymous one);
    `extra_mounts` come after the standard ones (the config drive).
    """
    env = list(image.env) or list(DEFAULT_ENV)
    if not any(e.startswith("HOSTNAME=") for e in env):
        env.append(f"HOSTNAME={spec.hostname}")
    # A server on a network may ping, as Docker's containers may: raw sockets reach only its own
    # namespace (port security drops what it would spoof). Without NICs, today's set.
    caps = list(DEFAULT_CAPS) + (["CAP_NET_RAW"] if spec.nics else [])
    memory = spec.flavor.memory_mb * 1024 * 1024
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            # Docker's umask for the container's processes, whatever the cloud's own (077).
            "user": {**resolve_user(image, rootfs), "umask": CONTAINER_UMASK},
            "args": process_args(spec, image),
            "env": env,
            "cwd": image.working_dir or "/",
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": spec.hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            *(extra_mounts or []),
        ],
        "linux": {
            "cgroupsPath": cgroups_path,
            "resources": {
                "devices": [{"allow": False, "access": "rwm"}],
                "memory": {"limit": memory, "swap": memory},
                "cpu": {"quota": spec.flavor.vcpus * CPU_PERIOD_US, "period": CPU_PERIOD_US},
                "pids": {"limit": pids_limit},
            },
            "namespaces": [
                {"type": t, "path": netns_path} if t == "network" and netns_path else {"type": t}
                for t in ("pid", "network", "ipc", "uts", "mount")
            ],
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
    }


LIMIT_KEYS = ("memory", "cpu", "pids")


def keep_limits(config: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """`config` with the memory/cpu/pids limits of `current` (a server's config.json, maybe resized)."""
    old = (current.get("linux") or {}).get("resources") or {}
    resources = config["linux"]["resources"]
    for key in LIMIT_KEYS:
        if isinstance(old.get(key), dict):
            resources[key] = old[key]
    return config
