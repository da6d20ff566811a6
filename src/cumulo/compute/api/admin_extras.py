"""The routes of the smaller admin and usage APIs, each in its own module."""

from __future__ import annotations

from starlette.routing import BaseRoute

from cumulo.compute.api import aggregates

ROUTES: list[BaseRoute] = [*aggregates.ROUTES]
