"""The tiny VM boots under a BARE qemu-system-x86_64 (no driver): the banner and the ready line on
the serial console, the hostname and public key from a config drive we make, user_data run, a
shell that answers commands typed on ttyS0, and an orderly poweroff on the ACPI power button.

One boot for all of it (TCG eats a core). The kernel .deb is cached in CUMULO_TEST_BUILD_CACHE
(default: the host-wide cache, tinyvm.default_cache()), so only the first run needs the network.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from cumulo.compute.drivers.base import FlavorSpec, InstanceSpec
from cumulo.compute.drivers.qemu.configdrive import build_iso
from cumulo.image.demo import tinyvm
from cumulo.image.demo.tinyvm.bareboot import qemu_argv

pytestmark = pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="QEMU not installed")

CACHE = Path(os.environ.get("CUMULO_TEST_BUILD_CACHE") or tinyvm.default_cache())
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTheTinyVmBootTest tiny@test"


class Console:
    """The guest's serial console on QEMU's stdio."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc, self.text, self.t0 = proc, "", time.monotonic()
        self.seen: dict[str, float] = {}
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)

    def wait_for(self, needle: str, timeout: float) -> float:
        """Seconds since QEMU started when `needle` first showed up on the console."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"{needle!r} not on the console within {timeout}s; it shows:\n{self.text[-3000:]}")
            try:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
            except BlockingIOError:
                chunk = None
            if chunk:
                self.text += chunk.decode(errors="replace")
            else:
                time.sleep(0.02)
        return self.seen.setdefault(needle, time.monotonic() - self.t0)

    def type(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()


def _qmp(path: Path, command: str) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(path))
        f = s.makefile("rwb")
        f.readline()  # greeting
        for cmd in ("qmp_capabilities", command):
            f.write(json.dumps({"execute": cmd}).encode() + b"\n")
            f.flush()
            while True:  # skip events until the answer
                reply = json.loads(f.readline())
                if "return" in reply or "error" in reply:
                    assert "return" in reply, reply
                    break


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> tinyvm.Artifacts:
    out = tmp_path_factory.mktemp("tiny-vm")
    try:
        return asyncio.run(tinyvm.build_tiny_vm(out, CACHE))
    except tinyvm.BuildFailed as exc:
        pytest.skip(f"cannot build the tiny VM here: {exc}")


def test_build_is_reproducible_and_offline_once_cached(artifacts: tinyvm.Artifacts, tmp_path: Path) -> None:
    again = asyncio.run(tinyvm.build_tiny_vm(tmp_path / "again", CACHE))
    for a, b in ((artifacts.kernel, again.kernel), (artifacts.ramdisk, again.ramdisk), (artifacts.disk, again.disk)):
        assert a.read_bytes() == b.read_bytes()
    assert again.kernel_release.endswith("-cloud-amd64")


def test_bare_qemu_boots_to_banner_and_uses_the_config_drive(artifacts: tinyvm.Artifacts, tmp_path: Path) -> None:
    drive = tmp_path / "config.iso"
    build_iso(drive, InstanceSpec(
        uuid="5a6c4f4e-0000-4000-8000-000000000001", name="boot test vm", hostname="boot-test-vm", project_id="p",
        flavor=FlavorSpec(vcpus=1, memory_mb=256, root_gb=0), image=None, key_data=KEY,
        user_data=b"#!/bin/sh\necho USERDATA-MARKER-$((40 + 2)) on $(hostname)\n",
    ))  # the QEMU driver's own config drive
    qmp = tmp_path / "qmp.sock"
    argv = qemu_argv(artifacts.kernel, artifacts.ramdisk, config_drive=drive, qmp=qmp)
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # noqa: S603  # fixed argv, no shell
    try:
        console = Console(proc)
        banner_s = console.wait_for(f"{tinyvm.BANNER} (kernel {artifacts.kernel_release})", 120)
        console.wait_for(f"{tinyvm.READY} hostname=boot-test-vm uptime=", 60)
        assert "USERDATA-MARKER-42 on boot-test-vm" in console.text
        assert console.text.index("USERDATA-MARKER-42") < console.text.index(tinyvm.READY)
        assert "config drive /dev/vda mounted" in console.text
        console.wait_for("boot-test-vm # ", 30)  # the shell on ttyS0 is up
        console.type("echo TYPED-$((6 * 7)); cat /root/.ssh/authorized_keys; grep MemTotal /proc/meminfo")
        console.wait_for("TYPED-42", 30)
        console.wait_for(KEY, 10)
        console.wait_for("MemTotal:", 10)
        _qmp(qmp, "system_powerdown")  # the host's "stop": ACPI power button -> acpid -> poweroff
        assert proc.wait(timeout=60) == 0
        print(f"banner after {banner_s:.2f}s (TCG, q35)")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
