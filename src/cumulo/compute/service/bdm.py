"""block_device_mapping_v2 (and the legacy block_device_mapping) of a server create: parsing, the
checks Nova makes, and what the mappings mean for the server.

`parse(server)` is the API's half (nova/block_device.py BlockDeviceDict.from_api and
nova/compute/api.py _validate_bdm, with Nova's messages: every refusal is errors.Invalid, a 400
"Block Device Mapping is Invalid: ..."). It returns a `BootPlan`: the image to boot (imageRef, or
an image -> local mapping's), and the mappings normalised to the block_device_mapping table's
columns. `check_sizes(plan, flavor)` checks ephemeral and swap mappings against the flavor.
`ComputeService` then looks the sources up (volumes and snapshots through the volume service,
images through the image service) in the caller's project, and writes the rows.

What each mapping becomes (the agent, compute/agent/block_devices.py):
- source image, destination volume: a new volume made from the image (volume_size GiB, default
  the image's size or min_disk), waited for until `available`; boot_index 0 makes it the root.
- source volume (an existing, available volume of the project): attached; boot_index 0 = root.
- source snapshot, destination volume: a new volume from the snapshot.
- source blank, destination volume: a new blank volume of volume_size GiB, attached as a data disk.
- source blank, destination local: an ephemeral disk (guest_format swap: the swap disk), local
  to the host: on QEMU a qcow2 file beside the server (ephemeral.qcow2; swap.raw, made with
  mkswap); runc gives containers neither (as with a flavor's ephemeral and swap: a container has
  no block layer and its memory limit includes swap).
- source image, destination local, boot_index 0: booting from the image, as with imageRef.
delete_on_termination (default False, as Nova's API): the volume goes with the server.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from cumulo import errors
from cumulo.compute import volumes as vol

INVALID = "Block Device Mapping is Invalid: "
GIB = 1 << 30
MAX_LOCAL_BLOCK_DEVICES = 3  # Nova's max_local_block_devices default
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
_ROOT_NAMES = ("vda", "/dev/vda", "sda", "/dev/sda", "xvda", "/dev/xvda", "hda", "/dev/hda")


def invalid(details: str) -> errors.Invalid:
    return errors.Invalid(INVALID + details)


@dataclass
class BootPlan:
    """What a create request's mappings say: the image (None: booted from a volume) and the rows."""

    image_ref: str | None
    mappings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def root(self) -> dict[str, Any] | None:
        """The boot_index 0 mapping onto a volume (boot from volume), if any."""
        return next((m for m in self.mappings if m["boot_index"] == 0 and m["destination_type"] == "volume"), None)

    @property
    def volume_backed(self) -> bool:
        return self.root is not None

    @property
    def stored(self) -> list[dict[str, Any]]:
        """The mappings the block_device_mapping table keeps (the image -> local root is the image)."""
        return [m for _i, m in self.stored_indexed()]

    def stored_indexed(self) -> list[tuple[int, dict[str, Any]]]:
        return [(i, m) for i, m in enumerate(self.mappings)
                if not (m["source_type"] == "image" and m["destination_type"] == "local")]


def _boolean(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "t", "true", "on", "y", "yes"):
        return True
    if text in ("0", "f", "false", "off", "n", "no"):
        return False
    raise invalid(f"Invalid {what}.")


def _int_or_none(value: Any, message: str, *, minimum: int = 0) -> int | None:
    if value is None or value == "":
        return None
    try:
        out = int(value)
    except (TypeError, ValueError):
        raise invalid(message) from None
    if out < minimum:
        raise invalid(message)
    return out


def _device_name(value: Any) -> str | None:
    if value is None:
        return None
    name = str(value)
    if not name or len(name) > 255 or " " in name:
        raise invalid("Device name empty or too long.")
    return name


def _from_api(raw: dict[str, Any], image_specified: bool) -> dict[str, Any]:
    """One v2 mapping, as BlockDeviceDict.from_api checks it, normalised to the table's columns."""
    if _boolean(raw.get("no_device", False), "no_device"):
        return {"no_device": True}
    source = raw.get("source_type")
    if not source:
        raise invalid("Some required fields are missing")
    uid = raw.get("uuid")
    if source == "blank" and uid:
        raise invalid("Invalid device UUID.")
    if source != "blank":
        uid = uid or raw.get(f"{source}_id")
        if not uid:
            raise invalid("Missing device UUID.")
        if not _UUID.match(str(uid)):
            raise invalid(f"failed to get {source} {uid}.")
    dest = raw.get("destination_type") or ("local" if source in ("image", "blank") else "volume")
    boot_index = _int_or_none(raw.get("boot_index"), "Boot index is invalid.", minimum=-1_000_000)
    boot_index = None if boot_index is not None and boot_index < 0 else boot_index
    if source == "image" and dest == "local" and not (image_specified and boot_index == 0):
        raise invalid("Mapping image to local is not supported.")
    if source in ("volume", "snapshot") and dest == "local":
        raise invalid(f"a {source} maps to destination_type volume only.")
    volume_type = raw.get("volume_type")
    if dest == "local" and volume_type:
        raise invalid("Specifying a volume_type with destination_type=local is not supported.")
    if source == "volume" and volume_type:
        raise invalid("Specifying volume type to existing volume is not supported.")
    guest_format = raw.get("guest_format")
    if guest_format is not None and dest != "local":
        raise invalid("guest_format is only for local disks (destination_type local).")
    if dest == "local" and source == "blank" and guest_format not in (None, "swap", "ext4", "ext3", "ext2", "xfs", "vfat"):
        raise invalid(f"Unsupported guest_format {str(guest_format)[:64]!r}.")
    size = _int_or_none(raw.get("volume_size"), "Invalid volume_size.")
    if size is not None and size > 0x7FFFFFFF:
        raise invalid("Invalid volume_size.")
    for key in ("disk_bus", "device_type", "tag", "guest_format", "volume_type"):
        # the API's schema checks these, but an image's block_device_mapping property is the tenant's own JSON
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > 255):
            raise invalid(f"Invalid {key}: a string of at most 255 characters.")
    if source == "blank" and dest == "volume" and not size:
        raise invalid("a blank volume needs a volume_size.")
    return {
        "source_type": source,
        "destination_type": dest,
        "boot_index": boot_index,
        "device_name": _device_name(raw.get("device_name")),
        "volume_id": str(uid).lower() if source == "volume" else None,
        "snapshot_id": str(uid).lower() if source == "snapshot" else None,
        "image_id": str(uid).lower() if source == "image" else None,
        "volume_size": size,
        "volume_type": str(volume_type) if volume_type else None,
        "delete_on_termination": _boolean(raw.get("delete_on_termination", False), "delete_on_termination"),
        "guest_format": str(guest_format) if guest_format is not None else None,
        "disk_bus": raw.get("disk_bus"),
        "device_type": raw.get("device_type"),
        "tag": raw.get("tag"),
        "no_device": False,
    }


def _from_legacy(raw: dict[str, Any], image_specified: bool) -> dict[str, Any]:
    """A legacy (v1) mapping as v2, as Nova's from_legacy_mapping: a volume or snapshot onto a
    device; without imageRef the root device's (vda) is the boot volume."""
    if _boolean(raw.get("no_device", False), "no_device"):
        return {"no_device": True}
    name = _device_name(raw.get("device_name"))
    if raw.get("snapshot_id"):
        source, uid = "snapshot", raw["snapshot_id"]
    elif raw.get("volume_id"):
        source, uid = "volume", raw["volume_id"]
    else:
        raise invalid("Missing device UUID.")
    root = not image_specified and (name is None or name in _ROOT_NAMES)
    return _from_api({"source_type": source, "uuid": uid, "destination_type": "volume",
                      "boot_index": 0 if root else None, "device_name": name,
                      "volume_size": raw.get("volume_size"),
                      "delete_on_termination": raw.get("delete_on_termination", False)}, image_specified)


def parse(server: dict[str, Any]) -> BootPlan:
    """The create request's mappings (Nova's checks and messages); see the module docstring."""
    legacy = server.get("block_device_mapping") or []
    v2 = server.get("block_device_mapping_v2") or []
    if legacy and v2:
        raise errors.Invalid("Using different block_device_mapping syntaxes is not allowed in the same request.")
    image_ref = server.get("imageRef") or None
    parsed = [_from_legacy(b, bool(image_ref)) for b in legacy] if legacy else [_from_api(b, bool(image_ref)) for b in v2]
    mappings = [m for m in parsed if not m.get("no_device")]
    for m in mappings:
        if m["source_type"] == "image" and m["destination_type"] == "local":
            if image_ref and m["image_id"] != str(image_ref).lower():
                raise invalid("Boot sequence for the instance and image/block device mapping combination is not valid.")
    root = next((m for m in mappings if m["boot_index"] == 0), None)
    if image_ref is None:
        if not mappings:
            raise errors.Invalid("Missing imageRef attribute")
        if root is None:
            raise invalid("Boot sequence for the instance and image/block device mapping combination is not valid.")
    elif root is None and mappings:
        # imageRef boots the server: Nova adds the image -> local mapping at boot index 0.
        mappings.insert(0, {**_from_api({"source_type": "image", "uuid": image_ref, "destination_type": "local",
                                         "boot_index": 0}, True), "delete_on_termination": True})
    indexes = sorted(m["boot_index"] for m in mappings if m["boot_index"] is not None)
    if mappings and (not indexes or indexes[0] != 0 or indexes != list(range(len(indexes)))):
        raise invalid("Boot sequence for the instance and image/block device mapping combination is not valid.")
    if sum(1 for m in mappings if _is_swap(m)) > 1:
        raise errors.Invalid("More than one swap drive requested.")
    if sum(1 for m in mappings if m["destination_type"] == "local" and m["source_type"] == "blank") > MAX_LOCAL_BLOCK_DEVICES:
        raise invalid("You specified more local devices than the limit allows")
    names = [m["device_name"] for m in mappings if m["device_name"]]
    if len({n.removeprefix("/dev/") for n in names}) != len(names):
        raise invalid("Device name is used twice.")
    if root is not None and root["destination_type"] == "volume":
        root_image = root["image_id"] if root["source_type"] == "image" else None
        if image_ref and root_image and root_image != str(image_ref).lower():
            raise invalid("Boot sequence for the instance and image/block device mapping combination is not valid.")
        return BootPlan(image_ref=None, mappings=mappings)
    boot_image = image_ref or (root["image_id"] if root is not None else None)
    return BootPlan(image_ref=str(boot_image) if boot_image else None, mappings=mappings)


def _is_swap(m: dict[str, Any]) -> bool:
    return vol.is_swap(m)


def is_ephemeral(m: dict[str, Any]) -> bool:
    return vol.is_ephemeral(m)


def check_sizes(plan: BootPlan, flavor: dict[str, Any]) -> None:
    """Ephemeral and swap mappings fit the flavor (nova/compute/api.py _validate_bdm)."""
    eph = int(flavor.get("ephemeral_gb") or 0)
    if sum(m["volume_size"] or eph for m in plan.mappings if is_ephemeral(m)) > eph:
        raise invalid("Ephemeral disks requested are larger than the instance type allows. If no size is given "
                      "in one block device mapping, flavor ephemeral size will be used.")
    swap = next((m for m in plan.mappings if _is_swap(m)), None)
    if swap is not None and (swap["volume_size"] or 0) > int(flavor.get("swap") or 0):
        raise invalid("Swap drive requested is larger than instance type allows.")


def local_sizes(mappings: list[dict[str, Any]], flavor: dict[str, Any]) -> tuple[int, int]:
    """(ephemeral GiB, swap MiB) a server's local mappings give it (the flavor's when it has none)."""
    return vol.local_disk_sizes(mappings, int(flavor.get("ephemeral_gb") or 0), int(flavor.get("swap") or 0))


def image_volume_size(image: dict[str, Any], requested: int | None) -> int:
    """The GiB of a volume made from `image`: the request's, at least the image's (Nova's
    "Volume is smaller than the minimum size specified in image metadata")."""
    need = max(int(image.get("min_disk") or 0), math.ceil(int(image.get("size") or 0) / GIB), 1)
    if requested is None or requested == 0:
        return need
    if requested < need:
        raise errors.Invalid(
            "Volume is smaller than the minimum size specified in image metadata. Volume size is "
            f"{requested * GIB} bytes, minimum size is {need * GIB} bytes.")
    return requested
