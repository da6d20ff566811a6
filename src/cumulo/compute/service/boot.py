"""What a server create request becomes: the flavor snapshot an instance keeps, the image facts in
its request_spec, its hostname and reservation id, and the image/flavor fit checks (Nova's wording).
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass, field
from typing import Any

from cumulo import errors
from cumulo.compute.service.bdm import BootPlan

GIB = 1 << 30
# Glance's own image fields; everything else in an image dict is a custom property.
GLANCE_FIELDS = frozenset(
    {
        "id", "name", "status", "visibility", "protected", "checksum", "os_hash_algo", "os_hash_value", "owner",
        "size", "virtual_size", "min_ram", "min_disk", "disk_format", "container_format", "created_at",
        "updated_at", "tags", "file", "self", "schema", "direct_url", "locations", "os_hidden", "stores",
    }
)
FLAVOR_KEYS = (
    "flavorid", "name", "memory_mb", "vcpus", "root_gb", "ephemeral_gb", "swap", "rxtx_factor", "is_public",
    "description", "extra_specs",
)


def flavor_snapshot(flavor: dict[str, Any]) -> dict[str, Any]:
    """What an instance keeps of its flavor (cumulo.compute.service.flavors' snapshot, made JSON-safe)."""
    out = {k: flavor.get(k) for k in FLAVOR_KEYS}
    out["flavorid"] = str(out["flavorid"])
    out["extra_specs"] = dict(out.get("extra_specs") or {})
    return out


def image_summary(image: dict[str, Any]) -> dict[str, Any]:
    """The image facts the scheduler and agents need, kept in request_spec."""
    return {
        "id": image["id"],
        "name": image.get("name"),
        "disk_format": image.get("disk_format"),
        "container_format": image.get("container_format"),
        "min_ram": int(image.get("min_ram") or 0),
        "min_disk": int(image.get("min_disk") or 0),
        "size": int(image.get("size") or 0),
        "properties": {k: val for k, val in image.items() if k not in GLANCE_FIELDS},
    }


def sanitize_hostname(name: str, default: str) -> str:
    """Nova's sanitize_hostname: a DNS-friendly name derived from the display name."""
    text = name.encode("latin-1", "ignore").decode("latin-1")[:63]
    text = re.sub(r"[ _\.]", "-", text)
    text = re.sub(r"[^\w.-]+", "", text).lower().strip(".-")
    return text or default[:63]


def _random_text(alphabet: str, length: int) -> str:
    """Unbiased random text from one urandom read (secrets.choice costs a syscall per character)."""
    limit = 256 - 256 % len(alphabet)
    out: list[str] = []
    while len(out) < length:
        out.extend(alphabet[b % len(alphabet)] for b in secrets.token_bytes(2 * length) if b < limit)
    return "".join(out[:length])


def reservation_id() -> str:
    return "r-" + _random_text(string.ascii_lowercase + string.digits, 8)


def generate_password(length: int = 12) -> str:
    return _random_text(string.ascii_letters + string.digits, length)


@dataclass
class CreateRequest:
    name: str
    flavor_ref: str
    image_ref: str
    description: str | None = None
    key_name: str | None = None
    # A public key given as text (OCCI's ssh_key contextualization): used instead of looking the
    # key pair `key_name` up; key_name then only names it in the metadata (as Nova keeps the name
    # of a key pair deleted after the boot).
    key_data: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    user_data: str | None = None
    availability_zone: str | None = None
    min_count: int = 1
    max_count: int = 1
    security_groups: list[str] = field(default_factory=lambda: ["default"])
    requested_networks: Any = None
    access_ip_v4: str | None = None
    access_ip_v6: str | None = None
    config_drive: bool = False
    auto_disk_config: bool = False
    tags: list[str] = field(default_factory=list)
    trusted_certs: list[str] | None = None
    scheduler_hints: dict[str, Any] = field(default_factory=dict)
    requested_host: str | None = None
    requested_node: str | None = None
    hostname: str | None = None  # the guest's hostname (Nova 2.90); None: derived from the name
    # block_device_mapping(_v2), parsed (compute/service/bdm.py); None: boot image_ref on local disk
    block_devices: BootPlan | None = None


def check_image_fits(image: dict[str, Any], flavor: dict[str, Any]) -> None:
    if image.get("status") != "active":
        raise errors.Invalid(f"Image {image['id']} is not active.")
    if int(flavor["memory_mb"]) < int(image.get("min_ram") or 0):
        raise errors.Invalid("Flavor's memory is too small for requested image.")
    root = int(flavor["root_gb"]) * GIB
    if root == 0:
        return  # zero-disk flavors size the disk from the image
    min_disk = int(image.get("min_disk") or 0) * GIB
    if min_disk > root:
        raise errors.Invalid(
            "Flavor's disk is smaller than the minimum size specified in image metadata. "
            f"Flavor disk is {root} bytes, minimum size is {min_disk} bytes."
        )
    size = int(image.get("size") or 0)
    if size > root:
        raise errors.Invalid(
            f"Flavor's disk is too small for requested image. Flavor disk is {root} bytes, image is {size} bytes."
        )
