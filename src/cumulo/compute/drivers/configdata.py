"""What a config drive holds (Nova's `config-2` layout), shared by every driver that makes one.

    openstack/latest/meta_data.json     identity, hostname, meta, public_keys and keys
    openstack/latest/network_data.json  links/networks/services from spec.network_info
    openstack/latest/vendor_data.json   {} (cloud-init reads it when present)
    openstack/latest/user_data          spec.user_data, byte for byte (only when given)
    openstack/latest/public_key         spec.key_data (only when given)

How the files reach the guest is the driver's: runc bind-mounts a directory, QEMU attaches an
ISO9660 image. Values only ever become file contents (JSON or raw bytes), never paths.
"""

from __future__ import annotations

import json
from typing import Any

from cumulo.compute.drivers.base import InstanceSpec

LABEL = "config-2"
LATEST = "openstack/latest"


def meta_data(spec: InstanceSpec) -> dict[str, Any]:
    """spec.meta_data completed with the instance's identity and key (Nova's meta_data.json)."""
    doc: dict[str, Any] = dict(spec.meta_data)
    doc.setdefault("uuid", spec.uuid)
    doc.setdefault("name", spec.name)
    doc.setdefault("hostname", spec.hostname)
    doc.setdefault("project_id", spec.project_id)
    doc.setdefault("launch_index", 0)
    doc.setdefault("availability_zone", "nova")
    doc.setdefault("meta", dict(spec.metadata))
    keys = doc.get("public_keys")
    if not isinstance(keys, dict) or not keys:
        keys = {"default": spec.key_data} if spec.key_data else {}
    if keys:
        doc["public_keys"] = keys
        doc.setdefault("keys", [{"name": str(n), "type": "ssh", "data": str(k)} for n, k in keys.items()])
    return doc


def network_data(spec: InstanceSpec) -> dict[str, Any]:
    """Nova's network_data.json from the NICs in spec.network_info (empty lists when there are none)."""
    links: list[dict[str, Any]] = []
    networks: list[dict[str, Any]] = []
    for i, vif in enumerate(spec.network_info):
        link_id = f"tap{i}"
        links.append({"id": link_id, "type": "phy", "ethernet_mac_address": vif.get("mac"),
                      "mtu": int(vif.get("mtu") or 1500),  # the network's (1450 on VXLAN)
                      "vif_id": vif.get("id", link_id)})
        if vif.get("address"):
            ipv6 = int(vif.get("version") or 4) == 6
            net: dict[str, Any] = {"id": f"network{i}", "link": link_id, "type": "ipv6" if ipv6 else "ipv4",
                                   "ip_address": vif["address"], "network_id": str(vif.get("network", ""))}
            for key in ("netmask", "gateway", "routes", "dns_nameservers"):
                if vif.get(key):
                    net[key] = vif[key]
            networks.append(net)
    return {"links": links, "networks": networks, "services": []}


def files(spec: InstanceSpec) -> dict[str, bytes]:
    """Path under the drive's root → content."""
    out = {
        f"{LATEST}/meta_data.json": json.dumps(meta_data(spec), indent=1, sort_keys=True).encode(),
        f"{LATEST}/network_data.json": json.dumps(network_data(spec), indent=1, sort_keys=True).encode(),
        f"{LATEST}/vendor_data.json": b"{}",
    }
    if spec.user_data is not None:
        out[f"{LATEST}/user_data"] = bytes(spec.user_data)
    if spec.key_data:
        out[f"{LATEST}/public_key"] = spec.key_data.encode().rstrip(b"\n") + b"\n"
    return out
