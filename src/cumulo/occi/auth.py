"""Who calls /occi: a Keystone token (X-Auth-Token) or HTTP Basic credentials (docs/occi.md,
"Authentication").

- `X-Auth-Token`: validated by the identity service, exactly as the OpenStack APIs do; the token's
  project scope is the caller's project.
- HTTP Basic (`Authorization: Basic base64(user:password)`): a Keystone user of the default domain
  and its password, checked by the identity service's own password login (argon2, lockout, password
  expiry: nothing is reimplemented here). The request is scoped to the project named in the
  `X-Auth-Project` header (a project id or a project name of the default domain), or else to the
  user's default project. The login issues an ordinary Keystone token, kept in a small in-process
  cache keyed by a keyed hash of (user, password, project), so a client sending Basic on every
  request costs one argon2 verification per credential, not per request; the cached token is
  re-validated on every use (a password change, a disabled user or a revoked grant revokes it, and
  the next request logs in again with the credentials it sent).

A 401 tells the client where to authenticate: `WWW-Authenticate: Keystone uri='<url>/identity/v3'`
(the Keystone-VOMS/ooi convention) to a token client or a client that sent nothing; a request that
sent Basic credentials gets `WWW-Authenticate: Basic realm="cumulo"` and never the Keystone one.
A request whose credentials are valid but give no project scope is a 401 as well.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections import OrderedDict
from typing import Any, Protocol

from starlette.requests import Request

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.web.http import remember

PROJECT_HEADER = "X-Auth-Project"
BASIC_REALM = 'Basic realm="cumulo"'
DEFAULT_DOMAIN = "default"
CACHE_SIZE = 1024
_MAX_FIELD = 1024
_FAILED = "The request you have made requires authentication."


class TokenIdentity(Protocol):
    """The identity service calls /occi makes (cumulo.identity.service.IdentityService)."""

    async def validate_token(self, token: str) -> RequestContext: ...

    async def authenticate(self, identity: dict[str, Any], scope: Any) -> Any: ...

    async def get_project(self, project_id: str) -> dict[str, Any] | None: ...


class OcciUnauthorized(errors.Unauthorized):
    """A 401 with its challenge (the WWW-Authenticate value; the API adds the header)."""

    def __init__(self, message: str, challenge: str) -> None:
        super().__init__(message)
        self.challenge = challenge


def keystone_challenge(request: Request) -> str:
    """Where a token client authenticates: the identity API of the address it reached."""
    return f"Keystone uri='{request.url.scheme}://{request.url.netloc}/identity/v3'"


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic ...` value, None when it is not Basic.
    Malformed Basic credentials are an OcciUnauthorized with the Basic challenge."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise OcciUnauthorized("Malformed Basic credentials", BASIC_REALM) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    user, sep, password = text.partition(":")
    if not sep or not user or len(user) > _MAX_FIELD or len(password) > _MAX_FIELD:
        raise OcciUnauthorized("Malformed Basic credentials", BASIC_REALM)
    return user, password


class OcciAuth:
    """Turns a request's credentials into the caller's RequestContext (see the module text)."""

    def __init__(self, identity: TokenIdentity) -> None:
        self.identity = identity
        self._key = os.urandom(32)
        self._tokens: OrderedDict[bytes, str] = OrderedDict()

    async def context(self, request: Request) -> RequestContext:
        authz = request.headers.get("authorization", "")
        sent_basic = authz.strip().partition(" ")[0].lower() == "basic"  # the scheme basic_credentials reads
        token = request.headers.get("x-auth-token")
        if token:
            try:
                ctx = await self.identity.validate_token(token)
            except errors.Unauthorized as exc:
                raise OcciUnauthorized(exc.message, BASIC_REALM if sent_basic else keystone_challenge(request)) from None
            challenge = BASIC_REALM if sent_basic else keystone_challenge(request)
        elif sent_basic:
            creds = basic_credentials(authz)
            assert creds is not None
            ctx = await self._basic(creds[0], creds[1], request.headers.get(PROJECT_HEADER.lower()))
            challenge = BASIC_REALM
        else:
            raise OcciUnauthorized(_FAILED, keystone_challenge(request))
        if not ctx.project_id:
            raise OcciUnauthorized(
                f"The credentials are valid but scope no project: name one in the {PROJECT_HEADER} header"
                if sent_basic and not token else "A project-scoped token is required",
                challenge,
            )
        return ctx

    async def _basic(self, user: str, password: str, project: str | None) -> RequestContext:
        if project is not None and (not project.strip() or len(project) > _MAX_FIELD):
            raise OcciUnauthorized(f"Malformed {PROJECT_HEADER} header", BASIC_REALM)
        key = hmac.new(self._key, "\0".join((user, password, project or "")).encode("utf-8", "surrogatepass"),
                       hashlib.sha256).digest()
        cached = self._tokens.get(key)
        if cached is not None:
            try:
                ctx = await self.identity.validate_token(cached)
                self._tokens.move_to_end(key)
                return ctx
            except errors.Unauthorized:
                self._tokens.pop(key, None)  # revoked or expired: log in again below
        scope: Any = None
        if project is not None:
            project = project.strip()
            found = await self.identity.get_project(project)
            scope = {"project": {"id": project}} if found else {
                "project": {"name": project, "domain": {"id": DEFAULT_DOMAIN}}}
        identity = {"methods": ["password"],
                    "password": {"user": {"name": user, "domain": {"id": DEFAULT_DOMAIN}, "password": password}}}
        try:
            issued = await self.identity.authenticate(identity, scope)
        except errors.Unauthorized as exc:
            raise OcciUnauthorized(exc.message, BASIC_REALM) from None
        except errors.CumuloError as exc:  # e.g. Invalid from the login's checks: still a failed login
            raise OcciUnauthorized(exc.message, BASIC_REALM) from None
        if issued.info.ctx.project_id:  # an unscoped login is not kept: a default project set later applies
            self._tokens[key] = issued.token
        while len(self._tokens) > CACHE_SIZE:
            self._tokens.popitem(last=False)
        scoped: RequestContext = issued.info.ctx
        return scoped


async def authenticate(request: Request, auth: OcciAuth | None) -> RequestContext:
    """The caller's context (cached in the request scope; a test's AsCtx puts one there)."""
    cached = request.scope.get("cumulo.context")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    if auth is None:
        raise OcciUnauthorized(_FAILED, keystone_challenge(request))
    return remember(request, await auth.context(request))
