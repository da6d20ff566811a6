"""What every /paas handler does first: authenticate (Keystone token, X-Auth-Token), check the
media types (JSON only), map Pegasus's {org} and {vdc} to the caller's domain and project (another
value is a 404, as another project's resource), check the `Tenant-Id` header (a different project
is a 403) and the policy rule.

Policy rules (cumulo.policy; an unknown rule is admin-only):
- paas:catalog:read (reader), paas:catalog:write (member): products and environments;
- paas:product:publish (admin): public product releases (metadata public=yes), deleting them;
- paas:instance:read (reader), paas:instance:write (member): environment instances, their nodes,
  products, applications, scaling and events;
- paas:task:read (reader): tasks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from cumulo import errors, policy
from cumulo.context import RequestContext
from cumulo.paas.catalogue import Catalogue
from cumulo.paas.deps import PaasServices
from cumulo.paas.engine.base import PaasEngineAPI
from cumulo.paas.faults import EngineUnavailable
from cumulo.web.http import authenticate, base_url, deps_of, json_body

policy.register({
    "paas:catalog:read": policy.READER,
    "paas:catalog:write": policy.MEMBER,
    "paas:product:publish": policy.ADMIN,
    "paas:instance:read": policy.READER,
    "paas:instance:write": policy.MEMBER,
    "paas:task:read": policy.READER,
})

EngineSource = Callable[[], PaasEngineAPI | None]


@dataclass(frozen=True)
class PaasDeps:
    services: PaasServices | None
    catalogue: Catalogue
    engine_source: EngineSource
    conf: Any  # cumulo.conf.Settings (the artifact store's state_dir)


@dataclass
class Call:
    """One request: the caller, the dependencies, the family's root URL as the client reached it."""

    request: Request
    ctx: RequestContext
    deps: PaasDeps
    base: str

    @property
    def vdc(self) -> str:
        return self.ctx.project_id or ""

    def path(self, name: str) -> str:
        value: str = self.request.path_params[name]
        return value

    def engine(self) -> PaasEngineAPI:
        engine = self.deps.engine_source()
        if engine is None:
            raise EngineUnavailable("The PaaS engine is not running in this process: deployments are unavailable")
        return engine

    def allowed(self, rule: str) -> bool:
        return policy.allowed(self.ctx, rule)

    def param(self, name: str) -> str | None:
        value = self.request.query_params.get(name)
        if value is not None and "\x00" in value:
            raise errors.Invalid(f"query parameter {name}: a NUL character is not allowed")
        return value

    def params(self, name: str) -> list[str]:
        """A list-valued query parameter: repeated or comma-separated."""
        out: list[str] = []
        for v in self.request.query_params.getlist(name):
            if "\x00" in v:
                raise errors.Invalid(f"query parameter {name}: a NUL character is not allowed")
            out.extend(x for x in v.split(",") if x)
        return out

    def page(self, items: Sequence[Any]) -> list[Any]:
        """Pegasus's paging: `page` (from 0) and `pageSize`, applied only when both are given."""
        page, size = self.param("page"), self.param("pageSize")
        if page is None or size is None:
            return list(items)
        if not re.fullmatch(r"[0-9]{1,9}", page) or not re.fullmatch(r"[0-9]{1,9}", size) or int(size) == 0:
            raise errors.Invalid("page and pageSize must be whole numbers (pageSize at least 1)")
        start = int(page) * int(size)
        return list(items[start:start + int(size)])

    async def body(self) -> Any:
        ctype = self.request.headers.get("content-type", "")
        media = ctype.split(";")[0].strip().lower()
        if ctype and media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
            raise errors.UnsupportedMediaType(f"Content-Type {ctype[:80]} is not supported: send application/json")
        return await json_body(self.request)

    def callback(self, body: Any = None) -> str | None:
        """Pegasus's `callback` header (or, for clients that cannot set one, `callback` in the body)."""
        value = self.request.headers.get("callback")
        if value is None and isinstance(body, dict):
            value = body.get("callback")
        if value is None or value == "":
            return None
        if not isinstance(value, str) or len(value) > 2048 or not value.lower().startswith(("http://", "https://")):
            raise errors.Invalid("callback must be an http or https URL of at most 2048 characters")
        return value


def _check_accept(request: Request) -> None:
    accept = request.headers.get("accept")
    if not accept:
        return
    kinds = [a.split(";")[0].strip().lower() for a in accept.split(",")]
    if not any(k in ("*/*", "application/*", "application/json") or k.endswith("+json") for k in kinds):
        raise errors.NotAcceptable(f"Cannot answer {accept[:80]}: this API speaks application/json only")


async def begin(request: Request, rule: str) -> Call:
    """Authenticate, check media types, {org}/{vdc}/Tenant-Id, and the policy rule."""
    _check_accept(request)
    ctx = await authenticate(request)
    if not ctx.project_id:
        raise errors.Unauthorized("A project-scoped token is required")
    tenant = request.headers.get("tenant-id")
    if tenant and tenant != ctx.project_id:
        raise errors.Forbidden("The Tenant-Id header names another project than the token's")
    org = request.path_params.get("org")
    if org is not None and org.lower() != (ctx.domain_id or "default").lower():
        raise errors.NotFound(f"organization {org[:64]} not found")
    vdc = request.path_params.get("vdc")
    if vdc is not None and vdc != ctx.project_id:
        raise errors.NotFound(f"vdc {vdc[:64]} not found")
    policy.authorize(ctx, rule)
    return Call(request, ctx, deps_of(request, PaasDeps), base_url(request))
