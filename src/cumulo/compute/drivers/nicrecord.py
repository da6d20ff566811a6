"""The NICs a server has on this host, as its driver keeps them (runc: `nics.json` in the instance
dir; QEMU: the "nics" list of instance.json): each NicSpec with the name the guest sees (`eth<i>`
for a container, the QEMU device id for a VM). Written before a NIC is plugged and dropped after
it is unplugged, so whatever a crash leaves, cleanup finds every NIC that may exist."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cumulo.compute.drivers.base import NicSpec


@dataclass(frozen=True)
class PluggedNic:
    slot: int  # eth<slot> in a container; the VM's NIC index (device ids derive from it)
    nic: NicSpec


def to_json(entry: PluggedNic) -> dict[str, Any]:
    n = entry.nic
    return {"slot": entry.slot, "port_id": n.port_id, "mac": n.mac, "netns": n.netns, "bridge": n.bridge,
            "device": n.device, "addresses": list(n.addresses), "gateway": n.gateway,
            "routes": [list(r) for r in n.routes], "mtu": n.mtu, "dns": list(n.dns)}


def from_json(doc: dict[str, Any]) -> PluggedNic:
    nic = NicSpec.from_dict(doc)
    return PluggedNic(int(doc["slot"]), nic)


def load(docs: Any) -> list[PluggedNic]:
    """The list kept in a record (anything unreadable is left out)."""
    out = []
    for doc in docs if isinstance(docs, list) else []:
        try:
            out.append(from_json(doc))
        except (KeyError, TypeError, ValueError, IndexError):
            continue
    return out


def free_slot(entries: list[PluggedNic]) -> int:
    used = {e.slot for e in entries}
    return next(i for i in range(len(used) + 1) if i not in used)


def find(entries: list[PluggedNic], port_id: str) -> PluggedNic | None:
    return next((e for e in entries if e.nic.port_id == port_id), None)
