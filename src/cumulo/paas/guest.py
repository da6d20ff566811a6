"""PaaS nodes on QEMU VMs (the tiny VM): a persistent PAAS_ROOT, and the at-boot bootstrap.

The tiny VM runs from its initramfs (RAM, fresh at each boot). What persists is its root disk: the
image's disk (an empty qcow2 for the `tiny-vm` image), or a volume it boots from. At boot its init
mounts a disk whose ext2/3/4 filesystem is labelled `cumulo-root` on /mnt/root, BEFORE it runs a
`#!` user_data (image/demo/tinyvm/init.sh). PAAS_ROOT on a VM is /mnt/root/paas (paas/exec.py).

- `prepare_script`: the "prepare" step's shell (run through exec, `/bin/sh -s`): waits until the
  guest's boot has finished (init's /run/init-handoff: user_data, if any, has run), then makes
  /mnt/root the persistent disk, idempotently: already mounted -> nothing; a disk labelled
  cumulo-root -> mounted; else the VM's root disk (the first virtio/SCSI disk that is not the config
  drive) is formatted `mke2fs -L cumulo-root` and mounted, but ONLY when it is blank (its first
  68 KiB all zero: no partition table, no superblock): a disk holding anything else fails the step
  and is never formatted. One prepare runs at a time in the guest (a lock dir in /run holding its
  pid): a resumed step waits for the first one's shell, which QGA leaves running when Cumulo dies,
  then finds the disk mounted (nothing to do), labelled (mounted) or still blank (formatted); a
  format cut short by a guest crash leaves a filesystem whose mount fails, and the step says so
  rather than format a disk that is no longer blank.
  A template image (ComputeService.snapshot of the node: the qcow2 of its disk) then holds the
  installed products, and a node booted from it mounts them at boot.
- `boot_user_data`: the user_data of a template node of a tier that asks for it (tier metadata
  `bootstrap=user_data`): a `#!/bin/sh` script running prepare (without the wait) then each
  product's configure and start as the engine would (paas/exec.py `script`, the same run ids as the
  steps), stopping at the first failure. The engine's configure/start steps then run the same
  wrapper through exec, which COLLECTS the boot's result (its `<run>.rc` marker) instead of running
  the recipe again, and runs it only when the boot did not (user_data lost or cut short).
- `is_vm_image`: whether nodes of an image are VMs with the guest agent (Nova's image property
  `hw_qemu_guest_agent`): the deploy marks such tiers `"guest": "vm"` in the instance's environment
  snapshot, and the plans add the "prepare" step to their nodes.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cumulo.paas import exec as px

LABEL = "cumulo-root"
MOUNT = "/mnt/root"
GUEST_KEY = "guest"  # the tier key the deploy sets in the environment snapshot
VM = "vm"
BOOTSTRAP_KEY = "bootstrap"  # tier metadata: "user_data" (template nodes) or "exec" (the default)
USER_DATA = "user_data"
MAX_USER_DATA = 48 * 1024  # bytes of script (base64 of it stays under Nova's 65535)
# Bytes at the start of a disk that must be zero before it is formatted: they hold every partition
# table and the superblocks of the usual filesystems (ext at 1 KiB, ISO9660 at 32 KiB, btrfs at 64 KiB).
BLANK_BYTES = 69632
INODES = 16384  # mke2fs -N: enough for products and state, few inode tables to write under TCG


def _truthy(value: Any) -> bool:
    return str(value or "").strip().lower() in ("yes", "true", "1", "on")


def is_vm_image(image: Mapping[str, Any]) -> bool:
    """Whether servers of this image (Glance's shape, properties flat) are VMs that run recipes
    through the QEMU guest agent."""
    props = image.get("properties") if isinstance(image.get("properties"), Mapping) else image
    return _truthy((props or {}).get("hw_qemu_guest_agent"))


def is_vm_tier(tier: Mapping[str, Any]) -> bool:
    return tier.get(GUEST_KEY) == VM


def tier_meta(tier: Mapping[str, Any], key: str) -> str | None:
    for item in tier.get("metadata") or []:
        if isinstance(item, Mapping) and item.get("key") == key:
            return str(item.get("value") if item.get("value") is not None else "").strip()
    return None


def boots_with_user_data(tier: Mapping[str, Any], from_template: str | None) -> bool:
    """Whether a new node of `tier` runs its configure+start at boot: a VM tier, booted from its
    template image (the install is on its disk), whose metadata says bootstrap=user_data."""
    return bool(from_template) and is_vm_tier(tier) and (tier_meta(tier, BOOTSTRAP_KEY) or "").lower() == USER_DATA


# `not_blank DEV`: prints why DEV must not be formatted and succeeds, or fails when DEV is blank
# (zeros in its first BLANK_BYTES bytes; the busybox of the tiny VM has no blkid).
BLANK_CHECK = f"""not_blank() {{
    hex=$(busybox od -An -v -tx1 -N {BLANK_BYTES} "$1" 2>/dev/null) && [ -n "$hex" ] \\
        || {{ echo "$1 cannot be read"; return 0; }}
    [ -z "$(echo "$hex" | tr -d ' 0\\n')" ] && return 1
    echo "$1 is not blank (data in its first {BLANK_BYTES} bytes: a partition table or a filesystem not labelled {LABEL})"
}}"""


def prepare_script(*, wait_boot: float = 0) -> str:
    """The shell of the prepare step (module docstring). `wait_boot`: seconds to wait for the end of
    the guest's boot (0 in user_data, which runs inside it). Prints `PAAS_DISK=<device>` last."""
    return f"""set -u
MNT={MOUNT} LABEL={LABEL}
i=0
while [ ! -e /run/init-handoff ] && [ "$i" -lt {int(wait_boot)} ]; do sleep 1; i=$((i + 1)); done
[ {int(wait_boot)} -eq 0 ] || [ -e /run/init-handoff ] || echo "paas: the guest's boot has not ended after {int(wait_boot)} s: going on" >&2
{BLANK_CHECK}
# one prepare at a time in the guest (a resumed step's may meet the first one still formatting)
n=0
while ! mkdir /run/paas-prepare.lock 2>/dev/null; do
    p=$(cat /run/paas-prepare.lock/pid 2>/dev/null)
    if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then sleep 1; continue; fi
    n=$((n + 1))
    if [ -z "$p" ] && [ "$n" -lt 5 ]; then sleep 1; continue; fi
    rm -rf /run/paas-prepare.lock
done
echo $$ > /run/paas-prepare.lock/pid
trap 'rm -rf /run/paas-prepare.lock' EXIT
mounted() {{ awk -v m="$MNT" '$2 == m {{ print $1; f = 1; exit }} END {{ exit !f }}' /proc/mounts; }}
if dev=$(mounted); then
    echo "paas: $dev is mounted on $MNT"
else
    dev=$(findfs "LABEL=$LABEL" 2>/dev/null) || dev=""
    if [ -z "$dev" ]; then
        cfg=$(findfs LABEL=config-2 2>/dev/null) || cfg=$(findfs LABEL=CONFIG-2 2>/dev/null) || cfg=""
        for b in /sys/block/vd* /sys/block/sd* /sys/block/xvd*; do
            [ -e "$b" ] || continue
            [ "/dev/${{b##*/}}" = "$cfg" ] && continue
            dev=/dev/${{b##*/}}
            break
        done
        [ -n "$dev" ] || {{ echo "paas: no disk for PAAS_ROOT (no filesystem labelled $LABEL, no root disk)" >&2; exit 3; }}
        why=$(not_blank "$dev") && {{ echo "paas: the root disk $why: it is not formatted" >&2; exit 4; }}
        mke2fs -N {INODES} -m 0 -L "$LABEL" "$dev" >/dev/null || {{ echo "paas: mke2fs of $dev failed" >&2; exit 5; }}
        echo "paas: formatted $dev (ext2, label $LABEL)"
    fi
    mkdir -p "$MNT" && mount -t ext4 "$dev" "$MNT" || {{ echo "paas: cannot mount $dev (label $LABEL) on $MNT" >&2; exit 6; }}
    echo "paas: $dev mounted on $MNT"
fi
mkdir -p "$MNT/paas" && sync
echo "PAAS_DISK=$dev"
"""


@dataclass(frozen=True)
class BootStep:
    """One recipe a template node runs at boot: the step's kind and key, the product it is of, its
    resolved attributes and recipe text, and the task whose step collects it."""

    kind: str  # configure | start
    key: str  # the step key (configure:<tier>:<r>:<product>)
    target: px.Target
    attributes: Mapping[str, str]
    recipe: str
    task_id: int | None
    guard: int


def _heredoc(text: str, delim: str) -> list[str]:
    if any(line == delim for line in text.splitlines()):
        raise ValueError("text holds the here-document delimiter")
    return [f"/bin/sh -s <<'{delim}'", text.rstrip("\n"), delim]


def boot_user_data(steps: Sequence[BootStep]) -> bytes:
    """The user_data script (module docstring); ValueError when it would exceed MAX_USER_DATA."""
    delim = f"PAAS_BOOT_{secrets.token_hex(16)}"
    lines = ["#!/bin/sh", "# Cumulo PaaS: this node's products configured and started at boot (the engine collects",
             "# each result through exec by its run id: $PAAS_STATE/steps/<run>.rc)",
             'echo "cumulo-paas: preparing PAAS_ROOT"', *_heredoc(prepare_script(wait_boot=0), delim),
             '[ $? -eq 0 ] || { echo "cumulo-paas: prepare failed"; exit 1; }']
    for s in steps:
        text = px.script(s.target, s.kind, s.attributes, s.recipe, run=px.run_id(s.task_id, s.key),
                         nonce=secrets.token_hex(16), guard=s.guard, probe_ip=True).decode()
        lines += [f'echo "cumulo-paas: {s.key}"', *_heredoc(text, delim), "__rc=$?",
                  f'[ $__rc -eq 0 ] || {{ echo "cumulo-paas: {s.key} exited $__rc"; exit $__rc; }}']
    lines.append('echo "cumulo-paas: products configured and started"')
    data = ("\n".join(lines) + "\n").encode()
    if len(data) > MAX_USER_DATA:
        raise ValueError(f"the boot script is {len(data)} bytes, over the {MAX_USER_DATA} a user_data may hold")
    return data


def collected_at_boot(run: px.RecipeRun) -> bool:
    """Whether an exec of a step only collected the result of a run the boot made."""
    return "finished in an earlier attempt: its result is collected" in run.stderr


def vm_tiers(tiers: Iterable[Mapping[str, Any]], images: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The tiers with `"guest": "vm"` set on those whose image (by the tier's image ref) is a VM image."""
    out = []
    for tier in tiers:
        t = dict(tier)
        image = images.get(str(t.get("image") or ""))
        if image is not None and is_vm_image(image):
            t[GUEST_KEY] = VM
        out.append(t)
    return out
