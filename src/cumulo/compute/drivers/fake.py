"""The fake driver: a real implementation of every Protocol in drivers.base, without a hypervisor.

Instances live in memory and as small JSON files under `<state_dir>/fake/<host_name>/<uuid>.json`,
so a restarted cloud re-adopts them exactly as a runc or QEMU driver re-adopts its containers and
VMs. It declares every capability, reports simulated resources (or the real host's when `local`),
writes a synthetic console log and serves diagnostics in Nova's 2.48 shape.

Simulated failures, for tests of error paths: an image property or a server metadata key
`cumulo_fake_fail` holding a comma-separated list of operations (spawn, reboot, rebuild, resize,
snapshot, power_off, power_on, pause, unpause, suspend, resume, attach_nic, detach_nic, attach_volume,
detach_volume, extend_volume) makes those operations raise
DriverError (spawn still leaves nothing behind). `conf.fake_spawn_delay` slows spawn and rebuild
down, for crash and scale tests.

Simulated usage, for autoscaling tests: a running server's vCPUs are all busy and half its RAM is
used, unless a test steers it: `await driver.set_usage(uuid, cpu_percent=.., memory_percent=..)`, or
an exec whose env holds CUMULO_FAKE_CPU_PERCENT / CUMULO_FAKE_MEMORY_PERCENT (so a test reaches it
through ComputeService.exec_in_server). CPU time then grows at that share of every vCPU from now on.

instance_types is ("fake", "container", "qemu", "kvm"): a fake host stands in for both real drivers,
so images meant for containers or VMs can be scheduled in tests; any other hypervisor_type
(e.g. "xen") is refused by the scheduler's ImagePropertiesFilter. Override with
`conf.fake.instance_types` (extra key fake_instance_types: a list or a comma string).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import time
from pathlib import Path
from typing import Any

from cumulo.compute.drivers import hostres
from cumulo.compute.drivers.base import (
    DIAGNOSTICS_STATE,
    Capability,
    DiskSample,
    DiskSpec,
    DriverInfo,
    FlavorSpec,
    HostResources,
    InstanceSample,
    InstanceSpec,
    InstanceStatus,
    NicSample,
    NicSpec,
    PowerState,
    SnapshotResult,
)
from cumulo.compute.drivers.execspec import ExecRequest, ExecResult
from cumulo.compute.drivers.fakelive import FakeLiveMigration
from cumulo.compute.drivers.fakemigrate import FakeColdMigration
from cumulo.compute.drivers.probe import HostFacts
from cumulo.conf import Settings
from cumulo.errors import DriverError, InvalidState, NotFound

FAIL_KEY = "cumulo_fake_fail"
DEFAULT_INSTANCE_TYPES = ("fake", "container", "qemu", "kvm")
CONSOLE_MAX_LINES = 1000
# Records written while spawn or rebuild is still under way; a crash leaves them half-made.
_BUILDING = "building"



def _flavor_dict(f: FlavorSpec) -> dict[str, Any]:
    return {
        "vcpus": f.vcpus,
        "memory_mb": f.memory_mb,
        "root_gb": f.root_gb,
        "ephemeral_gb": f.ephemeral_gb,
        "swap": f.swap,
        "extra_specs": dict(f.extra_specs),
    }


def _fail_ops(spec: InstanceSpec) -> list[str]:
    raw: list[str] = []
    if spec.image is not None and spec.image.properties.get(FAIL_KEY):
        raw.append(str(spec.image.properties[FAIL_KEY]))
    if spec.metadata.get(FAIL_KEY):
        raw.append(str(spec.metadata[FAIL_KEY]))
    return sorted({op.strip() for item in raw for op in item.split(",") if op.strip()})


def _user_data_echoes(user_data: bytes | None) -> list[str]:
    """What a shell-script user_data would print with `echo` (enough to prove it ran)."""
    if not user_data:
        return []
    text = user_data.decode(errors="replace")
    if not text.startswith("#!"):
        return []
    out: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("echo "):
            continue
        try:
            words = shlex.split(line[5:], comments=True)
        except ValueError:
            words = [line[5:]]
        out.append(" ".join(w for w in words if w not in (">", ">>")))
    return out


def _nic_dict(nic: NicSpec) -> dict[str, Any]:
    return {"port_id": nic.port_id, "mac": nic.mac, "device": nic.device, "addresses": list(nic.addresses)}


class FakeDriver(FakeColdMigration, FakeLiveMigration):
    @classmethod
    def probe(cls, host: HostFacts) -> list[str]:
        """The fake driver simulates its servers: it runs anywhere."""
        return []

    def __init__(self, conf: Settings, host_name: str, *, local: bool = False) -> None:
        self.conf = conf
        self.host_name = host_name
        self.local = local
        self.dir = Path(conf.state_dir) / "fake" / host_name
        types = conf.fake.instance_types or DEFAULT_INSTANCE_TYPES
        self.info = DriverInfo(
            name="fake",
            hypervisor_type="fake",
            instance_types=tuple(str(t) for t in types),
            version=1,
            capabilities=frozenset(Capability),
            details={"simulated": not local, "suspend": "memory-snapshot", "accelerator": "none"},
        )
        self._instances: dict[str, dict[str, Any]] = {}
        self._loaded = False
        self.exec_requests: list[tuple[str, ExecRequest]] = []  # every exec_in, in order (tests read it)

    # -- persistence ---------------------------------------------------------------------------

    def _path(self, uuid: str) -> Path:
        return self.dir / f"{uuid}.json"

    async def _save(self, rec: dict[str, Any]) -> None:
        self._instances[rec["uuid"]] = rec
        data = json.dumps(rec, sort_keys=True)
        await asyncio.to_thread(self._write_file, self._path(rec["uuid"]), data)

    @staticmethod
    def _write_file(path: Path, data: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(data)
        os.replace(tmp, path)

    async def _remove(self, uuid: str) -> None:
        self._instances.pop(uuid, None)
        await asyncio.to_thread(self._path(uuid).unlink, missing_ok=True)

    def _load_all(self) -> dict[str, dict[str, Any]]:
        self.dir.mkdir(parents=True, exist_ok=True)
        out: dict[str, dict[str, Any]] = {}
        for path in self.dir.glob("*.json"):
            try:
                rec = json.loads(path.read_text())
                out[str(rec["uuid"])] = rec
            except (OSError, ValueError, KeyError):
                continue  # unreadable leftovers are reaped by cleanup_orphans
        return out

    def _get(self, uuid: str) -> dict[str, Any]:
        rec = self._instances.get(uuid)
        if rec is None:
            raise DriverError(f"Instance {uuid} does not exist on fake host {self.host_name}")
        return rec

    @staticmethod
    def _log(rec: dict[str, Any], *lines: str) -> None:
        # Kernel-style timestamps: seconds since the instance was created.
        stamp = max(0.0, time.time() - float(rec.get("created_at", time.time())))
        console: list[str] = rec.setdefault("console", [])
        for line in lines:
            console.append(f"[{stamp:12.6f}] {line}" if line else "")
        del console[:-CONSOLE_MAX_LINES]

    def _check_fail(self, rec: dict[str, Any], op: str) -> None:
        if op in rec.get("fail", []):
            self._log(rec, f"fake: {op} failed (requested by {FAIL_KEY})")
            raise DriverError(f"Fake driver: {op} failed as requested by {FAIL_KEY}={op}")

    def _boot_lines(self, rec: dict[str, Any], user_data: bytes | None) -> None:
        f = rec["flavor"]
        self._log(
            rec,
            "Linux version 6.1.0-cumulo-fake (cumulo@fake) #1 SMP",
            f"Memory: {f['memory_mb'] * 1024}K available, {f['vcpus']} CPUs",
            f"Starting instance {rec['uuid']} on {self.host_name}",
            f"cloud-init: hostname set to {rec['hostname']}",
        )
        if user_data:
            self._log(rec, "cloud-init: running user-data")
            for line in _user_data_echoes(user_data):
                self._log(rec, line)
        self._log(rec, "", f"{rec['hostname']} login:")

    def _set_power(self, rec: dict[str, Any], power: PowerState) -> None:
        if power == PowerState.RUNNING and rec.get("power") != PowerState.RUNNING:
            rec["started_at"] = time.time()
        rec["power"] = int(power)

    # -- Host -----------------------------------------------------------------------------------

    async def init_host(self) -> None:
        self._instances = await asyncio.to_thread(self._load_all)
        self._loaded = True

    async def get_host_resources(self) -> HostResources:
        if self.local:
            return hostres.local_host_resources(Path(self.conf.state_dir), model="fake", vendor="cumulo")
        vcpus = self.conf.fake_host_vcpus
        return HostResources(
            vcpus=vcpus,
            memory_mb=self.conf.fake_host_ram_mb,
            local_gb=self.conf.fake_host_disk_gb,
            cpu_info=hostres.cpu_info(vcpus, "fake", "cumulo"),
        )

    async def list_instances(self) -> list[InstanceStatus]:
        return [InstanceStatus(uuid, self._power_of(rec)) for uuid, rec in sorted(self._instances.items())]

    async def cleanup_orphans(self, known_uuids: set[str]) -> list[str]:
        removed: list[str] = []
        for uuid in [u for u in self._instances if u not in known_uuids]:
            await self._remove(uuid)
            removed.append(uuid)

        def stray_files() -> list[str]:
            gone: list[str] = []
            if not self.dir.exists():
                return gone
            for path in self.dir.iterdir():
                stem = path.name.split(".", 1)[0]
                # Files of live or known guests stay, temporaries of a save in progress included.
                if stem in self._instances or stem in known_uuids:
                    continue
                with contextlib.suppress(OSError):
                    path.unlink()
                    gone.append(path.name)
            return gone

        removed += [f for f in await asyncio.to_thread(stray_files) if f.split(".", 1)[0] not in removed]
        return removed

    # -- Lifecycle ------------------------------------------------------------------------------

    @staticmethod
    def _power_of(rec: dict[str, Any]) -> PowerState:
        if rec.get("state") == _BUILDING:
            return PowerState.NOSTATE
        return PowerState(int(rec.get("power", 0)))

    async def spawn(self, spec: InstanceSpec) -> None:
        if spec.uuid in self._instances:
            raise DriverError(f"Instance {spec.uuid} already exists on fake host {self.host_name}")
        rec: dict[str, Any] = {
            "uuid": spec.uuid,
            "name": spec.name,
            "hostname": spec.hostname or spec.name,
            "project_id": spec.project_id,
            "flavor": _flavor_dict(spec.flavor),
            "image_id": spec.image.id if spec.image else None,
            "num_nics": len(spec.network_info),
            **({"nics": [_nic_dict(n) for n in spec.nics]} if spec.nics else {}),
            **({"disks": [d.to_dict() for d in spec.disks]} if spec.disks else {}),
            "fail": _fail_ops(spec),
            "state": _BUILDING,
            "power": int(PowerState.NOSTATE),
            "console": [],
            "created_at": time.time(),
        }
        try:
            await self._save(rec)
            if self.conf.fake_spawn_delay > 0:
                await asyncio.sleep(self.conf.fake_spawn_delay)
            if "spawn" in rec["fail"]:
                raise DriverError(f"Fake driver: spawn failed as requested by {FAIL_KEY}=spawn")
            rec["state"] = "created"
            self._set_power(rec, PowerState.RUNNING)
            self._boot_lines(rec, spec.user_data)
            await self._save(rec)
        except BaseException:
            # Contract: a failed (or cancelled) spawn leaves nothing behind.
            await asyncio.shield(self._remove(spec.uuid))
            raise

    async def destroy(self, uuid: str) -> None:
        await self._remove(uuid)

    async def get_power_state(self, uuid: str) -> PowerState:
        rec = self._instances.get(uuid)
        return PowerState.NOSTATE if rec is None else self._power_of(rec)

    # -- Power ----------------------------------------------------------------------------------

    async def power_off(self, uuid: str, timeout: float = 10.0) -> None:
        rec = self._get(uuid)
        if rec["power"] == PowerState.SHUTDOWN:
            return
        self._check_fail(rec, "power_off")
        self._log(rec, "reboot: Power down")
        self._set_power(rec, PowerState.SHUTDOWN)
        await self._save(rec)

    async def power_on(self, spec: InstanceSpec) -> None:
        rec = self._get(spec.uuid)
        if rec["power"] == PowerState.RUNNING:
            return
        self._check_fail(rec, "power_on")
        if rec["power"] in (PowerState.PAUSED, PowerState.SUSPENDED):
            raise DriverError(f"Instance {spec.uuid} is {PowerState(rec['power']).name.lower()}, not shut down")
        self._set_power(rec, PowerState.RUNNING)
        self._boot_lines(rec, None)
        await self._save(rec)

    async def reboot(self, spec: InstanceSpec, hard: bool) -> None:
        rec = self._get(spec.uuid)
        self._check_fail(rec, "reboot")
        if not hard and rec["power"] != PowerState.RUNNING:
            raise DriverError(f"Instance {spec.uuid} is not running; a soft reboot needs a running guest")
        self._log(rec, "reboot: Restarting system" if not hard else "fake: hard reset")
        self._set_power(rec, PowerState.RUNNING)
        rec["started_at"] = time.time()
        self._boot_lines(rec, None)
        await self._save(rec)

    # -- Pause / Suspend ------------------------------------------------------------------------

    async def _transition(self, uuid: str, op: str, want_from: PowerState, to: PowerState, line: str) -> None:
        rec = self._get(uuid)
        if rec["power"] == to:
            return
        self._check_fail(rec, op)
        if rec["power"] != want_from:
            raise DriverError(f"Cannot {op} instance {uuid} in power state {PowerState(rec['power']).name}")
        self._log(rec, line)
        self._set_power(rec, to)
        await self._save(rec)

    async def pause(self, uuid: str) -> None:
        await self._transition(uuid, "pause", PowerState.RUNNING, PowerState.PAUSED, "fake: vCPUs paused")

    async def unpause(self, uuid: str) -> None:
        await self._transition(uuid, "unpause", PowerState.PAUSED, PowerState.RUNNING, "fake: vCPUs resumed")

    async def suspend(self, uuid: str) -> None:
        await self._transition(
            uuid, "suspend", PowerState.RUNNING, PowerState.SUSPENDED, "PM: suspend to memory (saved by host)"
        )

    async def resume(self, spec: InstanceSpec) -> None:
        await self._transition(
            spec.uuid, "resume", PowerState.SUSPENDED, PowerState.RUNNING, "PM: resume from suspend"
        )

    # -- Rebuild / Resize -----------------------------------------------------------------------

    async def rebuild(self, spec: InstanceSpec) -> None:
        rec = self._get(spec.uuid)
        self._check_fail(rec, "rebuild")
        self._log(rec, f"fake: rebuilding from image {spec.image.id if spec.image else '(none)'}")
        if self.conf.fake_spawn_delay > 0:
            await asyncio.sleep(self.conf.fake_spawn_delay)
        rec["image_id"] = spec.image.id if spec.image else None
        rec["fail"] = _fail_ops(spec)
        rec["hostname"] = spec.hostname or rec["hostname"]
        self._set_power(rec, PowerState.RUNNING)
        rec["started_at"] = time.time()
        self._boot_lines(rec, spec.user_data)
        await self._save(rec)

    async def resize(self, spec: InstanceSpec, old_flavor: FlavorSpec) -> None:
        rec = self._get(spec.uuid)
        self._check_fail(rec, "resize")
        rec["old_flavor"] = _flavor_dict(old_flavor)
        rec["flavor"] = _flavor_dict(spec.flavor)
        self._log(rec, f"fake: resized to {spec.flavor.vcpus} vCPUs, {spec.flavor.memory_mb} MB")
        await self._save(rec)

    async def confirm_resize(self, uuid: str) -> None:
        rec = self._get(uuid)
        if rec.pop("old_flavor", None) is not None:
            await self._save(rec)

    async def revert_resize(self, spec: InstanceSpec) -> None:
        rec = self._get(spec.uuid)
        rec.pop("old_flavor", None)
        rec["flavor"] = _flavor_dict(spec.flavor)
        self._log(rec, f"fake: resize reverted to {spec.flavor.vcpus} vCPUs, {spec.flavor.memory_mb} MB")
        await self._save(rec)

    # -- Snapshot / Console / Diagnostics -------------------------------------------------------

    async def snapshot(self, uuid: str, workdir: str) -> SnapshotResult:
        rec = self._get(uuid)
        self._check_fail(rec, "snapshot")
        path = Path(workdir) / f"{uuid}.raw"
        body = {"fake_snapshot_of": uuid, "host": self.host_name, "flavor": rec["flavor"], "taken_at": time.time()}
        content = json.dumps(body, sort_keys=True).encode() + b"\n"
        await asyncio.to_thread(self._write_bytes, path, content)
        self._log(rec, "fake: disk snapshot taken")
        await self._save(rec)
        return SnapshotResult(path=str(path), disk_format="raw", container_format="bare", properties={})

    @staticmethod
    def _write_bytes(path: Path, content: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)

    # -- Nics: recorded, nothing plumbed ----------------------------------------------------------

    async def attach_nic(self, uuid: str, nic: NicSpec) -> None:
        rec = self._get(uuid)
        self._check_fail(rec, "attach_nic")
        nics = [n for n in rec.get("nics", []) if n.get("port_id") != nic.port_id]
        rec["nics"] = [*nics, _nic_dict(nic)]
        self._log(rec, f"fake: NIC {nic.mac} (port {nic.port_id}) attached")
        await self._save(rec)

    async def detach_nic(self, uuid: str, port_id: str) -> None:
        rec = self._get(uuid)
        nics = rec.get("nics", [])
        if any(n.get("port_id") == port_id for n in nics):
            self._check_fail(rec, "detach_nic")
            rec["nics"] = [n for n in nics if n.get("port_id") != port_id]
            self._log(rec, f"fake: NIC of port {port_id} detached")
            await self._save(rec)

    # -- Volumes: recorded, nothing attached on the host -------------------------------------------

    async def attach_volume(self, uuid: str, disk: DiskSpec) -> None:
        rec = self._get(uuid)
        disks = rec.get("disks", [])
        if any(d.get("volume_id") == disk.volume_id for d in disks):
            return
        self._check_fail(rec, "attach_volume")
        rec["disks"] = [*disks, disk.to_dict()]
        self._log(rec, f"fake: volume {disk.volume_id} attached as {disk.device_name}")
        await self._save(rec)

    async def detach_volume(self, uuid: str, volume_id: str, force: bool = False) -> None:
        rec = self._get(uuid)
        disks = rec.get("disks", [])
        if any(d.get("volume_id") == volume_id for d in disks):
            self._check_fail(rec, "detach_volume")
            rec["disks"] = [d for d in disks if d.get("volume_id") != volume_id]
            self._log(rec, f"fake: volume {volume_id} detached")
            await self._save(rec)

    async def extend_volume(self, uuid: str, volume_id: str, new_size_bytes: int) -> None:
        rec = self._get(uuid)
        if not any(d.get("volume_id") == volume_id for d in rec.get("disks", [])):
            raise NotFound(f"volume {volume_id} is not attached to instance {uuid}")
        self._check_fail(rec, "extend_volume")
        self._log(rec, f"fake: volume {volume_id} grew to {int(new_size_bytes)} bytes")
        await self._save(rec)

    async def attached_volumes(self, uuid: str) -> list[str]:
        return [str(d.get("volume_id")) for d in self._get(uuid).get("disks", [])]

    async def get_console_output(self, uuid: str, max_bytes: int = 65536) -> str:
        rec = self._get(uuid)
        text = "\n".join(rec.get("console", [])) + "\n"
        data = text.encode()
        return data[-max_bytes:].decode(errors="replace") if max_bytes > 0 else ""

    async def exec_in(self, uuid: str, req: ExecRequest) -> ExecResult:
        """Records the request and answers exit 0, or the exit code the request's env names in
        CUMULO_FAKE_EXIT (how tests make a recipe fail); a server that does not run is InvalidState."""
        req.check()
        rec = self._instances.get(uuid)
        if rec is None:
            raise InvalidState(f"Instance {uuid} does not exist on fake host {self.host_name}")
        power = self._power_of(rec)
        if power != PowerState.RUNNING:
            raise InvalidState(f"Instance {uuid} is not running (power state {power.name})")
        self.exec_requests.append((uuid, req))
        try:
            code = int(req.env.get("CUMULO_FAKE_EXIT", "0"))
        except ValueError:
            code = 0
        steer = {k: req.env[f"CUMULO_FAKE_{k.upper()}"] for k in ("cpu_percent", "memory_percent")
                 if f"CUMULO_FAKE_{k.upper()}" in req.env}
        if steer:
            with contextlib.suppress(ValueError):
                await self.set_usage(uuid, **{k: float(v) for k, v in steer.items()})
        self._log(rec, f"fake: exec {req.argv[0] if req.argv else ''} exited {code}")
        return ExecResult(exit_code=code, signal=None, stdout=b"", stderr=b"")

    async def set_usage(
        self, uuid: str, *, cpu_percent: float | None = None, memory_percent: float | None = None
    ) -> None:
        """Steer the simulated usage of a server (see the module docstring): from now on its CPU
        time grows at `cpu_percent` of each vCPU, and `memory_percent` of its RAM is in use."""
        rec = self._get(uuid)
        now = time.time()
        if cpu_percent is not None:
            rec["cpu_base_ns"] = self._cpu_ns_per_vcpu(rec, now)
            rec["cpu_mark"] = now
            rec["cpu_percent"] = min(100.0, max(0.0, float(cpu_percent)))
        if memory_percent is not None:
            rec["memory_percent"] = min(100.0, max(0.0, float(memory_percent)))
        await self._save(rec)

    @staticmethod
    def _cpu_ns_per_vcpu(rec: dict[str, Any], now: float) -> int:
        """CPU time of one vCPU since the guest started: all busy, or as set_usage steered it."""
        started = float(rec.get("started_at", now))
        if "cpu_percent" not in rec:
            return int(max(0.0, now - started) * 1e9)
        mark = float(rec.get("cpu_mark", started))
        base = int(rec.get("cpu_base_ns", 0)) if mark >= started else 0  # a restart since: from zero
        return base + int(max(0.0, now - max(mark, started)) * float(rec["cpu_percent"]) / 100.0 * 1e9)

    def _sample(self, rec: dict[str, Any]) -> InstanceSample:
        """The one (synthetic) reading behind diagnostics and metrics: every vCPU busy since the
        start, half the flavor's RAM in use while running (unless set_usage steered them)."""
        power = self._power_of(rec)
        running = power == PowerState.RUNNING
        now = time.time()
        uptime = int(now - rec.get("started_at", now)) if running else 0
        flavor = rec["flavor"]
        mib = 1 << 20
        per_vcpu = (uptime * 10**9 if "cpu_percent" not in rec else self._cpu_ns_per_vcpu(rec, now)) if running else 0
        used = (flavor["memory_mb"] * mib * float(rec["memory_percent"]) / 100.0 if "memory_percent" in rec
                else flavor["memory_mb"] // 2 * mib)
        return InstanceSample(
            uuid=str(rec["uuid"]), power_state=power, uptime=uptime,
            cpu_ns=tuple(per_vcpu for _ in range(flavor["vcpus"])),
            memory_used=int(used) if running else 0,
            memory_limit=flavor["memory_mb"] * mib,
            disks=(DiskSample(),),
            nics=tuple(NicSample(mac_address=f"fa:16:3e:00:00:{i:02x}") for i in range(int(rec.get("num_nics", 0)))),
        )

    async def sample_instances(self, uuids: list[str]) -> list[InstanceSample]:
        return [self._sample(self._instances[u]) for u in uuids if u in self._instances]

    async def get_diagnostics(self, uuid: str) -> dict[str, Any]:
        s = self._sample(self._get(uuid))
        running = s.power_state == PowerState.RUNNING
        return {
            "state": DIAGNOSTICS_STATE.get(s.power_state, "pending"),
            "driver": "fake",
            "hypervisor": "fake",
            "hypervisor_os": "linux",
            "uptime": s.uptime,
            "config_drive": False,
            "num_cpus": len(s.cpu_ns),
            "num_nics": len(s.nics),
            "num_disks": len(s.disks),
            "memory_details": {"maximum": (s.memory_limit or 0) >> 20, "used": (s.memory_used or 0) >> 20},
            "cpu_details": [{"id": i, "time": t, "utilisation": 1 if running else 0} for i, t in enumerate(s.cpu_ns)],
            "nic_details": [
                {
                    "mac_address": n.mac_address,
                    "rx_octets": n.rx_octets, "rx_errors": n.rx_errors, "rx_drop": n.rx_drop, "rx_packets": n.rx_packets,
                    "rx_rate": None,
                    "tx_octets": n.tx_octets, "tx_errors": n.tx_errors, "tx_drop": n.tx_drop, "tx_packets": n.tx_packets,
                    "tx_rate": None,
                }
                for n in s.nics
            ],
            "disk_details": [
                {"read_bytes": d.read_bytes, "read_requests": d.read_requests, "write_bytes": d.write_bytes,
                 "write_requests": d.write_requests, "errors_count": d.errors}
                for d in s.disks
            ],
        }

