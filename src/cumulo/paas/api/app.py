"""The PaaS manager's HTTP front door, mounted at /paas: Pegasus's resource paths under /paas/rest
(Pegasus's /paasmanager/rest), JSON only, Keystone tokens (X-Auth-Token), Cumulo's policy, faults
as Pegasus's {"message", "code"} (paas/faults.py). docs/paas.md lists the routes and the shapes.

The catalogue and the inventory's reads need only the database; the inventory's writes need the
engine (PaasEngineAPI): without one attached they answer 503."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from cumulo.db import Database
from cumulo.paas.api import catalogue, inventory, products, tasks
from cumulo.paas.api.scope import PaasDeps
from cumulo.paas.catalogue import Catalogue
from cumulo.paas.deps import PaasServices
from cumulo.paas.engine.base import PaasEngineAPI
from cumulo.paas.faults import render_fault
from cumulo.web.http import Authenticator, family_app

ROOT = "/rest"
ROUTES: list[BaseRoute] = [*catalogue.routes(ROOT), *inventory.routes(ROOT), *products.routes(ROOT), *tasks.routes(ROOT)]


def make_app(
    services: PaasServices | None,
    engine: PaasEngineAPI | Callable[[], PaasEngineAPI | None] | None,
    authenticator: Authenticator | None = None,
    *,
    db: Database | None = None,
    conf: Any = None,
) -> ASGIApp:
    """The PaaS family's ASGI app. `engine` is the engine, or a function answering it (the runtime
    builds the engine in Cloud.start, after the app may be made), or None (503 for the engine's
    routes). `db`/`conf` stand in for `services` in tests that need only the tables."""
    database = db if db is not None else (services.db if services is not None else None)
    settings = conf if conf is not None else (services.conf if services is not None else None)
    if database is None:
        raise ValueError("the PaaS API needs a database (services or db)")
    if engine is None or not callable(engine):
        fixed = engine

        def source() -> PaasEngineAPI | None:
            return fixed
    else:
        source = engine
    deps = PaasDeps(services=services, catalogue=Catalogue(database), engine_source=source, conf=settings)
    app = family_app(deps, ROUTES, render_fault, authenticator=authenticator)
    app.router.redirect_slashes = False
    return app
