"""Live migration of a real QEMU guest (the tiny VM under TCG) between two hosts' drivers on one
machine: each driver has its own state dir, the underlay is 127.0.0.1, the local disks are copied by
NBD drive-mirror. One guest, one move: its uptime ticks on over the move (no reboot), the source
QEMU is gone, the destination runs it, QEMU reports a downtime. Then an incoming migration that is
aborted leaves nothing on the destination and the guest running on its source.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid as uuidlib
from collections.abc import AsyncIterator
from pathlib import Path

import _qemu_guest
import pytest

from cumulo.compute.drivers.base import FlavorSpec, InstanceSpec, PowerState
from cumulo.compute.drivers.qemu import QemuDriver, process

pytestmark = pytest.mark.skipif(bool(_qemu_guest.QEMU_MISSING), reason=_qemu_guest.QEMU_MISSING or "QEMU here")

SMALL = FlavorSpec(vcpus=1, memory_mb=128, root_gb=1, ephemeral_gb=1)
USER_DATA = b"""#!/bin/sh
(while :; do echo "tick $(cut -d' ' -f1 /proc/uptime)"; sleep 1; done) &
"""
PORTS = (49400, 49460)


@pytest.fixture
async def drivers(tmp_path: Path) -> AsyncIterator[tuple[QemuDriver, QemuDriver]]:
    src = await _qemu_guest.tcg_driver(tmp_path / "src" / "state", "lm-src")
    dst = await _qemu_guest.tcg_driver(tmp_path / "dst" / "state", "lm-dst")
    try:
        yield src, dst
    finally:
        for drv in (src, dst):
            for st in await drv.list_instances():
                with contextlib.suppress(Exception):
                    await drv.destroy(st.uuid)
        _qemu_guest.kill_under(tmp_path)


def ticks(drv: QemuDriver, uid: str) -> list[float]:
    path = drv.dir / uid / "console.log"
    text = path.read_text(errors="replace") if path.exists() else ""
    return [float(t) for t in re.findall(r"tick ([0-9.]+)", text)]


async def wait_ticks(drv: QemuDriver, uid: str, above: float, timeout: float = 300.0) -> float:
    deadline = time.monotonic() + timeout
    while True:
        seen = [t for t in ticks(drv, uid) if t > above]
        if seen:
            return max(seen)
        if time.monotonic() > deadline:
            path = drv.dir / uid / "console.log"
            tail = path.read_text(errors="replace")[-1500:] if path.exists() else "(no console)"
            raise AssertionError(f"no tick above {above} on {drv.host_name}'s console:\n{tail}")
        await asyncio.sleep(0.3)


async def test_live_migration_keeps_the_guest_running(drivers: tuple[QemuDriver, QemuDriver]) -> None:
    src, dst = drivers
    uid = str(uuidlib.uuid4())
    spec = InstanceSpec(uuid=uid, name="lm", hostname="lm", project_id="p", flavor=SMALL,
                        image=_qemu_guest.tiny_image(), user_data=USER_DATA)
    await src.spawn(spec)
    first = await wait_ticks(src, uid, 0.0)
    await wait_ticks(src, uid, first)  # the guest ticks along
    old_pid = process.live_pid(src._layout(uid))
    assert old_pid is not None

    # An incoming migration that is aborted before any byte moved leaves nothing on the destination.
    source = await src.live_migration_source(uid)
    assert set(source["disks"]) == {"root", "ephemeral"} and all(v > 0 for v in source["disks"].values())
    target = await dst.prepare_incoming(spec, source, "127.0.0.1", PORTS)
    assert process.live_pid(dst._layout(uid)) is not None
    await dst.abort_incoming(uid)
    assert not process.scan_pids(uid, dst._layout(uid).pidfile) and not (dst.dir / uid).exists()
    with pytest.raises(Exception, match="live migration"):  # the target is gone: the source runs on
        await src.live_migrate(uid, target, timeout=60)
    assert await src.get_power_state(uid) == PowerState.RUNNING
    before = await wait_ticks(src, uid, first)

    # The real move.
    source = await src.live_migration_source(uid)
    target = await dst.prepare_incoming(spec, source, "127.0.0.1", PORTS)
    figures = await src.live_migrate(uid, target)
    await dst.finish_incoming(uid)
    await src.drop_migrated(uid)
    assert figures["downtime_ms"] >= 0 and figures["ram_bytes"] > 0, figures  # (an idle guest may stop < 1 ms)
    print(f"live migration figures: {figures}")
    assert process.scan_pids(uid, src._layout(uid).pidfile) == [] and not (src.dir / uid).exists()
    assert await dst.get_power_state(uid) == PowerState.RUNNING
    # Uptime goes on from where it was on the source (no reboot: a new boot would start near 0).
    after = await wait_ticks(dst, uid, 0.0)
    later = await wait_ticks(dst, uid, after)
    assert later > before, (before, later)
    assert min(ticks(dst, uid) or [0.0]) >= before - 1.0 or not ticks(dst, uid)
    # The destination's record boots plainly at a later start (no -incoming).
    argv = dst.read_record(dst.dir / uid)["argv"]
    assert "-incoming" not in argv and "-S" not in argv
    # Its disks are whole copies: a hard reboot of the guest on the destination boots again.
    await dst.reboot(spec, hard=True)
    deadline = time.monotonic() + 180
    while not any(t < before for t in ticks(dst, uid)):
        assert time.monotonic() < deadline, "the migrated guest did not boot again from its copied disk"
        await asyncio.sleep(0.5)


async def test_a_server_booted_from_a_shared_volume_moves_without_copying_it(
    drivers: tuple[QemuDriver, QemuDriver], tmp_path: Path
) -> None:
    """The shared-volume case: the root is a block-store volume both hosts see (one machine), no
    local disk, so nothing goes over NBD; the destination opens the same file."""
    import subprocess

    from cumulo.compute.drivers.base import DiskSpec

    src, dst = drivers
    volume = tmp_path / "shared-volumes" / "root.raw"
    volume.parent.mkdir()
    subprocess.run(["qemu-img", "convert", "-q", "-f", "qcow2", "-O", "raw",  # noqa: S603, S607
                    str(_qemu_guest.tiny_vm().disk), str(volume)], check=True)
    uid = str(uuidlib.uuid4())
    root = DiskSpec(volume_id=str(uuidlib.uuid4()), path=str(volume), device_name="/dev/vda", boot_index=0)
    spec = InstanceSpec(uuid=uid, name="lmv", hostname="lmv", project_id="p",
                        flavor=FlavorSpec(vcpus=1, memory_mb=128, root_gb=1), image=_qemu_guest.tiny_image(),
                        user_data=USER_DATA, disks=(root,))
    await src.spawn(spec)
    before = await wait_ticks(src, uid, await wait_ticks(src, uid, 0.0))
    source = await src.live_migration_source(uid)
    assert source["disks"] == {}  # nothing local to copy
    target = await dst.prepare_incoming(spec, source, "127.0.0.1", PORTS)
    assert target["exports"] == []
    figures = await src.live_migrate(uid, target)
    await dst.finish_incoming(uid)
    await src.drop_migrated(uid)
    print(f"shared-volume move: {figures}")
    assert figures["downtime_ms"] >= 0 and figures["ram_bytes"] > 0 and figures["disk_bytes"] == 0
    assert await dst.get_power_state(uid) == PowerState.RUNNING
    assert await wait_ticks(dst, uid, before) > before  # went on: no reboot
    assert dst.read_record(dst.dir / uid)["disks"][0]["path"] == str(volume) and volume.exists()
    assert not (dst.dir / uid / "disk.qcow2").exists()


async def test_a_server_whose_root_volume_is_another_hosts_moves_over_the_same_nbd_export(
    drivers: tuple[QemuDriver, QemuDriver], tmp_path: Path
) -> None:
    """Volumes from any host (issue 14): the root volume is a volume host's NBD export (real qemu-nbd,
    TLS with the attachment's key); the source's QEMU boots from it with its own nbd client, the
    destination opens the same export with its own key dir (the spec's), nothing is copied, and the
    guest runs on."""
    import dataclasses
    import subprocess

    from cumulo.blockstore import nbd
    from cumulo.compute.drivers.base import DiskSpec

    src, dst = drivers
    volume = tmp_path / "volume-host" / "root.raw"
    volume.parent.mkdir()
    subprocess.run(["qemu-img", "convert", "-q", "-f", "qcow2", "-O", "raw",  # noqa: S603, S607
                    str(_qemu_guest.tiny_vm().disk), str(volume)], check=True)
    att, vid, secret = str(uuidlib.uuid4()), str(uuidlib.uuid4()), b"s" * 32
    run = tmp_path / "volume-host" / "run"
    export = nbd.new_export(att, vid, "127.0.0.1", nbd.free_port("127.0.0.1", 21809, 21999, set()), read_only=False)
    await nbd.serve(run, export, str(volume), nbd.psk_key(secret, att))
    try:
        keys = {side: str(nbd.write_psk(tmp_path / side / "keys" / att, nbd.psk_identity(att), nbd.psk_key(secret, att)))
                for side in ("src", "dst")}
        target = {k: str(v) for k, v in export.target().items() if k != "tls"}
        root = DiskSpec(volume_id=vid, path=f"nbd://127.0.0.1:{export.port}/{export.name}", device_name="/dev/vda",
                        boot_index=0, kind="nbd", nbd=tuple(sorted(target.items())), tls_dir=keys["src"])
        uid = str(uuidlib.uuid4())
        spec = InstanceSpec(uuid=uid, name="lmn", hostname="lmn", project_id="p",
                            flavor=FlavorSpec(vcpus=1, memory_mb=128, root_gb=1), image=_qemu_guest.tiny_image(),
                            user_data=USER_DATA, disks=(root,))
        await src.spawn(spec)
        before = await wait_ticks(src, uid, await wait_ticks(src, uid, 0.0))
        source = await src.live_migration_source(uid)
        assert source["disks"] == {}  # nothing local to copy
        here = dataclasses.replace(spec, disks=(dataclasses.replace(root, tls_dir=keys["dst"]),))
        incoming = await dst.prepare_incoming(here, source, "127.0.0.1", PORTS)
        figures = await src.live_migrate(uid, incoming)
        await dst.finish_incoming(uid)
        await src.drop_migrated(uid)
        print(f"move over a volume host's NBD export: {figures}")
        assert figures["disk_bytes"] == 0 and await dst.get_power_state(uid) == PowerState.RUNNING
        assert await wait_ticks(dst, uid, before) > before  # went on: no reboot
        [disk] = dst.read_record(dst.dir / uid)["disks"]
        assert disk["kind"] == "nbd" and disk["tls_dir"] == keys["dst"]
        assert not process.scan_pids(uid, src._layout(uid).pidfile)
        await dst.destroy(uid)
    finally:
        await nbd.unserve(run, att)
