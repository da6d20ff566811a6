"""Keystone v3 routes for a user's credentials: application credentials and OS-EC2 credentials.

Policy (Keystone's defaults, in Cumulo's project-scoped form): a user manages its own; an admin
may list, show and delete anyone's. Only the user itself creates an application credential (for
its token's project). A token made with a restricted application credential cannot create or
delete application credentials, nor create EC2 credentials; and any application-credential token
reaches only EC2 credentials of its own project (Keystone's delegation checks).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cumulo import errors, policy
from cumulo.identity import schemas, views
from cumulo.identity.api._common import identity as _identity
from cumulo.identity.tokens import TokenInfo
from cumulo.web.http import authenticate, empty, json_body, json_response

A = policy.ADMIN
policy.register(
    {
        "identity:create_application_credential": A,  # the user itself only (checked below)
        "identity:list_application_credentials": A,
        "identity:get_application_credential": A,
        "identity:delete_application_credential": A,
        "identity:ec2_create_credential": A,
        "identity:ec2_list_credentials": A,
        "identity:ec2_get_credential": A,
        "identity:ec2_delete_credential": A,
    }
)


async def _caller_for_user(request: Request, rule: str) -> tuple[TokenInfo, str]:
    """The caller's token and the path's user id: the user itself, or `rule`'s role (admin)."""
    ctx = await authenticate(request)
    user_id = str(request.path_params["user_id"])
    if ctx.user_id != user_id:
        policy.authorize(ctx, rule)
        await _identity(request).directory.require_user(user_id)
    info = await _identity(request).token_info(request.headers.get("x-auth-token", ""))
    return info, user_id


def _require_unrestricted(info: TokenInfo, what: str) -> None:
    if info.app_cred is not None and not info.app_cred.unrestricted:
        raise errors.Forbidden(
            "You are not authorized to perform the requested action: Using method"
            f" 'application_credential' is not allowed for managing {what}."
        )


# -- application credentials -------------------------------------------------------------------


async def create_app_cred(request: Request) -> Response:
    info, user_id = await _caller_for_user(request, "identity:create_application_credential")
    if info.user_id != user_id:
        raise errors.Forbidden(
            "You are not authorized to perform the requested action: Cannot create an application"
            " credential for another user."
        )
    _require_unrestricted(info, "additional application credentials")
    fields = schemas.validate(schemas.APP_CRED_CREATE, await json_body(request))["application_credential"]
    created = await _identity(request).app_creds.create(info, user_id, fields)
    secret = created.pop("secret")
    return json_response({"application_credential": views.app_cred(request, created, secret)}, 201)


async def list_app_creds(request: Request) -> Response:
    _, user_id = await _caller_for_user(request, "identity:list_application_credentials")
    found = await _identity(request).app_creds.for_user(user_id, request.query_params.get("name"))
    items = [views.app_cred(request, c) for c in found]
    return json_response(views.collection(request, "application_credentials", items))


async def get_app_cred(request: Request) -> Response:
    _, user_id = await _caller_for_user(request, "identity:get_application_credential")
    found = await _identity(request).app_creds.get(user_id, str(request.path_params["cred_id"]))
    return json_response({"application_credential": views.app_cred(request, found)})


async def delete_app_cred(request: Request) -> Response:
    info, user_id = await _caller_for_user(request, "identity:delete_application_credential")
    _require_unrestricted(info, "additional application credentials")
    await _identity(request).app_creds.delete(user_id, str(request.path_params["cred_id"]))
    return empty(204)


# -- OS-EC2 ------------------------------------------------------------------------------------


def _check_delegation(info: TokenInfo, project_id: str) -> None:
    """A token made with an application credential reaches EC2 credentials of its project only."""
    if info.app_cred is not None and project_id != info.project_id:
        raise errors.Forbidden(
            "You are not authorized to perform the requested action: EC2 credential project does"
            " not match the project scope of the delegated token."
        )


async def create_ec2(request: Request) -> Response:
    info, user_id = await _caller_for_user(request, "identity:ec2_create_credential")
    _require_unrestricted(info, "EC2 credentials")
    project_id = schemas.validate(schemas.EC2_CREATE, await json_body(request))["tenant_id"]
    _check_delegation(info, project_id)
    created = await _identity(request).ec2.create(user_id, project_id)
    return json_response({"credential": views.ec2_credential(request, created)}, 201)


async def list_ec2(request: Request) -> Response:
    info, user_id = await _caller_for_user(request, "identity:ec2_list_credentials")
    found = await _identity(request).ec2.for_user(user_id)
    if info.app_cred is not None:
        found = [c for c in found if c["project_id"] == info.project_id]
    items = [views.ec2_credential(request, c) for c in found]
    return json_response(views.collection(request, "credentials", items))


async def get_ec2(request: Request) -> Response:
    info, user_id = await _caller_for_user(request, "identity:ec2_get_credential")
    found = await _identity(request).ec2.get(user_id, str(request.path_params["access"]))
    _check_delegation(info, found["project_id"])
    return json_response({"credential": views.ec2_credential(request, found)})


async def delete_ec2(request: Request) -> Response:
    info, user_id = await _caller_for_user(request, "identity:ec2_delete_credential")
    ec2 = _identity(request).ec2
    access = str(request.path_params["access"])
    if info.app_cred is not None:
        _check_delegation(info, (await ec2.get(user_id, access))["project_id"])
    await ec2.delete(user_id, access)
    return empty(204)


ROUTES: list[BaseRoute] = [
    Route("/v3/users/{user_id}/application_credentials", list_app_creds, methods=["GET"]),
    Route("/v3/users/{user_id}/application_credentials", create_app_cred, methods=["POST"]),
    Route("/v3/users/{user_id}/application_credentials/{cred_id}", get_app_cred, methods=["GET"]),
    Route("/v3/users/{user_id}/application_credentials/{cred_id}", delete_app_cred, methods=["DELETE"]),
    Route("/v3/users/{user_id}/credentials/OS-EC2", list_ec2, methods=["GET"]),
    Route("/v3/users/{user_id}/credentials/OS-EC2", create_ec2, methods=["POST"]),
    Route("/v3/users/{user_id}/credentials/OS-EC2/{access}", get_ec2, methods=["GET"]),
    Route("/v3/users/{user_id}/credentials/OS-EC2/{access}", delete_ec2, methods=["DELETE"]),
]

_AC = "/v3/users/{user_id}/application_credentials"
_EC2 = "/v3/users/{user_id}/credentials/OS-EC2"
# For the OpenAPI document (and so the fuzz and bad-input suites): (method, path, summary, options).
OPENAPI_OPS: tuple[tuple[str, str, str, dict[str, object]], ...] = (
    ("GET", _AC, "List application credentials", {"query": ("name",)}),
    ("POST", _AC, "Create application credential", {"body": schemas.APP_CRED_CREATE, "status": 201}),
    ("GET", _AC + "/{cred_id}", "Show application credential", {}),
    ("DELETE", _AC + "/{cred_id}", "Delete application credential", {"status": 204}),
    ("GET", _EC2, "List EC2 credentials", {}),
    ("POST", _EC2, "Create EC2 credential", {"body": schemas.EC2_CREATE, "status": 201}),
    ("GET", _EC2 + "/{access}", "Show EC2 credential", {}),
    ("DELETE", _EC2 + "/{access}", "Delete EC2 credential", {"status": 204}),
)
