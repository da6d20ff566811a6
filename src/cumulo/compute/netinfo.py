"""Placeholder network info until the networking service exists.

openstacksdk (and people) expect an ACTIVE server to have an address, so every server that did not
ask for `networks: "none"` gets one NIC on the "private" network: a MAC with OpenStack's fa:16:3e
prefix and an IPv4 address derived from the instance's integer id. Nothing is plumbed on the host
and no traffic goes there; the networking issue replaces this with real IPAM, bridges and veth/tap.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

NETWORK_NAME = "private"
# Within 10.0.0.0/8: each /24 holds hosts .2-.254 (.1 would be the gateway), ~4M instances in all.
_HOSTS_PER_24 = 253


def _address_for(instance_id: int) -> str:
    n = instance_id - 1
    subnet, host = divmod(n, _HOSTS_PER_24)
    return f"10.{(subnet >> 8) & 255}.{subnet & 255}.{host + 2}"


def _mac_for(uuid: str) -> str:
    tail = uuid.replace("-", "")[-6:]
    return "fa:16:3e:" + ":".join(tail[i : i + 2] for i in range(0, 6, 2))


def vifs_for(inst: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The NICs an instance has: none when it asked for networks "none", else one on "private"."""
    if inst.get("requested_networks") == "none":
        return []
    return [
        {
            "network": NETWORK_NAME,
            "address": _address_for(int(inst["id"])),
            "version": 4,
            "mac": _mac_for(str(inst["uuid"])),
            "type": "fixed",
        }
    ]


def addresses_for(vifs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Nova's `addresses` rendering of the NICs."""
    out: dict[str, list[dict[str, Any]]] = {}
    for vif in vifs:
        out.setdefault(vif["network"], []).append(
            {
                "addr": vif["address"],
                "version": vif["version"],
                "OS-EXT-IPS:type": vif["type"],
                "OS-EXT-IPS-MAC:mac_addr": vif["mac"],
            }
        )
    return out
