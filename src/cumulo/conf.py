"""One typed settings object. Only this module reads the environment.

Precedence: explicit overrides (CLI flags) > CUMULO_* environment > settings file (YAML) > defaults.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Settings:
    state_dir: Path = Path("./state")
    host: str = "127.0.0.1"
    port: int = 8080
    # The Prometheus endpoint (GET /metrics, admins only): its own listen address, loopback by
    # default, never the API port. Port 0 turns it off. See docs/operations.md ("Monitoring").
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9180
    # SQLAlchemy URL; empty means SQLite file in the state dir.
    database: str = ""
    # "inproc" or an amqp:// URL (later).
    transport: str = "inproc"
    region: str = "RegionOne"
    # Name of the compute host this process runs an agent for.
    host_name: str = "cumulo-local"
    # Drivers of the local compute host, a comma list: "runc" (real containers), "qemu" (real VMs),
    # "fake" (simulated), e.g. "runc,qemu"; each becomes one compute node of the host. "auto":
    # runc when this process is root and `runc` is on PATH, plus qemu when qemu-system-x86_64 and
    # qemu-img are installed; fake (with a warning in the log) when neither can run.
    local_driver: str = "auto"
    # The local nodes share one pool of the machine's CPUs, memory and disk; each node weighs its
    # claims by its own allocation ratios: "runc:cpu=50,qemu:cpu=2,qemu:ram=1.0" (cpu, ram, disk).
    # Built-in: runc cpu 50, qemu cpu 2; what is not named comes from cpu_/ram_/disk_allocation_ratio.
    # See docs/architecture.md ("One host, one pool") and docs/operations.md.
    local_node_ratios: str = ""
    fake_hosts: int = 0
    fake_host_vcpus: int = 16
    fake_host_ram_mb: int = 32768
    fake_host_disk_gb: int = 500
    # Simulated latency of fake driver operations (seconds); for crash and scale tests.
    fake_spawn_delay: float = 0.0
    # Nodes without a ratio of their own (fake hosts, the fake driver; see local_node_ratios).
    cpu_allocation_ratio: float = 4.0
    ram_allocation_ratio: float = 1.0
    disk_allocation_ratio: float = 1.0
    token_ttl_seconds: int = 3600
    # Keystone's [security_compliance] options, off by default as in Keystone (see
    # docs/operations.md, "Identity security compliance"): after this many consecutive failed
    # password logins a user is locked out for identity_lockout_duration seconds (0: until an admin
    # sets enabled=true on it); a self-service password change may not repeat one of the last N
    # passwords (at most 24), nor come sooner than N days after the previous self-service one.
    identity_lockout_failure_attempts: int = 0
    identity_lockout_duration: int = 1800
    identity_unique_last_password_count: int = 0
    identity_minimum_password_age_days: int = 0
    # The largest image upload, in bytes (Glance's image_size_cap; 1 TiB). JSON bodies: 1 MiB.
    image_size_cap: int = 1 << 40
    power_sync_interval: float = 5.0
    # Seconds between collections of image copies no live image and no server uses (unpacked
    # container roots, verified QEMU bases) on each compute host; 0: never (Nova's
    # [image_cache] manager_interval). See docs/operations.md.
    image_cache_interval: float = 300.0
    # A copy handed to a spawn less than this many seconds ago is never collected (it may not be
    # mounted or backed onto yet); Nova's remove_unused_original_minimum_age_seconds.
    image_cache_min_age: float = 600.0
    # Seconds a deleted server stays SOFT_DELETED (restorable) before the compute agent reclaims it
    # (Nova's reclaim_instance_interval). 0, the default, deletes at once.
    reclaim_instance_interval: int = 0
    default_availability_zone: str = "nova"
    # Default quotas per project (Nova's defaults).
    quota_instances: int = 10
    quota_cores: int = 20
    quota_ram: int = 51200
    quota_key_pairs: int = 100
    quota_metadata_items: int = 128
    quota_server_groups: int = 10
    quota_server_group_members: int = 10
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def database_url(self) -> str:
        return self.database or f"sqlite+aiosqlite:///{self.state_dir / 'cumulo.sqlite'}"

    @property
    def public_url(self) -> str:
        """Where local clients reach the cloud (clouds.yaml). A wildcard bind is reached on loopback;
        remote clients get URLs from the catalog, which uses the address they connected to."""
        host = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(self.host, self.host)
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _coerce(kind: Any, raw: Any) -> Any:
    text = str(raw)
    if kind in (int, "int"):
        return int(text)
    if kind in (float, "float"):
        return float(text)
    if kind in (bool, "bool"):
        return text.lower() in ("1", "true", "yes", "on")
    if kind in (Path, "Path"):
        return Path(text)
    return raw


def load(config_file: Path | None = None, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
    env = dict(os.environ) if env is None else env
    values: dict[str, Any] = {}
    if config_file is not None and config_file.exists():
        values.update(yaml.safe_load(config_file.read_text()) or {})
    known = {f.name: f for f in fields(Settings)}
    for name in known:
        key = "CUMULO_" + name.upper()
        if key in env:
            values[name] = env[key]
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = set(values) - set(known)
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
    typed = {k: _coerce(known[k].type, v) for k, v in values.items()}
    return Settings(**typed)
