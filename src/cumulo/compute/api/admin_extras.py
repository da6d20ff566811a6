"""The routes of the smaller admin and usage APIs, each in its own module."""

from __future__ import annotations

from starlette.routing import BaseRoute

from cumulo.compute.api import (
    aggregates,
    external_events,
    hosts,
    server_security_groups,
    tenant_usage,
    usage_audit_log,
)

ROUTES: list[BaseRoute] = [
    *aggregates.ROUTES,
    *hosts.ROUTES,
    *tenant_usage.ROUTES,
    *usage_audit_log.ROUTES,
    *external_events.ROUTES,
    *server_security_groups.ROUTES,
]
