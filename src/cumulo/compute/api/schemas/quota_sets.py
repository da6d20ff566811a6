"""os-quota-sets and os-quota-class-sets: which resources each microversion shows and accepts.

2.36 drops the nova-network quotas, 2.57 the injected-file ones. Quota classes hide the server
group quotas before 2.50 and the network ones from 2.50.
"""

from __future__ import annotations

from typing import Any

from cumulo.compute.api.microversion import MAX_VERSION, MIN_VERSION, Version, v
from cumulo.compute.api.schemas import _base

# (resource, first version, last version) for os-quota-sets.
QUOTA_SET_RESOURCES: tuple[tuple[str, Version, Version], ...] = (
    ("cores", MIN_VERSION, MAX_VERSION),
    ("instances", MIN_VERSION, MAX_VERSION),
    ("key_pairs", MIN_VERSION, MAX_VERSION),
    ("metadata_items", MIN_VERSION, MAX_VERSION),
    ("ram", MIN_VERSION, MAX_VERSION),
    ("server_groups", MIN_VERSION, MAX_VERSION),
    ("server_group_members", MIN_VERSION, MAX_VERSION),
    ("fixed_ips", MIN_VERSION, v("2.35")),
    ("floating_ips", MIN_VERSION, v("2.35")),
    ("security_group_rules", MIN_VERSION, v("2.35")),
    ("security_groups", MIN_VERSION, v("2.35")),
    ("injected_file_content_bytes", MIN_VERSION, v("2.56")),
    ("injected_file_path_bytes", MIN_VERSION, v("2.56")),
    ("injected_files", MIN_VERSION, v("2.56")),
)

# The same for os-quota-class-sets.
QUOTA_CLASS_RESOURCES: tuple[tuple[str, Version, Version], ...] = (
    ("cores", MIN_VERSION, MAX_VERSION),
    ("instances", MIN_VERSION, MAX_VERSION),
    ("key_pairs", MIN_VERSION, MAX_VERSION),
    ("metadata_items", MIN_VERSION, MAX_VERSION),
    ("ram", MIN_VERSION, MAX_VERSION),
    ("server_groups", v("2.50"), MAX_VERSION),
    ("server_group_members", v("2.50"), MAX_VERSION),
    ("fixed_ips", MIN_VERSION, v("2.49")),
    ("floating_ips", MIN_VERSION, v("2.49")),
    ("security_group_rules", MIN_VERSION, v("2.49")),
    ("security_groups", MIN_VERSION, v("2.49")),
    ("injected_file_content_bytes", MIN_VERSION, v("2.56")),
    ("injected_file_path_bytes", MIN_VERSION, v("2.56")),
    ("injected_files", MIN_VERSION, v("2.56")),
)


def resources_at(table: tuple[tuple[str, Version, Version], ...], version: Version) -> list[str]:
    return [name for name, lo, hi in table if lo <= version <= hi]


def _update_schema(envelope: str, names: list[str], extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            envelope: {
                "type": "object",
                "properties": {**{n: _base.quota_value for n in names}, **extra},
                "additionalProperties": False,
            }
        },
        "required": [envelope],
        "additionalProperties": False,
    }


def quota_set_update(version: Version) -> dict[str, Any]:
    """The PUT body at this version: the resources the version shows, plus `force`."""
    return _update_schema("quota_set", resources_at(QUOTA_SET_RESOURCES, version), {"force": _base.boolean})


def quota_class_update(version: Version) -> dict[str, Any]:
    names = resources_at(QUOTA_CLASS_RESOURCES, version)
    # Before 2.50 the server group quotas are accepted though not shown.
    if version < v("2.50"):
        names += ["server_groups", "server_group_members"]
    return _update_schema("quota_class_set", names, {})


# One schema object per version range, so validators are built once.
_QS_CACHE: dict[Version, dict[str, Any]] = {}
_QC_CACHE: dict[Version, dict[str, Any]] = {}


def quota_set_update_for(version: Version) -> dict[str, Any]:
    key = v("2.57") if version >= v("2.57") else v("2.36") if version >= v("2.36") else MIN_VERSION
    if key not in _QS_CACHE:
        _QS_CACHE[key] = quota_set_update(key)
    return _QS_CACHE[key]


def quota_class_update_for(version: Version) -> dict[str, Any]:
    key = v("2.57") if version >= v("2.57") else v("2.50") if version >= v("2.50") else MIN_VERSION
    if key not in _QC_CACHE:
        _QC_CACHE[key] = quota_class_update(key)
    return _QC_CACHE[key]


QUOTA_QUERY = ("user_id",)
# Nova accepts `reserved` only while unknown parameters are ignored (before 2.75).
LIMITS_QUERY = ("tenant_id",)
