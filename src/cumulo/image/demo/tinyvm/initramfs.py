"""The tiny VM's initramfs: static busybox, the virtio modules of the kernel, /init (init.sh), and
the QEMU guest agent (Debian's qemu-ga and its libraries, guestagent.py).

Stage 1 modules load on every boot (virtio over PCI (q35; skipped without a PCI bus) and over MMIO
(microvm), disk, NIC, the virtio-serial console of the guest agent's port (only when the machine
has a virtio-serial device); ISO9660 for the config drive; the ACPI power button). The VFAT modules load
only for a VFAT config drive. Stage 2 (ATA/SATA CD-ROM) loads only when no config drive shows up on virtio,
because probing the ATA ports costs boot time under TCG.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from cumulo.image.demo.tinyvm.cpio import Entry, write_newc
from cumulo.image.demo.tinyvm.guestagent import BLOCKED_RPCS, GuestAgent
from cumulo.image.demo.tinyvm.kernel import Kernel

BUSYBOX = Path("/bin/busybox")
STAGE1_MODULES = [
    "virtio_pci", "virtio_mmio", "virtio_blk", "virtio_net",  # virtio_pci* skipped without a PCI bus
    "virtio_console",  # the guest agent's port; skipped without a virtio-serial device
    "isofs", "button", "evdev",
]
VFAT_MODULES = ["vfat", "nls_cp437", "nls_ascii", "nls_utf8"]  # only for a VFAT config drive
STAGE2_MODULES = ["ata_piix", "sr_mod"]  # the cloud kernel has no AHCI: on q35 use virtio-blk
# Every busybox applet the init script, the udhcpc script and a console user need; linked in /bin.
# Volumes: ext4 is built into the cloud kernel, so user_data mounts one (`mount -t ext4 /dev/vdb /mnt`);
# mke2fs formats a blank one (ext2, which a container's ext4 mount reads as well).
APPLETS = (
    "acpid", "awk", "cat", "chmod", "cp", "cttyhack", "cut", "date", "df", "dmesg", "echo", "env", "false",
    "findfs", "free", "grep", "halt", "head", "hostname", "id", "ifconfig", "init", "insmod", "ip", "ipcalc",
    "kill", "less", "ln", "ls", "lsmod", "mkdir", "mke2fs", "mkfifo", "mknod", "more", "mount", "mv", "nc", "netstat",
    "ping",
    "poweroff", "printf", "ps", "pwd", "reboot", "renice", "rm", "rmdir", "route", "run-parts", "sed", "seq", "sh",
    "sleep", "sort", "stat", "sync", "tail", "tee", "test", "timeout", "top", "touch", "tr", "true", "udhcpc",
    "umount",
    "uname", "uptime", "vi", "wc", "wget", "which", "xargs",
)
INITTAB = b"""\
# busybox init: a root shell on the console (ttyS0), respawned when it exits.
::respawn:/bin/cttyhack /bin/sh -l
::ctrlaltdel:/bin/reboot
::shutdown:/bin/sync
"""
PROFILE = b'export PATH=/bin HOME=/root\nPS1="$(hostname) # "\ncd /root\n'
PASSWD = b"root:x:0:0:root:/root:/bin/sh\n"
GROUP = b"root:x:0:\n"
# busybox acpid runs this on the ACPI power button: the host asked for a stop. Until /init hands
# PID 1 to busybox init, nothing would act on `poweroff`'s signal: then sync and power off at once.
POWER_BUTTON = b"""\
#!/bin/sh
[ -e /run/init-handoff ] && exec poweroff
sync
exec poweroff -f
"""
# udhcpc's hook: apply the lease (busybox ships none). Classless static routes (option 121:
# "dest/len gateway ...", e.g. Neutron's 169.254.169.254/32 route) replace the router option when
# given (RFC 3442).
UDHCPC_SCRIPT = b"""\
#!/bin/sh
case "$1" in
    deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
    bound|renew)
        ip -4 addr flush dev "$interface"
        ip addr add "$ip/${mask:-24}" dev "$interface"
        if [ -n "$staticroutes" ]; then
            set -- $staticroutes
            while [ $# -ge 2 ]; do ip route add "$1" via "$2" dev "$interface"; shift 2; done
        else
            for r in $router; do ip route add default via "$r" dev "$interface"; break; done
        fi
        : > /etc/resolv.conf
        for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
        echo "cumulo-tiny-vm: $interface $ip/${mask:-24} (DHCP)" > /dev/console ;;
esac
exit 0
"""


MODULE_SIG_MAGIC = b"~Module signature appended~\n"


class BusyboxMissing(Exception):
    pass


def strip_signature(module: bytes) -> bytes:
    """The module without its appended signature. The kernel verifies a signature on every insmod
    even when it does not enforce one (Debian: CONFIG_MODULE_SIG=y, not forced); under TCG that
    costs about 0.1 s over the tiny VM's modules, and an unsigned one only taints the kernel ('E').
    Layout: module, signature, struct module_signature (12 bytes, sig_len big-endian last), magic."""
    if not module.endswith(MODULE_SIG_MAGIC) or len(module) < len(MODULE_SIG_MAGIC) + 12:
        return module
    body = module[:-len(MODULE_SIG_MAGIC)]
    sig_len = int.from_bytes(body[-4:], "big")
    end = len(body) - 12 - sig_len
    return body[:end] if end > 0 else module


def init_script(kernel: Kernel) -> bytes:
    """/init with the module lists of `kernel` in load order."""
    text = resources.files("cumulo.image.demo.tinyvm").joinpath("init.sh").read_text()
    stage1 = kernel.load_order(STAGE1_MODULES)
    vfat = [m for m in kernel.load_order(STAGE1_MODULES + VFAT_MODULES) if m not in stage1]
    stage2 = [m for m in kernel.load_order(STAGE1_MODULES + STAGE2_MODULES) if m not in stage1]
    return (text.replace("@STAGE1@", " ".join(stage1)).replace("@STAGE2@", " ".join(stage2))
            .replace("@VFAT@", " ".join(vfat)).replace("@QGA_BLOCK@", ",".join(BLOCKED_RPCS)).encode())


def initramfs_entries(kernel: Kernel, busybox: Path = BUSYBOX, agent: GuestAgent | None = None) -> list[Entry]:
    """The archive's entries; with `agent`, qemu-ga in bin/ and its libraries where Debian has them."""
    if not busybox.is_file():
        raise BusyboxMissing(f"{busybox} not found: install Debian's static busybox (apt-get install busybox-static)")
    entries = [
        Entry.file("init", init_script(kernel), 0o755),
        Entry.file("bin/busybox", busybox.read_bytes(), 0o755),
        Entry.symlink("sbin", "bin"),
        Entry.dir("usr"),
        Entry.symlink("usr/bin", "../bin"),
        Entry.symlink("usr/sbin", "../bin"),
        Entry.chardev("dev/console", 5, 1),
        Entry.chardev("dev/null", 1, 3, 0o666),
        Entry.dir("proc"), Entry.dir("sys"), Entry.dir("run"), Entry.dir("mnt/config"),
        Entry.dir("tmp", 0o1777), Entry.dir("root", 0o700), Entry.dir("var/log"),
        Entry.symlink("var/run", "../run"),
        Entry.file("etc/inittab", INITTAB),
        Entry.file("etc/profile", PROFILE),
        Entry.file("etc/passwd", PASSWD),
        Entry.file("etc/group", GROUP),
        Entry.file("etc/acpi/PWRF/00000080", POWER_BUTTON, 0o755),
        Entry.file("etc/udhcpc.script", UDHCPC_SCRIPT, 0o755),
    ]
    entries += [Entry.symlink(f"bin/{a}", "busybox") for a in sorted(set(APPLETS))]
    modules = kernel.load_order(STAGE1_MODULES + VFAT_MODULES + STAGE2_MODULES)
    entries += [Entry.file(f"lib/modules/{kernel.release}/{m}.ko", strip_signature(kernel.module_path(m).read_bytes()))
                for m in modules]
    if agent is not None:
        entries += [Entry.file(path, data, mode) for path, data, mode in agent.files()]
    return entries


def build_initramfs(kernel: Kernel, busybox: Path = BUSYBOX, agent: GuestAgent | None = None) -> bytes:
    """The newc initramfs, uncompressed (deterministic for a given kernel and busybox). Blocking.

    Not gzip'd: under TCG the guest kernel took 0.56 s to inflate the 1.7 MB gzip of it and
    0.17 s to unpack the 4.5 MB plain archive (docs/architecture.md, "VM boot paths")."""
    return write_newc(initramfs_entries(kernel, busybox, agent))
