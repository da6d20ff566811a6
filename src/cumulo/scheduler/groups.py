"""Server-group placement rules the scheduler applies: the four policies and what breaks a hard one.

The groups themselves (storage, quotas, membership) are compute's (compute/server_groups.py); the
filters and weighers, and the conductor's late check, judge a host with these rules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

AFFINITY = "affinity"
ANTI_AFFINITY = "anti-affinity"
SOFT_AFFINITY = "soft-affinity"
SOFT_ANTI_AFFINITY = "soft-anti-affinity"
POLICIES = (ANTI_AFFINITY, AFFINITY, SOFT_ANTI_AFFINITY, SOFT_AFFINITY)
HARD_POLICIES = frozenset({AFFINITY, ANTI_AFFINITY})


def max_server_per_host(rules: Mapping[str, Any] | None) -> int:
    value = (rules or {}).get("max_server_per_host")
    return int(value) if value else 1


def violation(policy: str, rules: Mapping[str, Any] | None, member_hosts: list[str], host: str) -> str | None:
    """Why placing one more member on `host` breaks a hard policy (Nova's words), or None."""
    if policy == ANTI_AFFINITY and member_hosts.count(host) >= max_server_per_host(rules):
        return "Anti-affinity instance group policy was violated."
    if policy == AFFINITY and member_hosts and host not in member_hosts:
        return "Affinity instance group policy was violated."
    return None
