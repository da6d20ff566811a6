"""The two seams a family app is built on (web/http.py): the `Authenticator` that `authenticate`
asks about tokens, and the dependencies `deps_of` hands back typed. A real (in-test) authenticator
and real dependency objects stand in for the identity service and a family's services."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import errors
from cumulo.context import RequestContext, expand_roles
from cumulo.web.http import Authenticator, authenticate, deps_of, family_app, json_response


class Tokens:
    """An Authenticator over a fixed token table; records what it was asked."""

    def __init__(self, table: dict[str, RequestContext]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def validate_token(self, token: str) -> RequestContext:
        self.asked.append(token)
        if token not in self.table:
            raise errors.Unauthorized("The request you have made requires authentication.")
        return self.table[token]


@dataclass(frozen=True)
class Greeting:
    word: str


@dataclass(frozen=True)
class Other:
    word: str


def fault(status: int, message: str, request: Request) -> Response:
    return json_response({"fault": {"code": status, "message": message}}, status)


async def whoami(request: Request) -> Response:
    ctx = await authenticate(request)
    return json_response({"user": ctx.user_id, "project": ctx.project_id, "request_id": ctx.request_id})


async def greet(request: Request) -> Response:
    return json_response({"word": deps_of(request, Greeting).word})


async def greet_wrong_kind(request: Request) -> Response:
    return json_response({"word": deps_of(request, Other).word})


ROUTES = [
    Route("/whoami", whoami, methods=["GET"]),
    Route("/greet", greet, methods=["GET"]),
    Route("/wrong", greet_wrong_kind, methods=["GET"]),
]
ALICE = RequestContext(user_id="alice", project_id="p-1", roles=expand_roles(["member"]))


def client(app: Starlette) -> httpx.AsyncClient:
    # The app's crash handler answers a 500 and Starlette re-raises after it: take the answer.
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://t")


async def test_authenticate_asks_the_apps_authenticator() -> None:
    tokens = Tokens({"good": ALICE})
    checker: Authenticator = tokens
    app = family_app(Greeting("hi"), ROUTES, fault, authenticator=checker)
    async with client(app) as c:
        r = await c.get("/whoami", headers={"X-Auth-Token": "good"})
        assert r.status_code == 200 and r.json()["user"] == "alice" and r.json()["project"] == "p-1"
        r = await c.get("/whoami", headers={"X-Auth-Token": "stolen"})
        assert r.status_code == 401 and r.json()["fault"]["code"] == 401
        r = await c.get("/whoami")
        assert r.status_code == 401
    assert tokens.asked == ["good", "stolen"]  # no token: the authenticator is not asked


async def test_an_app_without_an_authenticator_takes_no_token() -> None:
    """Fails closed: a token it cannot check is a 401, never a pass."""
    app = family_app(Greeting("hi"), ROUTES, fault)
    async with client(app) as c:
        r = await c.get("/whoami", headers={"X-Auth-Token": "good"})
        assert r.status_code == 401 and r.json()["fault"]["message"].startswith("The request you have made")


async def test_deps_of_gives_the_factorys_dependencies_typed() -> None:
    app = family_app(Greeting("hello"), ROUTES, fault)
    async with client(app) as c:
        r = await c.get("/greet")
        assert r.status_code == 200 and r.json() == {"word": "hello"}
        # Asking for another kind than the app was built with is a bug in the app: a 500 fault.
        r = await c.get("/wrong")
        assert r.status_code == 500 and r.json()["fault"]["code"] == 500
