"""The config drive of a VM: an ISO9660 image labelled `config-2`, as Nova's libvirt driver makes
with genisoimage (Rock Ridge + Joliet, so the guest sees the long names):

    openstack/latest/{meta_data.json, network_data.json, vendor_data.json, user_data, public_key}
    (what each holds: drivers/configdata.py, shared with the runc driver)

It is attached read-only as a raw virtio disk; cloud-init (and tiny-vm's init) find it by label.
Written with pycdlib in-process: no genisoimage on the host, and no value ever becomes a path.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pycdlib

from cumulo.compute.drivers import configdata
from cumulo.compute.drivers.base import InstanceSpec

LABEL = configdata.LABEL
MAX_USER_DATA = 64 * 1024  # Nova's limit on user_data (65535 bytes base64 in the API)


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


def required_by(spec: InstanceSpec, *, force: bool) -> bool:
    """Whether the VM gets a config drive (Nova's configdrive.required_by): its user asked for one,
    the compute host forces one (the force_config_drive setting), or its image's img_config_drive
    is "mandatory". Without one the guest reads the metadata service at 169.254.169.254."""
    props = spec.image.properties if spec.image is not None else {}
    return spec.config_drive or force or str(props.get("img_config_drive") or "").lower() == "mandatory"


def build_iso(path: Path, spec: InstanceSpec) -> None:
    """Write the config drive of spec to `path` (blocking; mode 0600: it may hold user data)."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=LABEL, sys_ident="LINUX",
            app_ident_str="cumulo config drive")
    dirs: dict[str, str] = {"": "/"}  # drive path → ISO path
    used: dict[str, set[str]] = {"/": set()}
    handles: list[io.BytesIO] = []
    try:
        for rel, data in sorted(configdata.files(spec).items()):
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
