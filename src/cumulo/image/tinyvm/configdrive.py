"""A Nova-style config drive as an ISO9660 image (volume label `config-2`, Rock Ridge + Joliet), in Python.

Used by the tiny VM's boot test and benchmark to hand a bare QEMU guest its meta_data.json and
user_data the way the QEMU driver does. Files go under openstack/latest/ with their real
(long, lower-case) names through Rock Ridge, which the guest's isofs reads.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

LABEL = "config-2"


def _iso_name(index: int) -> str:
    """A valid ISO9660 level-1 name for the primary tree (the real name travels in Rock Ridge)."""
    return f"F{index:07d}.;1"


def write_config_drive(
    path: Path,
    meta_data: dict[str, Any],
    user_data: bytes | None = None,
    network_data: dict[str, Any] | None = None,
) -> Path:
    """Write the drive to `path` (blocking)."""
    import pycdlib

    files: dict[str, bytes] = {
        "meta_data.json": json.dumps(meta_data, sort_keys=True).encode(),
        "network_data.json": json.dumps(network_data or {"links": [], "networks": [], "services": []},
                                        sort_keys=True).encode(),
    }
    if user_data is not None:
        files["user_data"] = user_data
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, rock_ridge="1.09", joliet=3, vol_ident=LABEL)
    try:
        iso.add_directory("/OPENSTAC", rr_name="openstack", joliet_path="/openstack")
        iso.add_directory("/OPENSTAC/LATEST", rr_name="latest", joliet_path="/openstack/latest")
        for i, (name, data) in enumerate(sorted(files.items())):
            iso_path = f"/OPENSTAC/LATEST/{_iso_name(i)}"
            iso.add_fp(io.BytesIO(data), len(data), iso_path, rr_name=name, joliet_path=f"/openstack/latest/{name}")
        iso.write(str(path))
    finally:
        iso.close()
    return path
