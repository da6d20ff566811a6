"""The resource harness with the admin-extras routes (aggregates, os-hosts, usage, audit log,
external events) mounted beside the admin ones."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from resources_app import Harness, make_harness


@asynccontextmanager
async def make_extras_harness(tmp_path: Path) -> AsyncIterator[Harness]:
    from cumulo.compute.api import admin, admin_extras
    from cumulo.compute.api.app import render_fault
    from cumulo.compute.api.microversion import MicroversionMiddleware
    from cumulo.web.http import family_app

    async with make_harness(tmp_path) as h:
        routes = [*admin.ROUTES, *admin_extras.ROUTES]
        h.app = MicroversionMiddleware(family_app(h.deps, routes, render_fault))
        yield h
