"""What only the QEMU driver promises: a guest that really boots (banner, config drive, user_data),
power and pause over QMP, adoption by a restarted driver, bounded console, nothing left behind,
and untrusted images refused before QEMU ever opens them.

A guest under TCG costs seconds of a whole core, so one tiny-VM guest (module fixture) walks
through most checks, each made by a NEW QemuDriver on the same state dir (what a restarted agent
does: adopt through the pidfile and QMP). Cheap guests boot a 512-byte BIOS boot sector instead.
Every QEMU a test starts is killed by pid in a finally (kill_under: pidfiles under its tmp dir).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from pathlib import Path

import _qemu_guest as guest
import pycdlib
import pytest

from cumulo import conf as conf_mod
from cumulo.compute.drivers import load_driver
from cumulo.compute.drivers.base import FlavorSpec, ImageSpec, InstanceSpec, PowerState
from cumulo.compute.drivers.qemu import QemuDriver, accel, configdrive, process, qmp
from cumulo.conf import Settings
from cumulo.errors import DriverError

pytestmark = pytest.mark.skipif(bool(guest.QEMU_MISSING), reason=guest.QEMU_MISSING)

SMALL = FlavorSpec(vcpus=1, memory_mb=256, root_gb=1)
MARKER = "user-data-marker-7f3a"
USER_DATA = f"#!/bin/sh\necho {MARKER}\n".encode()


def settings_for(state: Path, **extra: object) -> Settings:
    return conf_mod.load(env={}, state_dir=state).replace(extra={"qemu_boot_timeout": 120.0, **extra})


async def new_driver(state: Path, **extra: object) -> QemuDriver:
    drv = load_driver("qemu", settings_for(state, **extra), "qemu-test", local=True)
    assert isinstance(drv, QemuDriver)
    await drv.init_host()
    return drv


def make_spec(image: ImageSpec | None, *, name: str = "", user_data: bytes | None = None,
              flavor: FlavorSpec = SMALL) -> InstanceSpec:
    uid = str(uuidlib.uuid4())
    name = name or f"qt-{uid[:8]}"
    return InstanceSpec(uuid=uid, name=name, hostname=name, project_id="p", flavor=flavor, image=image,
                        user_data=user_data)


def nothing_left(drv: QemuDriver, uuid: str) -> list[str]:
    out = [f"qemu pid {p}" for p in process.scan_pids(uuid)]
    return out + ([str(drv.dir / uuid)] if (drv.dir / uuid).exists() else [])


def console(drv: QemuDriver, uuid: str) -> str:
    return (drv.dir / uuid / "console.log").read_text(errors="replace")


async def wait_console(drv: QemuDriver, uuid: str, pred: Callable[[str], bool], what: str,
                       timeout: float = 120.0) -> str:
    """spawn returns once QEMU runs the guest: what the guest prints comes after."""
    deadline = time.monotonic() + timeout
    while True:
        text = console(drv, uuid)
        if pred(text):
            return text
        assert time.monotonic() < deadline, f"no {what} on the console within {timeout}s:\n{text[-2000:]}"
        await asyncio.sleep(0.2)


def ready_count(text: str) -> int:
    return text.count("cumulo-tiny-vm ready")


# -- the shared tiny-VM guest ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, InstanceSpec]]:
    state = tmp_path_factory.mktemp("qemu-vm") / "state"
    spec = make_spec(guest.tiny_image(), name="tiny-one", user_data=USER_DATA)

    async def spawn() -> None:
        drv = await new_driver(state)
        await drv.spawn(spec)
        await wait_console(drv, spec.uuid, lambda t: ready_count(t) == 1, "ready line")

    try:
        asyncio.run(spawn())
        yield state, spec
    finally:
        async def destroy() -> None:
            await (await new_driver(state)).destroy(spec.uuid)

        try:
            asyncio.run(destroy())
        finally:
            guest.kill_under(state.parent)


async def test_spawn_boots_the_guest_with_its_config_drive(vm: tuple[Path, InstanceSpec]) -> None:
    state, spec = vm
    drv = await new_driver(state)
    assert await drv.get_power_state(spec.uuid) == PowerState.RUNNING
    text = await drv.get_console_output(spec.uuid)
    assert "cumulo-tiny-vm ready" in text and f"hostname={spec.hostname}" in text  # meta_data.json read
    assert MARKER in text  # user_data ran
    rec = json.loads((drv.dir / spec.uuid / "instance.json").read_text())
    argv = rec["argv"]
    assert argv[argv.index("-name") + 1] == f"cumulo-{spec.uuid}" and "-daemonize" in argv
    assert "-no-reboot" in argv and argv[argv.index("-nic") + 1] == "none"  # no host networking
    assert all("format=" in a or "driver=qcow2" in a or "driver=raw" in a or "driver=file" in a
               for a in argv if a.startswith(("driver=", "file=")))
    assert rec["timings"]["qemu_running_s"] > 0
    # The fast path: the tiny VM's kernel is a vmlinux with a PVH entry, so microvm, virtio-mmio
    # disks and (under TCG) the host TSC rate on the kernel command line.
    assert argv[argv.index("-machine") + 1].startswith("microvm,")
    assert "virtio-blk-device,drive=config,id=config-dev" in argv and not any("-pci" in a for a in argv)
    if rec["vm"]["accel"] == "tcg":
        assert f"tsc_early_khz={drv.tsc_khz}" in argv[argv.index("-append") + 1] and drv.tsc_khz > 100_000
    assert "boot path: microvm" in text
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", "-f", "qcow2",  # noqa: S603, S607
                                      str(drv.dir / spec.uuid / "disk.qcow2")],
                                     capture_output=True, check=True).stdout)
    assert info["virtual-size"] == SMALL.root_gb << 30 and info["backing-filename-format"] == "qcow2"
    assert Path(info["backing-filename"]).parent == drv.base_dir  # the verified cache, not the store
    assert drv.info.details["accel"] in ("kvm", "tcg") and drv.info.details["accel_reason"]
    assert drv.info.hypervisor_type == "QEMU" and "qemu" in drv.info.instance_types


async def test_a_new_driver_adopts_the_running_guest(vm: tuple[Path, InstanceSpec]) -> None:
    state, spec = vm
    layout = process.Layout(state / "qemu" / spec.uuid)
    pid = process.live_pid(layout)
    assert pid is not None and process.is_ours(pid, spec.uuid)
    drv = await new_driver(state)
    assert {s.uuid: s.power_state for s in await drv.list_instances()} == {spec.uuid: PowerState.RUNNING}
    assert await qmp.call(layout.qmp, "query-name") == {"name": f"cumulo-{spec.uuid}"}
    assert process.live_pid(layout) == pid  # not restarted


async def test_pause_and_unpause_over_qmp(vm: tuple[Path, InstanceSpec]) -> None:
    state, spec = vm
    drv = await new_driver(state)
    await drv.pause(spec.uuid)
    assert await drv.get_power_state(spec.uuid) == PowerState.PAUSED
    assert await (await new_driver(state)).get_power_state(spec.uuid) == PowerState.PAUSED  # QMP says so
    await drv.unpause(spec.uuid)
    assert await drv.get_power_state(spec.uuid) == PowerState.RUNNING


async def test_hard_reboot_resets_the_same_process(vm: tuple[Path, InstanceSpec]) -> None:
    state, spec = vm
    drv = await new_driver(state)
    layout = process.Layout(state / "qemu" / spec.uuid)
    pid = process.live_pid(layout)
    boots = ready_count(console(drv, spec.uuid))
    await drv.reboot(spec, hard=True)
    assert await drv.get_power_state(spec.uuid) == PowerState.RUNNING
    assert process.live_pid(layout) == pid  # system_reset, not a new QEMU
    await wait_console(drv, spec.uuid, lambda t: ready_count(t) == boots + 1, "ready line of the reboot")
    # -no-reboot is back in force: a guest reboot would end QEMU again
    assert "system_reset" in console(drv, spec.uuid)


async def test_power_off_is_an_acpi_shutdown_and_power_on_boots_again(vm: tuple[Path, InstanceSpec]) -> None:
    state, spec = vm
    drv = await new_driver(state)
    layout = process.Layout(state / "qemu" / spec.uuid)
    old_pid = process.live_pid(layout)
    await drv.power_off(spec.uuid, timeout=60)
    assert await drv.get_power_state(spec.uuid) == PowerState.SHUTDOWN
    assert old_pid is not None and not process.is_ours(old_pid, spec.uuid)
    assert "power off: the guest powered off" in console(drv, spec.uuid)  # ACPI, not quit/kill
    with pytest.raises(DriverError):
        await drv.pause(spec.uuid)
    boots = ready_count(console(drv, spec.uuid))
    await drv.power_on(spec)
    assert await drv.get_power_state(spec.uuid) == PowerState.RUNNING
    assert process.live_pid(layout) not in (None, old_pid)
    await wait_console(drv, spec.uuid, lambda t: ready_count(t) == boots + 1, "ready line of the new boot")


async def test_console_log_is_bounded_by_list_instances(vm: tuple[Path, InstanceSpec]) -> None:
    state, spec = vm
    drv = await new_driver(state, qemu_console_max_bytes=512)
    path = drv.dir / spec.uuid / "console.log"
    assert path.stat().st_size > 512
    await drv.list_instances()
    assert path.stat().st_size <= 512
    assert len((await drv.get_console_output(spec.uuid, max_bytes=100)).encode()) <= 100


async def test_destroy_leaves_no_process_and_no_file(vm: tuple[Path, InstanceSpec]) -> None:
    state, spec = vm
    drv = await new_driver(state)
    await drv.pause(spec.uuid)  # a paused guest goes as well
    await drv.destroy(spec.uuid)
    assert nothing_left(drv, spec.uuid) == []
    assert await drv.get_power_state(spec.uuid) == PowerState.NOSTATE
    await drv.destroy(spec.uuid)  # idempotent


# -- cheap guests: a BIOS boot sector ----------------------------------------------------------------


async def test_seabios_boot_of_a_raw_disk_and_orphans_are_only_ours(tmp_path: Path) -> None:
    a, b = await new_driver(tmp_path / "a"), await new_driver(tmp_path / "b")
    mine, other = make_spec(guest.bios_image(tmp_path)), make_spec(guest.bios_image(tmp_path))
    try:
        await a.spawn(mine)
        await b.spawn(other)
        await wait_console(a, mine.uuid, lambda t: guest.BIOS_BANNER in t, "boot sector's banner")
        argv = json.loads((a.dir / mine.uuid / "instance.json").read_text())["argv"]
        assert "-kernel" not in argv and argv[argv.index("-machine") + 1].startswith("q35,")  # SeaBIOS
        assert "boot path: q35 (a disk image" in console(a, mine.uuid)
        assert await a.cleanup_orphans(set()) == [mine.uuid]
        assert nothing_left(a, mine.uuid) == []
        assert await b.get_power_state(other.uuid) == PowerState.RUNNING  # another cloud's VM stays
        assert await b.cleanup_orphans({other.uuid}) == []
    finally:
        guest.kill_under(tmp_path)


async def test_an_image_that_prints_nothing_is_active_and_stays_running(tmp_path: Path) -> None:
    """Nova reports a guest ACTIVE once it runs, whatever it prints (Tempest's
    test_nova_image_snapshot_dependency boots a 1 KB blob): a raw disk with no boot sector."""
    drv = await new_driver(tmp_path / "s")
    blob = tmp_path / "blob.raw"
    blob.write_bytes(bytes(range(256)) * 4)  # 1 KB, no 0x55AA signature: SeaBIOS finds nothing to boot
    spec = make_spec(ImageSpec(id=str(uuidlib.uuid4()), path=str(blob), disk_format="raw", container_format="bare"))
    layout = process.Layout(drv.dir / spec.uuid)
    try:
        await drv.spawn(spec)
        pid = process.live_pid(layout)
        assert pid is not None and await drv.get_power_state(spec.uuid) == PowerState.RUNNING

        async def firmware_read_the_disk() -> bool:
            stats = await qmp.call(layout.qmp, "query-blockstats")
            root = next(b for b in stats if "root-dev" in str(b.get("qdev", "")))
            return int(root["stats"]["rd_operations"]) > 0

        deadline = time.monotonic() + 120
        while not await firmware_read_the_disk():  # SeaBIOS tried the disk: nothing bootable there
            assert time.monotonic() < deadline, "the firmware never read the root disk"
            await asyncio.sleep(0.2)
        # ... and the guest still runs (SeaBIOS waits, QEMU's reboot-timeout is -1): no build failure,
        # no exit, the same process.
        assert {s.uuid: s.power_state for s in await drv.list_instances()} == {spec.uuid: PowerState.RUNNING}
        assert process.live_pid(layout) == pid
        await drv.reboot(spec, hard=True)  # a silent guest reboots without waiting for output
        assert await drv.get_power_state(spec.uuid) == PowerState.RUNNING and process.live_pid(layout) == pid
        await drv.destroy(spec.uuid)
        assert nothing_left(drv, spec.uuid) == []
    finally:
        guest.kill_under(tmp_path)


async def test_a_kernel_panic_after_spawn_ends_qemu_with_the_panic_on_the_console(tmp_path: Path) -> None:
    drv = await new_driver(tmp_path / "s")
    art = guest.tiny_vm()
    image = guest.tiny_image(os_command_line="console=ttyS0 panic=-1 reboot=t root=/dev/nowhere rdinit=/nonexistent")
    image = ImageSpec(**{**image.__dict__, "ramdisk_path": ""})  # no initramfs: the kernel cannot mount root
    assert art.kernel.is_file()
    spec = make_spec(image)
    try:
        await drv.spawn(spec)  # QEMU runs the guest: that is all spawn waits for
        deadline = time.monotonic() + 120
        while await drv.get_power_state(spec.uuid) != PowerState.SHUTDOWN:  # -no-reboot: the panic's reset exits
            assert time.monotonic() < deadline, console(drv, spec.uuid)[-2000:]
            await asyncio.sleep(0.2)
        assert "Kernel panic" in await drv.get_console_output(spec.uuid)
        await drv.destroy(spec.uuid)
        assert nothing_left(drv, spec.uuid) == []
    finally:
        guest.kill_under(tmp_path)


# -- untrusted images ----------------------------------------------------------------------------------


async def test_a_corrupt_qcow2_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    drv = await new_driver(tmp_path / "s")
    spec = make_spec(guest.tiny_image(guest.corrupt_qcow2(tmp_path)))
    with pytest.raises(DriverError) as err:
        await drv.spawn(spec)
    assert "qemu-img check" in str(err.value)
    assert nothing_left(drv, spec.uuid) == [] and list(drv.base_dir.iterdir()) == []


async def test_a_qcow2_backed_by_a_host_file_is_refused(tmp_path: Path) -> None:
    drv = await new_driver(tmp_path / "s")
    secret = tmp_path / "host-secret"
    secret.write_bytes(b"host secret\n" * 100)
    for image in (guest.tiny_image(guest.backed_qcow2(tmp_path, str(secret))),
                  ImageSpec(id="x", path=str(guest.backed_qcow2(tmp_path, "/etc/shadow")), disk_format="qcow2",
                            container_format="bare")):
        spec = make_spec(image)
        with pytest.raises(DriverError) as err:
            await drv.spawn(spec)
        assert "backing file" in str(err.value)
        assert nothing_left(drv, spec.uuid) == []
    assert list(drv.base_dir.iterdir()) == []


async def test_an_external_data_file_and_other_formats_are_refused(tmp_path: Path) -> None:
    drv = await new_driver(tmp_path / "s")
    data = tmp_path / "data.raw"
    img = tmp_path / "datafile.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", f"data_file={data},data_file_raw=on",  # noqa: S603, S607
                    str(img), "16M"], check=True)
    raw = tmp_path / "plain.raw"
    raw.write_bytes(b"\0" * 65536)
    cases = [(ImageSpec(id="d", path=str(img), disk_format="qcow2", container_format="bare"), "data file"),
             (ImageSpec(id="v", path=str(raw), disk_format="vmdk", container_format="bare"), "vmdk"),
             (ImageSpec(id="m", path=str(raw), disk_format="qcow2", container_format="bare"), "not a valid qcow2")]
    for image, why in cases:
        spec = make_spec(image)
        with pytest.raises(DriverError) as err:
            await drv.spawn(spec)
        assert why in str(err.value)
        assert nothing_left(drv, spec.uuid) == []


# -- parts -----------------------------------------------------------------------------------------------


def test_config_drive_is_an_iso_labelled_config_2(tmp_path: Path) -> None:
    spec = InstanceSpec(uuid=str(uuidlib.uuid4()), name="n1", hostname="host-1", project_id="p", flavor=SMALL,
                        image=None, user_data=b"#!/bin/sh\necho hi\n", key_data="ssh-ed25519 AAAA k@x",
                        network_info=[{"id": "v1", "mac": "fa:16:3e:00:00:01", "address": "10.0.0.5"}])
    path = tmp_path / "config.iso"
    configdrive.build_iso(path, spec)
    assert os.stat(path).st_mode & 0o777 == 0o600
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        assert iso.pvd.volume_identifier.decode().strip() == "config-2"

        def read(rel: str) -> bytes:
            import io

            buf = io.BytesIO()
            iso.get_file_from_iso_fp(buf, rr_path="/" + rel)
            return buf.getvalue()

        meta = json.loads(read("openstack/latest/meta_data.json"))
        assert meta["uuid"] == spec.uuid and meta["hostname"] == "host-1"
        assert meta["public_keys"] == {"default": "ssh-ed25519 AAAA k@x"}
        assert read("openstack/latest/user_data") == spec.user_data
        net = json.loads(read("openstack/latest/network_data.json"))
        assert net["networks"][0]["ip_address"] == "10.0.0.5"
    finally:
        iso.close()


def test_config_drive_is_required_as_nova_decides(tmp_path: Path) -> None:
    """Nova's configdrive.required_by: asked for, forced by the host, or the image says mandatory;
    without a drive the VM's argv has no config disk (the guest reads the metadata service)."""
    image = ImageSpec(id="i", path="/x", disk_format="qcow2", container_format="bare", properties={})
    plain = make_spec(image)
    assert not configdrive.required_by(plain, force=False)
    assert configdrive.required_by(plain, force=True)
    assert configdrive.required_by(dataclasses.replace(plain, config_drive=True), force=False)
    mandatory = dataclasses.replace(image, properties={"img_config_drive": "mandatory"})
    assert configdrive.required_by(make_spec(mandatory), force=False)
    optional = dataclasses.replace(image, properties={"img_config_drive": "optional"})
    assert not configdrive.required_by(make_spec(optional), force=False)
    layout = process.Layout(tmp_path / plain.uuid)
    with_drive = process.build_argv(layout, process.VmConfig(memory_mb=256, vcpus=1, accel="tcg"))
    without = process.build_argv(layout, process.VmConfig(memory_mb=256, vcpus=1, accel="tcg", config_drive=False))
    assert any(str(layout.config_iso) in a for a in with_drive)
    assert not any(str(layout.config_iso) in a or "drive=config" in a for a in without)


async def test_the_users_config_drive_request_reaches_the_spec() -> None:
    """server create --use-config-drive stores config_drive "True" (Nova's column); the agent's
    InstanceSpec carries it to the driver."""
    from cumulo.compute import specs

    for stored, wanted in (("True", True), ("", False), (None, False)):
        spec = await specs.instance_spec({"uuid": str(uuidlib.uuid4()), "config_drive": stored}, None)
        assert spec.config_drive is wanted, stored


async def test_accel_probe_boot_sector_and_choice() -> None:
    sector = accel.boot_sector()
    assert len(sector) == 512 and sector.endswith(b"\x55\xaa")
    took, why = await accel.measure("tcg", timeout=20)
    assert took is not None and took < 20, why
    assert await accel.choose("tcg") == ("tcg", "qemu_accel=tcg in the settings")
    chosen, reason = await accel.choose("auto")
    assert chosen in ("kvm", "tcg") and reason


async def test_qmp_client_commands_errors_and_events(tmp_path: Path) -> None:
    """Against a QEMU with no guest (-S), in a dir deep enough that the socket path passes 107 bytes."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    layout = process.Layout(deep / str(uuidlib.uuid4()))
    layout.dir.mkdir()
    argv = [process.QEMU, "-name", f"cumulo-{layout.uuid}", "-nodefaults", "-no-user-config", "-display", "none",
            "-machine", "q35,accel=tcg", "-m", "32", "-S", "-pidfile", str(layout.pidfile), "-daemonize",
            "-qmp", f"unix:{layout.qmp.name},server=on,wait=off"]
    assert len(str(layout.qmp)) > 107
    try:
        pid = await process.start(layout, argv)
        async with qmp.session(layout.qmp) as conn:
            assert (await conn.execute("query-status"))["status"] == "prelaunch"
            with pytest.raises(qmp.QmpError) as err:
                await conn.execute("no-such-command")
            assert err.value.klass == "CommandNotFound"
            mark = len(conn.events)
            await conn.execute("stop")
            await conn.execute("cont")
            ev = await conn.wait_event(["RESUME"], timeout=5, since=mark)
            assert ev is not None and ev["event"] == "RESUME"
            await conn.execute("quit")
            assert await conn.wait_closed(5)
        assert await process.wait_exit(pid, layout.uuid, 5)
    finally:
        guest.kill_under(tmp_path)
