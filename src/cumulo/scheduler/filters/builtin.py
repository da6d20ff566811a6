"""The standard filters, named as in Nova.

- ComputeFilter: the host's nova-compute service exists, is enabled and is up.
- AvailabilityZoneFilter: the host is in the requested availability zone.
- ImagePropertiesFilter: image `hypervisor_type` (alias img_hv_type) is one of the host's
  instance_types (or its hypervisor_type). An image that names none goes by its formats (Nova would
  take any host; here a container node cannot boot a disk image, nor a VM node a container image):
  container_format docker/oci → a "container" node; any other disk image → a "qemu" (or "kvm")
  node; no image or no formats → any node. `architecture` (hw_architecture) equals the host CPU
  arch; `vm_mode` is among the host's details["vm_modes"] when the host lists any;
  `img_hv_requested_version` (e.g. ">=2") holds for the host's hypervisor_version.
- PhysicalNetworkFilter: the host carries every physical network of the server's flat networks
  (network_metadata.physnets): its compute node reports them (details["physnets"]: the keys of
  its physical_interface_mappings, or "*" on a single host or a fake one; netplane.physnet), as
  Neutron's segment-host mappings restrict a provider network's ports to the hosts whose agent
  maps its physnet.
- ComputeCapabilitiesFilter: flavor extra_specs scoped `capabilities:` (e.g.
  "capabilities:cpu_info:arch": "x86_64", "capabilities:hypervisor_type": "s== fake") match the host.
- CoreFilter, RamFilter, DiskFilter: free VCPU / MEMORY_MB / DISK_GB, i.e.
  (total - reserved) * allocation_ratio - used, covers the request (and max_unit is respected).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from cumulo.db import utcnow
from cumulo.hosts.servicegroup import is_up
from cumulo.netplane import physnet
from cumulo.placement.inventory import DISK_GB, MEMORY_MB, VCPU
from cumulo.scheduler.filters.base import BaseHostFilter, register
from cumulo.scheduler.hoststate import HostState, RequestSpec

_ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "i386": "i686", "x86": "i686"}


def _canon_arch(value: Any) -> str:
    text = str(value).strip().lower()
    return _ARCH_ALIASES.get(text, text)


@register
class ComputeFilter(BaseHostFilter):
    name = "ComputeFilter"

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        svc = host.service
        return svc is not None and not svc.get("disabled") and is_up(svc, self.conf, utcnow())


@register
class AvailabilityZoneFilter(BaseHostFilter):
    name = "AvailabilityZoneFilter"

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        return not spec.availability_zone or host.availability_zone == spec.availability_zone


@register
class PhysicalNetworkFilter(BaseHostFilter):
    name = "PhysicalNetworkFilter"

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        return not spec.physnets or physnet.carries(host.details.get("physnets") or (), spec.physnets)

    @staticmethod
    def shortage(spec: RequestSpec) -> str:
        names = ", ".join(sorted(spec.physnets))
        return f"No host maps physical network {names} (physical_interface_mappings)."


@register
class ImagePropertiesFilter(BaseHostFilter):
    name = "ImagePropertiesFilter"

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        props = spec.image_properties
        hv = props.get("hypervisor_type") or props.get("img_hv_type")
        offered = set(host.instance_types) | {host.hypervisor_type.lower()}
        if hv:
            if str(hv).strip().lower() not in offered:
                return False
        else:
            kinds = implied_instance_types(spec)
            if kinds and not kinds & offered:
                return False
        arch = props.get("architecture") or props.get("hw_architecture")
        if arch:
            host_arch = host.cpu_info.get("arch")
            if host_arch and _canon_arch(arch) != _canon_arch(host_arch):
                return False
        mode = props.get("vm_mode") or props.get("hw_vm_mode")
        modes = host.details.get("vm_modes")
        if mode and modes and str(mode).lower() not in {str(m).lower() for m in modes}:
            return False
        wanted = props.get("img_hv_requested_version") or props.get("hypervisor_version_requires")
        return not wanted or match_requirement(str(host.hypervisor_version), str(wanted))


@register
class ComputeCapabilitiesFilter(BaseHostFilter):
    name = "ComputeCapabilitiesFilter"

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        for key, req in spec.flavor_extra_specs.items():
            scope = key.split(":")
            if len(scope) < 2 or scope[0] != "capabilities":
                continue
            value = _lookup(host, scope[1:])
            if value is None or not match_requirement(value, req):
                return False
        return True


class _ResourceFilter(BaseHostFilter):
    resource_class = ""

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        want = spec.resources.get(self.resource_class, 0)
        if want <= 0:
            return True
        inv = host.inventory.get(self.resource_class)
        if inv is None or want > (inv.max_unit or inv.total):
            return False
        return host.free(self.resource_class) >= want


@register
class CoreFilter(_ResourceFilter):
    name = "CoreFilter"
    resource_class = VCPU


@register
class RamFilter(_ResourceFilter):
    name = "RamFilter"
    resource_class = MEMORY_MB


@register
class DiskFilter(_ResourceFilter):
    name = "DiskFilter"
    resource_class = DISK_GB


CONTAINER_IMAGE_FORMATS = frozenset({"docker", "oci"})
VM_INSTANCE_TYPES = frozenset({"qemu", "kvm"})


def implied_instance_types(spec: RequestSpec) -> frozenset[str]:
    """The instance types an image without hypervisor_type can run on, from its formats; empty
    means any (no image, or formats unknown)."""
    container = (spec.container_format or "").lower()
    if container in CONTAINER_IMAGE_FORMATS:
        return frozenset({"container"})
    if spec.disk_format:
        return VM_INSTANCE_TYPES
    return frozenset()


def _lookup(host: HostState, path: list[str]) -> Any:
    cur: Any = {
        "hypervisor_type": host.hypervisor_type,
        "hypervisor_version": host.hypervisor_version,
        "hypervisor_hostname": host.node,
        "host": host.host,
        "cpu_info": host.cpu_info,
        "details": host.details,
        "instance_types": list(host.instance_types),
        "vcpus": host.inventory[VCPU].total if VCPU in host.inventory else 0,
        "memory_mb": host.inventory[MEMORY_MB].total if MEMORY_MB in host.inventory else 0,
        "free_ram_mb": host.free(MEMORY_MB),
        "free_disk_gb": host.free(DISK_GB),
    }
    for part in path:
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            return None
    return cur


_NUM_OPS: dict[str, Callable[[float, float], bool]] = {
    "=": operator.ge,  # Nova: "= 4" means "at least 4"
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    "<=": operator.le,
}
_STR_OPS: dict[str, Callable[[str, str], bool]] = {
    "s==": operator.eq,
    "s!=": operator.ne,
    "s<": operator.lt,
    "s<=": operator.le,
    "s>": operator.gt,
    "s>=": operator.ge,
}


def match_requirement(value: Any, req: str) -> bool:
    """Nova's extra-spec operators: "= n", "== n", ">= n", "s== str", "<in> sub", "<or> a <or> b", or plain equality."""
    words = req.split()
    if not words:
        return str(value) == req
    op = words[0]
    if op == "<or>":
        return any(str(value) == w for w in words[1:] if w != "<or>")
    if op == "<in>":
        needle = req[len("<in>"):].strip()
        return needle in value if isinstance(value, list | tuple) else needle in str(value)
    if op == "<all-in>":
        items = value if isinstance(value, list | tuple) else str(value).split()
        return all(w in items for w in words[1:])
    arg = req[len(op):].strip()
    if op in _STR_OPS:
        return _STR_OPS[op](str(value), arg)
    if op in _NUM_OPS:
        try:
            return _NUM_OPS[op](float(value), float(arg))
        except (TypeError, ValueError):
            return False
    if isinstance(value, list | tuple):
        return req in [str(v) for v in value]
    return str(value) == req
