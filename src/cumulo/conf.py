"""One typed settings object. Only this module reads the environment.

Precedence: explicit overrides (CLI flags) > CUMULO_* environment > settings file (YAML) > defaults.

The less common knobs of one driver or subsystem sit, flat, under the settings file's `extra:`
mapping (`runc_stop_grace: 1.0`). They are parsed once, when the Settings object is made, into one
typed dataclass per driver or subsystem (`conf.runc.stop_grace`, `conf.scheduler.filters`, ...);
an unknown key, or a value of the wrong type, is a ValueError that names the key.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import yaml


def _key(name: str) -> dict[str, str]:
    """Field metadata: the `extra:` key of a section field whose key is not PREFIX + its name."""
    return {"key": name}


@dataclass(frozen=True)
class RuncSettings:
    """The runc driver (`extra` keys runc_*)."""

    PREFIX: ClassVar[str] = "runc_"
    # Seconds between SIGTERM and SIGKILL when a container stops (a shell as pid 1 ignores SIGTERM).
    stop_grace: float = 10.0
    # The pids cgroup limit of every container.
    pids_limit: int = 1024
    # Bound of each container's console log.
    console_max_bytes: int = 1 << 20
    # "auto" (CRIU where `criu check` passes, else the freezer) or "freezer".
    suspend: str = "auto"
    # Test hook: seconds each spawn waits (a cancellable spawn, for crash tests).
    spawn_delay: float = 0.0
    # Each container's root disk: "auto", "ext4" or "none" (drivers/runc/rootdisk.py).
    root_disk: str = "auto"
    # The root disk of a container whose flavor has root_gb 0.
    default_root_gb: int = 1


@dataclass(frozen=True)
class QemuSettings:
    """The QEMU driver (`extra` keys qemu_*)."""

    PREFIX: ClassVar[str] = "qemu_"
    # "auto" (KVM only where a probe guest really runs under it), "kvm" or "tcg".
    accel: str = "auto"
    # The longest a hard reboot of a q35 VM waits for SeaBIOS's own reset.
    boot_timeout: float = 90.0
    # Seconds an ACPI power-down may take before QEMU is quit.
    stop_timeout: float = 60.0
    # Bound of each VM's serial console log.
    console_max_bytes: int = 1 << 20
    # Machine type of disk images and bzImage kernels; an image's hw_machine_type wins.
    machine: str = "q35"
    # Machine of direct-kernel (AKI/ARI) images whose kernel has a PVH entry: "microvm" or "q35".
    direct_kernel_machine: str = "microvm"
    # The TSC rate (kHz) a microvm guest under TCG is told; 0: measured at start.
    tsc_khz: int = 0
    # Test hook: seconds each VM spawn waits (crash tests).
    spawn_delay: float = 0.0


@dataclass(frozen=True)
class FakeSettings:
    """The fake driver (`extra` keys fake_*; the fake hosts' sizes are top-level settings)."""

    PREFIX: ClassVar[str] = "fake_"
    # The image hypervisor_type values fake hosts accept; empty: the driver's default list.
    instance_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConductorSettings:
    """The conductor (`extra` keys conductor_*)."""

    PREFIX: ClassVar[str] = "conductor_"
    # Builds in flight at once: those waiting for a select turn form its batch (one select_batch
    # message, one claim transaction; compute/conductor/batching.py, placement/batch.py). A waiting
    # build holds no DB connection; more than this only queue.
    build_concurrency: int = 32
    # The periodic sweep (compute/conductor/sweep.py): a build still in task_state "scheduling"
    # this long after its last change lost its cast (the broker or a process died between the
    # commit and the send) and is driven again; every `sweep_interval` seconds, by one conductor.
    stuck_build_seconds: float = 120.0
    sweep_interval: float = 30.0
    # Every other task state (compute/conductor/stuck.py): a server whose task made no progress
    # (its row's updated_at, and its migration record's for a move) for this long is driven again
    # where its message is idempotent, else settled from its host's truth with a fault naming the
    # task that timed out. Above any step that runs without writing (a live migration's 300 s
    # steps); the agent skips a server it is still working on. 0: never.
    task_timeout_seconds: float = 600.0
    # Nova's resize_confirm_window (compute/conductor/auto_confirm.py): a resize or cold migration
    # left in VERIFY_RESIZE this many seconds is confirmed by the sweep; 0 (Nova's default): never.
    resize_confirm_window: float = 0.0


@dataclass(frozen=True)
class SchedulerSettings:
    """The scheduler's filters and weighers (Nova's [filter_scheduler] names)."""

    PREFIX: ClassVar[str] = ""
    # Host filters and weighers in order, by name; empty: the scheduler's defaults.
    filters: tuple[str, ...] = field(default=(), metadata=_key("scheduler_filters"))
    weighers: tuple[str, ...] = field(default=(), metadata=_key("scheduler_weighers"))
    # Weigher multipliers: positive spreads, negative stacks.
    ram_weight_multiplier: float = 1.0
    cpu_weight_multiplier: float = 1.0
    disk_weight_multiplier: float = 1.0
    soft_affinity_weight_multiplier: float = 1.0
    soft_anti_affinity_weight_multiplier: float = 1.0
    # Scale (scheduler/cache.py): from this many compute nodes on, the scheduler keeps the host
    # states in memory (consumed by its own picks, reloaded every host_cache_seconds, after a lost
    # claim and before a NoValidHost) instead of reading them all per request. 1: every cloud
    # size (was 100: below it each request read every host, five queries on the boot path).
    host_cache_min_hosts: int = 1
    host_cache_seconds: float = 10.0
    # Nova's max_placement_results: hosts filtered and weighed per request at most (a random
    # subset, plus the hosts of the request's server group); all of them when nothing in it passes.
    max_candidates: int = 16


@dataclass(frozen=True)
class ServiceGroupSettings:
    """Service liveness (Nova's servicegroup options)."""

    PREFIX: ClassVar[str] = ""
    # Seconds without a heartbeat before a service counts as down.
    service_down_time: float = 60.0
    # Seconds between service heartbeats.
    report_interval: float = 10.0


@dataclass(frozen=True)
class ReservedHostSettings:
    """Capacity every host keeps for itself (Nova's reserved_host_*; `extra` keys reserved_host_*)."""

    PREFIX: ClassVar[str] = "reserved_host_"
    cpus: int = 0
    memory_mb: int = 0
    disk_gb: int = 0


@dataclass(frozen=True)
class DemoImageSettings:
    """The demo images seeded at start-up."""

    PREFIX: ClassVar[str] = ""
    # Register and build the tiny-vm demo image: "auto", "on" or "off" (image/demo).
    tiny_vm_image: str = "auto"
    # Where the kernel package is cached; None: ~/.cache/cumulo/build ($XDG_CACHE_HOME honoured).
    image_build_cache: Path | None = None


@dataclass(frozen=True)
class PaasSettings:
    """The PaaS manager (`extra` keys paas_*). See docs/paas.md."""

    PREFIX: ClassVar[str] = "paas_"
    # Hosts (names or addresses) a task's callback URL may name besides loopback literals.
    callback_hosts: tuple[str, ...] = ()
    # Seconds a new node may take to become ACTIVE and answer exec.
    boot_timeout: float = 300.0
    # Seconds one recipe run may take (a product's `timeout` metadata may lower or raise it, <= 3600).
    exec_timeout: float = 300.0
    # Seconds a whole task may take before it fails (and rolls back).
    task_timeout: float = 3600.0
    # Seconds between autoscaling evaluations.
    autoscale_interval: float = 5.0
    # Seconds an engine's lease on a running task lasts without a heartbeat (another engine or a
    # restart takes the task over after it).
    lease: float = 30.0
    # Steps of one task run at once.
    step_concurrency: int = 8
    # "on": a scalable tier's first configured node becomes a template image new nodes boot from.
    templates: str = "on"


# Settings attribute -> the typed section it holds, parsed from `extra`.
SECTIONS: dict[str, type[Any]] = {
    "runc": RuncSettings,
    "qemu": QemuSettings,
    "fake": FakeSettings,
    "conductor": ConductorSettings,
    "scheduler": SchedulerSettings,
    "servicegroup": ServiceGroupSettings,
    "reserved_host": ReservedHostSettings,
    "demo_images": DemoImageSettings,
    "paas": PaasSettings,
}
# `extra` keys that are older spellings of a top-level setting (and win over it, as they did).
ALIASES = ("image_size_cap",)


def _section_keys(cls: type[Any]) -> dict[str, str]:
    """`extra` key -> field name of one section."""
    return {f.metadata.get("key", cls.PREFIX + f.name): f.name for f in fields(cls)}


def _names(raw: Any) -> tuple[str, ...]:
    """A list of names: a list, or a comma-separated string."""
    return tuple(n.strip() for n in raw.split(",")) if isinstance(raw, str) else tuple(str(n) for n in raw)


_LABELS: dict[Any, str] = {
    float: "a number",
    int: "an integer",
    str: "a string",
    tuple[str, ...]: "a list of names (or a comma-separated string)",
    Path | None: "a path",
}


def _typed(key: str, kind: Any, raw: Any) -> Any:
    try:
        if kind is float:
            return float(raw)
        if kind is int:
            return int(raw)
        if kind is str:
            return str(raw)
        if kind == tuple[str, ...]:
            return _names(raw)
        if kind == Path | None:
            return Path(str(raw))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"setting extra.{key}: {raw!r} is not {_LABELS.get(kind, kind)}") from exc
    raise TypeError(f"setting extra.{key}: no parser for {kind}")  # a section field of a new type


def parse_extra(extra: Mapping[str, Any]) -> dict[str, Any]:
    """The typed sections (Settings attribute -> dataclass) of an `extra` mapping. An unset, null
    or empty value keeps the field's default; an unknown key is a ValueError naming it."""
    if not isinstance(extra, Mapping):
        raise ValueError(f"setting extra: expected a mapping of keys to values, not {extra!r}")
    known = set(ALIASES)
    out: dict[str, Any] = {}
    for attr, cls in SECTIONS.items():
        keys = _section_keys(cls)
        known.update(keys)
        hints = typing.get_type_hints(cls)
        values = {name: _typed(key, hints[name], extra[key]) for key, name in keys.items()
                  if extra.get(key) not in (None, "", [], ())}
        out[attr] = cls(**values)
    unknown = sorted(set(extra) - known)
    if unknown:
        raise ValueError(f"unknown setting under extra: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return out


@dataclass(frozen=True)
class Settings:
    state_dir: Path = Path("./state")
    host: str = "127.0.0.1"
    port: int = 8080
    # The Prometheus endpoint (GET /metrics, admins only): its own listen address, loopback by
    # default, never the API port. Port 0 turns it off. See docs/operations.md ("Monitoring").
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9180
    # SQLAlchemy URL; empty means SQLite file in the state dir. postgresql:// and postgres:// run on
    # asyncpg (cumulo.db.normalise_url); see docs/operations.md "The database: PostgreSQL".
    database: str = ""
    # PostgreSQL connection pool of each process (ignored on SQLite): steady connections, and the
    # extra ones a burst may open; a request that finds none free within 10 s is a 503.
    database_pool_size: int = 10
    database_max_overflow: int = 20
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
    # The networks `cumulo up` makes at first start (as DevStack does): the shared external network
    # `public` on external_cidr, its gateway address on the host's end of one veth pair (the host
    # link; external_link false, or `cumulo up --no-external`, leaves it off), and for the demo
    # project a `private` network on private_cidr with a router to public (SNAT on).
    external_cidr: str = "172.24.4.0/24"
    external_link: bool = True
    private_cidr: str = "10.0.0.0/26"
    # Scale out (issue 14, docs/architecture.md "Scale out (issue 14): hosts and VXLAN"): this
    # host's own address on the underlay (VXLAN tunnels' local end, UDP 4789; recorded as
    # compute_nodes.host_ip); empty: one host, no VXLAN devices. l3_host: the compute host that
    # carries routers, floating IPs and the external network (empty: the local host in `cumulo up`).
    underlay_ip: str = ""
    l3_host: str = ""
    # The VNIs tenant networks get, "first:last" (Neutron's [ml2_type_vxlan] vni_ranges, one range).
    # VXLAN devices are unique per VNI in a namespace: clouds sharing one (tests on one machine
    # whose L3 hosts are all in the root namespace) need ranges apart. Admins may set any VNI.
    vni_ranges: str = "1:16777215"
    # This host's interface on each physical network, "physnet:ifname,..." (Neutron's Linux bridge
    # agent's physical_interface_mappings, e.g. "public:eth1"): a flat network on that physnet
    # (`public` is flat on physnet "public") is bridged to it on this host, and only hosts that map
    # a network's physnet take servers on it (netplane/physnet.py). Per host, as underlay_ip.
    physical_interface_mappings: str = ""
    # Separate processes (issue 14, docs/operations.md "Several processes and machines"): the
    # compute host whose volume worker takes new volumes (empty: host_name, the local host in
    # `cumulo up`); set it in the shared settings file of a split cloud.
    volume_host: str = ""
    # Images and transfers (issue 14, docs/architecture.md "Scale out (issue 14): images and
    # transfers"). api_url: an API process this compute host reaches (e.g. http://198.18.0.1:8080);
    # a `cumulo compute` host downloads image bytes from its /image/v2 into
    # <state_dir>/image-cache/ and uploads snapshots there. transfer_port: the destination agent's
    # migration transfer endpoint on underlay_ip; transfer_max_bytes bounds one file or tar stream,
    # transfer_max_entries one tar's members.
    api_url: str = ""
    transfer_port: int = 8790
    transfer_max_bytes: int = 1 << 40
    transfer_max_entries: int = 1_000_000
    # Live migration (docs/architecture.md "Scale out (issue 14): live migration"): the ports a
    # destination's incoming QEMU listens on (memory stream and NBD disk export), bound to
    # underlay_ip only (127.0.0.1 without one); libvirt's range. The source must reach them.
    live_migration_ports: str = "49152-49215"
    # Volumes attached from another host (docs/architecture.md "Scale out (issue 14): volumes
    # from any host"): the ports the volume host's NBD exports listen on (one per attachment to a
    # server on another host), bound to underlay_ip only; NBD's own port first. Consumers reach them.
    volume_export_ports: str = "10809-10872"
    # The shared default IPv4 subnet pool made at first start (DevStack's shared-default-subnetpool-v4),
    # from which get-me-a-network (auto-allocated-topology) takes /default_subnetpool_prefixlen
    # subnets; `public` is the default external network. An empty cidr makes no pool.
    default_subnetpool_cidr: str = "10.1.0.0/16"
    default_subnetpool_prefixlen: int = 26
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
    # The cost of new argon2id password hashes: passes, memory (KiB), lanes. The defaults are
    # argon2-cffi's (RFC 9106's low-memory profile, ~0.1 s of CPU a login). Keystone's
    # password_hash_rounds: a stored hash names its own cost, so a change never breaks a login.
    password_hash_time_cost: int = 3
    password_hash_memory_kib: int = 65536
    password_hash_parallelism: int = 4
    # The largest image upload, in bytes (Glance's image_size_cap; 1 TiB). JSON bodies: 1 MiB.
    image_size_cap: int = 1 << 40
    power_sync_interval: float = 5.0
    # Nova's force_config_drive: every VM (QEMU driver) gets a config drive (label config-2). Off,
    # a VM gets one only when its user asks (server create --use-config-drive) or its image has
    # img_config_drive=mandatory; the guest then reads the metadata service (cloud-init's
    # OpenStack datasource: DHCP on the first NIC, then http://169.254.169.254/). Cumulo's default
    # is on (Nova's is off): the tiny VM boots faster from the drive.
    force_config_drive: bool = True
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
    # The settings file's `extra:` mapping as written. Read the typed sections below instead.
    extra: dict[str, Any] = field(default_factory=dict)
    # The typed sections, parsed from `extra` when the object is made (SECTIONS).
    runc: RuncSettings = field(init=False)
    qemu: QemuSettings = field(init=False)
    fake: FakeSettings = field(init=False)
    conductor: ConductorSettings = field(init=False)
    scheduler: SchedulerSettings = field(init=False)
    servicegroup: ServiceGroupSettings = field(init=False)
    reserved_host: ReservedHostSettings = field(init=False)
    demo_images: DemoImageSettings = field(init=False)
    paas: PaasSettings = field(init=False)

    def __post_init__(self) -> None:
        for attr, section in parse_extra(self.extra).items():
            object.__setattr__(self, attr, section)
        if self.extra.get("image_size_cap") not in (None, ""):
            object.__setattr__(self, "image_size_cap", _typed("image_size_cap", int, self.extra["image_size_cap"]))

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


# The settings file when no --config names one (the processes of a split cloud pass it on this way).
CONFIG_ENV = "CUMULO_CONFIG"


def load(config_file: Path | None = None, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
    env = dict(os.environ) if env is None else env
    values: dict[str, Any] = {}
    if config_file is None and env.get(CONFIG_ENV):  # the settings file of `cumulo api --workers N`'s workers
        config_file = Path(env[CONFIG_ENV])
    if config_file is not None and config_file.exists():
        values.update(yaml.safe_load(config_file.read_text()) or {})
    known = {f.name: f for f in fields(Settings) if f.init}
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
