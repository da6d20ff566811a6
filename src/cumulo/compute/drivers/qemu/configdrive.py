"""The config drive of a VM: an ISO9660 image labelled `config-2`, as Nova's libvirt driver makes
with genisoimage (Rock Ridge + Joliet, so the guest sees the long names):

    openstack/latest/meta_data.json     identity, hostname, meta, public_keys
    openstack/latest/network_data.json  links/networks/services from spec.network_info
    openstack/latest/user_data          spec.user_data, byte for byte (only when given)
    openstack/latest/vendor_data.json   {} (cloud-init reads it when present)

It is attached read-only as a raw virtio disk; cloud-init (and tiny-vm's init) find it by label.
Written with pycdlib in-process: no genisoimage on the host, and no value ever becomes a path.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pycdlib

from cumulo.compute.drivers.base import InstanceSpec

LABEL = "config-2"
MAX_USER_DATA = 64 * 1024  # Nova's limit on user_data (65535 bytes base64 in the API)


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
    """Nova's network_data.json from the NICs in spec.network_info (empty lists when none)."""
    links: list[dict[str, Any]] = []
    networks: list[dict[str, Any]] = []
    for i, vif in enumerate(spec.network_info):
        link_id = f"tap{i}"
        links.append({"id": link_id, "type": "phy", "ethernet_mac_address": vif.get("mac"), "mtu": 1500,
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
    """Path under the drive root → content."""
    out = {
        "openstack/latest/meta_data.json": json.dumps(meta_data(spec), indent=1, sort_keys=True).encode(),
        "openstack/latest/network_data.json": json.dumps(network_data(spec), indent=1, sort_keys=True).encode(),
        "openstack/latest/vendor_data.json": b"{}",
    }
    if spec.user_data is not None:
        out["openstack/latest/user_data"] = bytes(spec.user_data)
    return out


def _iso_name(name: str, used: set[str], is_dir: bool) -> str:
    """An ISO9660 level-1 name (8.3, upper case) for `name`, unique within its directory."""
    stem, dot, ext = name.upper().partition(".")
    keep = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
    stem = "".join(c if c in keep else "_" for c in stem) or "_"
    ext = "".join(c if c in keep else "_" for c in ext)[:3]
    for n in range(1000):
        base = stem[:8] if n == 0 else f"{stem[:8 - len(str(n)) - 1]}_{n}"
        cand = base if is_dir else f"{base}.{ext}" if dot else f"{base}."
        if cand not in used:
            used.add(cand)
            return cand if is_dir else cand + ";1"
    raise ValueError(f"too many names like {name!r}")


def build_iso(path: Path, spec: InstanceSpec) -> None:
    """Write the config drive of spec to `path` (blocking; mode 0600: it may hold user data)."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=LABEL, sys_ident="LINUX",
            app_ident_str="cumulo config drive")
    dirs: dict[str, str] = {"": "/"}  # drive path → ISO path
    used: dict[str, set[str]] = {"/": set()}
    handles: list[io.BytesIO] = []
    try:
        for rel, data in sorted(files(spec).items()):
            parts = rel.split("/")
            for depth in range(1, len(parts)):
                d = "/".join(parts[:depth])
                if d in dirs:
                    continue
                parent = dirs["/".join(parts[:depth - 1])]
                iso_path = parent.rstrip("/") + "/" + _iso_name(parts[depth - 1], used[parent], True)
                iso.add_directory(iso_path, rr_name=parts[depth - 1], joliet_path="/" + d)
                dirs[d] = iso_path
                used[iso_path] = set()
            parent = dirs["/".join(parts[:-1])]
            iso_path = parent.rstrip("/") + "/" + _iso_name(parts[-1], used[parent], False)
            fh = io.BytesIO(data)
            handles.append(fh)
            iso.add_fp(fh, len(data), iso_path, rr_name=parts[-1], joliet_path="/" + rel, file_mode=0o100644)
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            iso.write_fp(out)
        os.replace(tmp, path)
    finally:
        iso.close()
        for fh in handles:
            fh.close()
