"""Domain exceptions. Each API family maps these to its own fault format and HTTP code."""

from __future__ import annotations


class CumuloError(Exception):
    """Base of every domain error. `message` is safe to show to the caller."""

    code = 500

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message or self.__class__.__name__


class Invalid(CumuloError):
    code = 400


class Unauthorized(CumuloError):
    code = 401


class Forbidden(CumuloError):
    code = 403


class OverQuota(Forbidden):
    code = 403


class NotFound(CumuloError):
    code = 404


class MethodNotAllowed(CumuloError):
    code = 405


class NotAcceptable(CumuloError):
    code = 406


class Conflict(CumuloError):
    code = 409


class InvalidState(Conflict):
    """An action asked of a resource in a state that does not allow it."""


class PayloadTooLarge(CumuloError):
    code = 413


class UnsupportedMediaType(CumuloError):
    code = 415


class Unavailable(CumuloError):
    """A backing service (the database, the message bus) cannot be reached right now: a 503 the
    client may retry, never a 500. The database's and the bus's own errors subclass it."""

    code = 503


class NoValidHost(CumuloError):
    code = 500


class HostError(CumuloError):
    """A host command failed; message quotes its stderr."""

    code = 500


class DriverError(CumuloError):
    code = 500
