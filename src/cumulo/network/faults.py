"""Neutron's fault types: domain errors that carry the `type` of `{"NeutronError": {"type", ...}}`.

The services raise the usual cumulo.errors classes (Invalid, NotFound, Conflict, Forbidden); `typed`
stamps the Neutron exception name on one (NetworkNotFound, IpAddressAlreadyAllocated, ...), and the
API renders it. An error without a stamp gets the WebOb name of its status (HTTPBadRequest, ...),
which is what Neutron sends for input that fails its attribute validation.
"""

from __future__ import annotations

from typing import TypeVar

from cumulo import errors

E = TypeVar("E", bound=errors.CumuloError)

# The WebOb exception names Neutron's faults carry when no Neutron exception class applies.
HTTP_TYPES = {
    400: "HTTPBadRequest",
    401: "HTTPUnauthorized",
    403: "HTTPForbidden",
    404: "HTTPNotFound",
    405: "HTTPMethodNotAllowed",
    406: "HTTPNotAcceptable",
    409: "HTTPConflict",
    413: "HTTPRequestEntityTooLarge",
    415: "HTTPUnsupportedMediaType",
    500: "HTTPInternalServerError",
    501: "HTTPNotImplemented",
    503: "HTTPServiceUnavailable",
}


def typed(exc: E, neutron_type: str) -> E:
    """`exc` with the Neutron exception name its fault shows."""
    exc.neutron_type = neutron_type  # type: ignore[attr-defined]
    return exc


def type_of(exc: BaseException | None, status: int) -> str:
    stamped = getattr(exc, "neutron_type", None)
    if isinstance(stamped, str):
        return stamped
    return HTTP_TYPES.get(status, "HTTPError")


def not_found(kind: str, resource_id: str) -> errors.NotFound:
    """NetworkNotFound & co., worded as Neutron words them."""
    label = {"Network": "Network", "Subnet": "Subnet", "Port": "Port"}.get(kind, kind)
    return typed(errors.NotFound(f"{label} {resource_id} could not be found."), f"{kind}NotFound")


def not_found_route() -> errors.NotFound:
    return typed(errors.NotFound("The resource could not be found."), "HTTPNotFound")


def bad_request(message: str) -> errors.Invalid:
    return typed(errors.Invalid(message), "HTTPBadRequest")


def invalid_input(message: str) -> errors.Invalid:
    """Neutron's InvalidInput: 'Invalid input for operation: <why>.'"""
    return typed(errors.Invalid(f"Invalid input for operation: {message}"), "InvalidInput")


def conflict(neutron_type: str, message: str) -> errors.Conflict:
    return typed(errors.Conflict(message), neutron_type)


def over_quota(resource: str) -> errors.Conflict:
    """Neutron answers an exhausted quota with 409 OverQuota."""
    return conflict("OverQuota", f"Quota exceeded for resources: ['{resource}'].")


def forbidden(message: str) -> errors.Forbidden:
    return typed(errors.Forbidden(message), "PolicyNotAuthorized")
