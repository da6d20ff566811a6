"""The driver contract: small Protocols a driver implements as far as it can, plus DriverInfo.

A driver declares what it supports in `DriverInfo.capabilities` (none unless it says so: they fail
closed, as in Nova); the manager and the API consult that instead of probing. `CAPABILITY_PROTOCOLS`
names the Protocol each capability stands for, and `driver_for` is the one way the agent reaches a
driver through one of them. Drivers never import the DB, any API or each other: everything they need
arrives in an `InstanceSpec`, and everything they produce is returned.

Contract rules that every driver honours (the contract test suite checks them):
- `spawn` either leaves a running instance or raises DriverError and leaves nothing behind.
- `destroy` of an instance that does not exist succeeds.
- Every operation is idempotent where it can be (power_off of a stopped instance succeeds).
- `list_instances` reports what really exists on the host, so the agent can adopt and reap.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Protocol, overload, runtime_checkable

from cumulo.compute.drivers.execspec import ExecRequest, ExecResult
from cumulo.errors import InvalidState


class PowerState(enum.IntEnum):
    """Nova's power_state values, as stored and shown in OS-EXT-STS:power_state."""

    NOSTATE = 0
    RUNNING = 1
    PAUSED = 3
    SHUTDOWN = 4
    CRASHED = 6
    SUSPENDED = 7


# The "state" field of Nova's standard diagnostics (microversion 2.48) for each power state.
DIAGNOSTICS_STATE = {
    PowerState.NOSTATE: "pending",
    PowerState.RUNNING: "running",
    PowerState.PAUSED: "paused",
    PowerState.SHUTDOWN: "shutdown",
    PowerState.CRASHED: "crashed",
    PowerState.SUSPENDED: "suspended",
}


class Capability(enum.StrEnum):
    POWER = "power"  # power_off / power_on / reboot
    PAUSE = "pause"
    SUSPEND = "suspend"
    RESIZE = "resize"
    REBUILD = "rebuild"
    SNAPSHOT = "snapshot"
    CONSOLE = "console"
    DIAGNOSTICS = "diagnostics"
    METRICS = "metrics"  # sample_instances: per-server usage for Prometheus (the Metrics Protocol)
    NICS = "nics"  # attach_nic / detach_nic on a running server (the Nics Protocol)
    VOLUMES = "volumes"  # attach_volume / detach_volume / extend_volume (the Volumes Protocol)
    EXEC = "exec"  # exec_in: a command inside the guest (the Exec Protocol; PaaS recipes)
    COLD_MIGRATION = "cold_migration"  # a stopped server's disks to another host (the ColdMigration Protocol)
    LIVE_MIGRATION = "live_migration"  # a running server to another host (the LiveMigration Protocol)


@dataclass(frozen=True)
class DriverInfo:
    name: str  # registry name: "fake", "runc", "qemu"
    hypervisor_type: str  # shown by os-hypervisors
    instance_types: tuple[str, ...]  # what images may ask for with hypervisor_type
    version: int = 1
    capabilities: frozenset[Capability] = frozenset()  # fail closed: a driver names what it does
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FlavorSpec:
    vcpus: int
    memory_mb: int
    root_gb: int
    ephemeral_gb: int = 0
    swap: int = 0
    extra_specs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageSpec:
    id: str
    path: str  # local file holding the image bytes (content-addressed store)
    disk_format: str
    container_format: str
    properties: dict[str, Any] = field(default_factory=dict)
    # Direct-kernel boot (the OpenStack AKI/ARI convention): local files of the images named by the
    # kernel_id and ramdisk_id properties, resolved by the agent; "" when the image names none.
    kernel_path: str = ""
    ramdisk_path: str = ""


@dataclass(frozen=True)
class NicSpec:
    """One NIC of a server, as the network side describes it (Incus's device run-config): the
    driver applies it its own way (runc: a veth, QEMU: a tap and a virtio-net NIC; both through
    cumulo.netplane.nic). Names derive from ids only (docs: NET names)."""

    port_id: str
    mac: str  # "fa:16:3e:xx:xx:xx"
    netns: str  # the network's namespace, "cnet-<network uuid>"
    bridge: str  # "br0"
    device: str  # the bridge end: "tap<port hex[:11]>"
    addresses: tuple[str, ...]  # CIDR form, e.g. ("10.0.0.5/24",)
    gateway: str | None  # default route via, or None
    routes: tuple[tuple[str, str], ...] = ()  # (destination cidr, nexthop)
    mtu: int = 1500
    dns: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> NicSpec:
        """A NicSpec from its JSON-shaped dict (the network agent's answer, a driver's record)."""
        return cls(
            port_id=str(doc["port_id"]), mac=str(doc["mac"]), netns=str(doc["netns"]), bridge=str(doc["bridge"]),
            device=str(doc["device"]), addresses=tuple(str(a) for a in doc.get("addresses") or ()),
            gateway=str(doc["gateway"]) if doc.get("gateway") else None,
            routes=tuple((str(r[0]), str(r[1])) for r in doc.get("routes") or ()),
            mtu=int(doc.get("mtu") or 1500), dns=tuple(str(d) for d in doc.get("dns") or ()),
        )


@dataclass(frozen=True)
class DiskSpec:
    """One volume attached to a server, as the volume side describes it (the device run-config of
    a disk): the driver applies it its own way (QEMU: -blockdev file/raw nodes and a virtio-blk
    device, hot plugged over QMP; runc: a loop device, an ext4 on it, mounted in the container at
    /mnt/volumes/<volume id>). The path is the block store's own file (or host device), never one
    a request named."""

    volume_id: str
    path: str  # blockstore Location.path
    device_name: str = "/dev/vdb"  # what Nova's attachment shows
    read_only: bool = False
    serial: str = ""  # what the guest sees as the disk's serial; "" = volume_id[:20] (Nova's)
    # QEMU's protocol driver for path; "nbd": the volume is another host's, reached over NBD with
    # TLS (path is then nbd://<host>:<port>/<export>, for messages; the fields below say it)
    kind: Literal["file", "host_device", "nbd"] = "file"
    # 0: the server boots from this volume (Nova's boot_index 0 BDM: boot from volume); the driver
    # makes it the root disk instead of the image's. None: a data volume.
    boot_index: int | None = None
    # kind "nbd": the volume host's export (connection_info's data: target_host, target_port,
    # export, psk_identity) and the dir of this host's tls-creds-psk key file (keys.psk, 0600).
    nbd: tuple[tuple[str, str], ...] = ()
    tls_dir: str = ""

    @property
    def target(self) -> dict[str, str]:
        """The NBD export's fields (kind "nbd")."""
        return dict(self.nbd)

    @property
    def guest_serial(self) -> str:
        return (self.serial or self.volume_id)[:20]

    @property
    def is_root(self) -> bool:
        return self.boot_index == 0

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"volume_id": self.volume_id, "path": self.path, "device_name": self.device_name,
                               "read_only": self.read_only, "serial": self.serial, "kind": self.kind}
        if self.boot_index is not None:
            doc["boot_index"] = self.boot_index
        if self.kind == "nbd":
            doc["nbd"] = self.target
            doc["tls_dir"] = self.tls_dir
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> DiskSpec:
        kind = str(doc.get("kind") or "file")
        if kind not in ("file", "host_device", "nbd"):
            raise ValueError(f"bad disk kind {kind!r}")
        nbd = doc.get("nbd") or {} if kind == "nbd" else {}
        if not isinstance(nbd, Mapping):
            raise ValueError("bad nbd target")
        return cls(volume_id=str(doc["volume_id"]), path=str(doc["path"]),
                   device_name=str(doc.get("device_name") or "/dev/vdb"), read_only=bool(doc.get("read_only")),
                   serial=str(doc.get("serial") or ""),
                   kind="host_device" if kind == "host_device" else "nbd" if kind == "nbd" else "file",
                   boot_index=int(doc["boot_index"]) if doc.get("boot_index") is not None else None,
                   nbd=tuple(sorted((str(k), str(v)) for k, v in nbd.items())), tls_dir=str(doc.get("tls_dir") or ""))


@dataclass(frozen=True)
class InstanceSpec:
    uuid: str
    name: str
    hostname: str
    project_id: str
    flavor: FlavorSpec
    image: ImageSpec | None
    user_data: bytes | None = None
    key_data: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    # Rendered openstack/latest/meta_data.json for the config drive.
    meta_data: dict[str, Any] = field(default_factory=dict)
    network_info: list[dict[str, Any]] = field(default_factory=list)
    # The NICs plugged at spawn (and at every start), in guest order (eth0, eth1, ...); () is none.
    nics: tuple[NicSpec, ...] = ()
    # The user asked for a config drive (Nova's config_drive). A driver that makes one only when
    # required (QEMU, Nova's configdrive.required_by) also does for img_config_drive=mandatory or
    # its force_config_drive setting.
    config_drive: bool = False
    # The volumes attached at spawn (and kept by every start), in device order; () is none. One
    # with boot_index 0 is the root disk (boot from volume): `image` then describes the volume's
    # image metadata (properties, kernel/ramdisk files; path "") or is None.
    disks: tuple[DiskSpec, ...] = ()

    @property
    def root_disk(self) -> DiskSpec | None:
        """The volume the server boots from, if any."""
        return next((d for d in self.disks if d.is_root), None)


@dataclass(frozen=True)
class HostResources:
    vcpus: int
    memory_mb: int
    local_gb: int
    cpu_info: dict[str, Any] = field(default_factory=dict)
    host_ip: str = "127.0.0.1"


@dataclass(frozen=True)
class InstanceStatus:
    uuid: str
    power_state: PowerState


@dataclass(frozen=True)
class SnapshotResult:
    path: str  # file the driver wrote; the agent moves it into the image store
    disk_format: str
    container_format: str
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DiskSample:
    """Counters of one guest disk since it was attached (a container: its cgroup's blkio)."""

    read_bytes: int = 0
    read_requests: int = 0
    write_bytes: int = 0
    write_requests: int = 0
    errors: int = 0


@dataclass(frozen=True)
class NicSample:
    """Counters of one guest NIC, as the guest's side of it sees them."""

    mac_address: str | None = None
    rx_octets: int = 0
    rx_packets: int = 0
    rx_errors: int = 0
    rx_drop: int = 0
    tx_octets: int = 0
    tx_packets: int = 0
    tx_errors: int = 0
    tx_drop: int = 0


@dataclass(frozen=True)
class InstanceSample:
    """What one instance uses now: the one reading behind both its diagnostics and its metrics.

    None means "not known" (the guest does not run, or the driver cannot tell), never zero.
    """

    uuid: str
    power_state: PowerState
    uptime: int = 0  # seconds the guest has run (0 when it does not run)
    cpu_ns: tuple[int | None, ...] = ()  # CPU time per vCPU (a container: one entry for all)
    memory_used: int | None = None  # bytes the host holds for the guest
    memory_limit: int | None = None  # bytes the guest may use (flavor RAM, the cgroup limit)
    pids: int | None = None  # processes (containers)
    pids_limit: int | None = None
    disks: tuple[DiskSample, ...] = ()
    nics: tuple[NicSample, ...] = ()

    @property
    def cpu_seconds(self) -> float | None:
        known = [t for t in self.cpu_ns if t is not None]
        return sum(known) / 1e9 if known else None


@runtime_checkable
class Host(Protocol):
    info: DriverInfo

    async def init_host(self) -> None: ...

    async def get_host_resources(self) -> HostResources: ...

    async def list_instances(self) -> list[InstanceStatus]: ...

    async def cleanup_orphans(self, known_uuids: set[str]) -> list[str]:
        """Remove host artefacts that no known instance owns; return what was removed."""
        ...


@runtime_checkable
class Lifecycle(Protocol):
    async def spawn(self, spec: InstanceSpec) -> None: ...

    async def destroy(self, uuid: str) -> None: ...

    async def get_power_state(self, uuid: str) -> PowerState: ...


@runtime_checkable
class Power(Protocol):
    async def power_off(self, uuid: str, timeout: float = 10.0) -> None: ...

    async def power_on(self, spec: InstanceSpec) -> None: ...

    async def reboot(self, spec: InstanceSpec, hard: bool) -> None: ...


@runtime_checkable
class Pause(Protocol):
    async def pause(self, uuid: str) -> None: ...

    async def unpause(self, uuid: str) -> None: ...


@runtime_checkable
class Suspend(Protocol):
    async def suspend(self, uuid: str) -> None: ...

    async def resume(self, spec: InstanceSpec) -> None: ...


@runtime_checkable
class Rebuild(Protocol):
    async def rebuild(self, spec: InstanceSpec) -> None:
        """Replace the instance's root with spec.image, keeping its identity; leaves it running."""
        ...


@runtime_checkable
class Resize(Protocol):
    async def resize(self, spec: InstanceSpec, old_flavor: FlavorSpec) -> None:
        """Apply spec.flavor; keep enough to revert until confirm_resize."""
        ...

    async def confirm_resize(self, uuid: str) -> None: ...

    async def revert_resize(self, spec: InstanceSpec) -> None:
        """Go back to spec.flavor (the old one) and the pre-resize disk."""
        ...


@runtime_checkable
class Snapshot(Protocol):
    async def snapshot(self, uuid: str, workdir: str) -> SnapshotResult: ...


@runtime_checkable
class Console(Protocol):
    async def get_console_output(self, uuid: str, max_bytes: int = 65536) -> str: ...


@runtime_checkable
class Diagnostics(Protocol):
    async def get_diagnostics(self, uuid: str) -> dict[str, Any]:
        """Nova's standard diagnostics shape (microversion 2.48)."""
        ...


@runtime_checkable
class Metrics(Protocol):
    async def sample_instances(self, uuids: list[str]) -> list[InstanceSample]:
        """A sample of each of `uuids` that exists on this host (missing ones are left out). Reads
        files in threads, never on the event loop; the same reading serves get_diagnostics."""
        ...


@runtime_checkable
class ImageCache(Protocol):
    async def collect_image_cache(self, keep: set[str]) -> list[str]:
        """Remove local copies of images (unpacked roots, verified bases) whose content key (the
        image store's sha256) is not in `keep` (the live images' keys) and that no instance on this
        host uses; never one a spawn in progress holds. Returns what was removed."""
        ...


@runtime_checkable
class Nics(Protocol):
    async def attach_nic(self, uuid: str, nic: NicSpec) -> None:
        """Plug `nic` into the running (or stopped) server; it stays across stop and start."""
        ...

    async def detach_nic(self, uuid: str, port_id: str) -> None:
        """Unplug the NIC of `port_id`; one that is not plugged is fine."""
        ...


@runtime_checkable
class Volumes(Protocol):
    async def attach_volume(self, uuid: str, disk: DiskSpec) -> None:
        """Attach `disk` to the running (or stopped) server; it stays across stop and start.
        Attaching the same volume again is a no-op. A failed attach leaves nothing behind."""
        ...

    async def detach_volume(self, uuid: str, volume_id: str, force: bool = False) -> None:
        """Detach the volume; one that is not attached is fine. A guest still using it is a
        Conflict (DriverError for a guest that does not let go) unless `force`."""
        ...

    async def extend_volume(self, uuid: str, volume_id: str, new_size_bytes: int) -> None:
        """Tell the server that the volume's file grew to new_size_bytes (the store grew it)."""
        ...

    async def attached_volumes(self, uuid: str) -> list[str]:
        """The volume ids the server has attached on this host, as its driver recorded them (what a
        reconcile compares with the DB's attachments)."""
        ...


@runtime_checkable
class Exec(Protocol):
    async def exec_in(self, uuid: str, req: ExecRequest) -> ExecResult:
        """Run req.argv inside the guest of `uuid` and wait for it (the PaaS manager's recipes).

        - argv runs inside the guest, never through a host shell; nothing of it is host argv but
          the guest-side path and arguments handed to the runtime as a list.
        - The environment is req.env (a driver may add it to the image's environment, as `runc
          exec --env` does; QEMU's guest agent replaces it); cwd is "/"; stdin is req.stdin, then EOF.
        - A non-zero exit is a result (exit_code), never an exception; a command ended by a signal
          has exit_code None and `signal` set.
        - After req.timeout seconds the guest process is killed (SIGKILL) and the result has
          timed_out True, with the output read so far; no process of it is left in the guest.
        - Each of stdout and stderr is kept to req.output_limit bytes: beyond it, the first
          EXEC_HEAD bytes and the last (limit - EXEC_HEAD) bytes, with the *_truncated flag set.
        - A server that does not exist, or does not run (stopped, paused, suspended), is
          errors.InvalidState; a failure of the runtime itself is DriverError.
        - The exec finishes when the command's output pipes close: a daemon a recipe starts must
          close its stdio.
        """
        ...


@dataclass(frozen=True)
class MigrationFile:
    """One thing a cold migration sends to the destination: a file, or a directory tree (a
    container's upper dir), received there under `name` (one path component)."""

    name: str
    path: str  # on the source host
    tree: bool = False


@runtime_checkable
class ColdMigration(Protocol):
    """Cold migration and cross-host resize (compute/agent/migrate.py drives it).

    - `migration_files` runs on the source after the server is powered off: what the destination
      needs to run it (its disks), and host-wide names the server holds (a netns) are released, so
      a destination on the same machine can take them. The server stays defined here: revert
      powers it on again (Power.power_on), confirm calls `cleanup_migration_source`.
    - `finish_migration` runs on the destination: the server made from the files received in
      `received` (named as migration_files said) with spec.flavor, running when `power_on`. A
      failure leaves nothing of it here (as spawn).
    - `cleanup_migration_source`: what is left of the server on the source goes (destroy, but never a
      host-wide name the destination may hold now). Of a missing server: succeeds.
    """

    async def migration_files(self, uuid: str) -> list[MigrationFile]: ...

    async def finish_migration(self, spec: InstanceSpec, received: str, power_on: bool) -> None: ...

    async def cleanup_migration_source(self, uuid: str) -> None: ...


@runtime_checkable
class LiveMigration(Protocol):
    """Live migration (compute/agent/live.py drives it; the QEMU driver's is drivers/qemu/migrate.py).

    - `live_migration_source` (source): what the destination needs, JSON only (the driver's record
      of the server, the sizes of its local disks); the server must run or be paused.
    - `prepare_incoming` (destination): files and a hypervisor waiting for the server, listening on
      `listen` at ports of the range `ports`; returns the target (JSON) for `live_migrate`. A
      failure leaves nothing here.
    - `live_migrate` (source): the move; QEMU's figures (downtime_ms, total_time_ms, the progress
      columns) back. On failure or cancellation the server runs on here, unchanged; `progress`
      gets the progress columns now and then.
    - `force_complete` (source): make the move converge (pause the guest). `recover_source`
      (source): a move cut short elsewhere is cancelled here and the guest runs on (when `resume`).
    - `finish_incoming` (destination): the server is here, running when `resume`. `abort_incoming` (destination):
      nothing of it stays here (idempotent). `drop_migrated` (source, after finish): it goes here.
    """

    async def live_migration_source(self, uuid: str) -> dict[str, Any]: ...

    async def prepare_incoming(self, spec: InstanceSpec, source: dict[str, Any], listen: str,
                               ports: tuple[int, int]) -> dict[str, Any]: ...

    async def live_migrate(self, uuid: str, target: dict[str, Any], *,
                           progress: Callable[[dict[str, Any]], Awaitable[None]] | None = None) -> dict[str, Any]: ...

    async def recover_source(self, uuid: str, resume: bool) -> None: ...

    async def force_complete(self, uuid: str) -> None: ...

    async def finish_incoming(self, uuid: str, resume: bool = True) -> None: ...

    async def abort_incoming(self, uuid: str) -> None: ...

    async def drop_migrated(self, uuid: str) -> None: ...


class Driver(Host, Lifecycle, Protocol):
    """The least a driver is: a host it describes and instances it can make and remove."""


# The Protocol a driver implements when it declares each capability (the contract tests check both).
CAPABILITY_PROTOCOLS: MappingProxyType[Capability, type] = MappingProxyType({
    Capability.POWER: Power,
    Capability.PAUSE: Pause,
    Capability.SUSPEND: Suspend,
    Capability.RESIZE: Resize,
    Capability.REBUILD: Rebuild,
    Capability.SNAPSHOT: Snapshot,
    Capability.CONSOLE: Console,
    Capability.DIAGNOSTICS: Diagnostics,
    Capability.METRICS: Metrics,
    Capability.NICS: Nics,
    Capability.VOLUMES: Volumes,
    Capability.EXEC: Exec,
    Capability.COLD_MIGRATION: ColdMigration,
    Capability.LIVE_MIGRATION: LiveMigration,
})


def supports(driver: Host, capability: Capability) -> bool:
    """Whether the driver declares the capability and implements its Protocol (fail closed)."""
    return capability in driver.info.capabilities and isinstance(driver, CAPABILITY_PROTOCOLS[capability])


def capabilities_of(driver: Host) -> frozenset[Capability]:
    """What the driver supports: what it declares and also implements (what its node advertises)."""
    return frozenset(c for c in driver.info.capabilities if supports(driver, c))


@overload
def driver_for(driver: Host, capability: Literal[Capability.POWER], *, node: str | None = None) -> Power: ...
@overload
def driver_for(driver: Host, capability: Literal[Capability.PAUSE], *, node: str | None = None) -> Pause: ...
@overload
def driver_for(driver: Host, capability: Literal[Capability.SUSPEND], *, node: str | None = None) -> Suspend: ...
@overload
def driver_for(driver: Host, capability: Literal[Capability.RESIZE], *, node: str | None = None) -> Resize: ...
@overload
def driver_for(driver: Host, capability: Literal[Capability.REBUILD], *, node: str | None = None) -> Rebuild: ...
@overload
def driver_for(driver: Host, capability: Literal[Capability.SNAPSHOT], *, node: str | None = None) -> Snapshot: ...
@overload
def driver_for(driver: Host, capability: Literal[Capability.CONSOLE], *, node: str | None = None) -> Console: ...
@overload
def driver_for(
    driver: Host, capability: Literal[Capability.DIAGNOSTICS], *, node: str | None = None
) -> Diagnostics: ...
@overload
def driver_for(driver: Host, capability: Literal[Capability.METRICS], *, node: str | None = None) -> Metrics: ...
@overload
def driver_for(driver: Host, capability: Literal[Capability.NICS], *, node: str | None = None) -> Nics: ...
@overload
def driver_for(driver: Host, capability: Literal[Capability.VOLUMES], *, node: str | None = None) -> Volumes: ...
@overload
def driver_for(driver: Host, capability: Literal[Capability.EXEC], *, node: str | None = None) -> Exec: ...
@overload
def driver_for(
    driver: Host, capability: Literal[Capability.COLD_MIGRATION], *, node: str | None = None
) -> ColdMigration: ...
def driver_for(driver: Host, capability: Capability, *, node: str | None = None) -> object:
    """The driver seen through the Protocol of `capability`; InvalidState when it does not declare
    the capability or does not implement its Protocol. `node` names the node in the message."""
    where = f" of node {node}" if node else ""
    if capability not in driver.info.capabilities:
        raise InvalidState(f"The {driver.info.name} driver{where} does not support {capability.value}")
    proto = CAPABILITY_PROTOCOLS[capability]
    if not isinstance(driver, proto):
        raise InvalidState(f"The {driver.info.name} driver{where} does not implement {proto.__name__}")
    return driver
