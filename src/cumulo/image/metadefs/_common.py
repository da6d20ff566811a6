"""Shared pieces of the metadefs service: body checks in Glance's words, the visibility rule and
the namespace lookup every child resource starts from."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import jsonschema
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.db import Database
from cumulo.image.metadefs import schemas
from cumulo.image.metadefs.models import metadef_namespaces

MAX_LIMIT = 1000  # Glance's api_limit_max
DEFAULT_LIMIT = 25  # Glance's limit_param_default


def validator(schema: dict[str, Any]) -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator(schemas.request_schema(schema))


def check_body(body: Any, check: jsonschema.Draft4Validator, what: str) -> dict[str, Any]:
    """Glance refuses read-only attributes (403) before it validates against the schema (400)."""
    if not isinstance(body, dict):
        raise errors.Invalid(f"Provided object does not match schema '{what}': the body must be a JSON object")
    for key in schemas.READ_ONLY:
        if key in body:
            raise errors.Forbidden(f"Attribute '{key}' is read-only.")
    error = jsonschema.exceptions.best_match(check.iter_errors(body))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path)
        raise errors.Invalid(
            f"Provided object does not match schema '{what}': {error.message}" + (f" (at '{where}')" if where else "")
        )
    return body


def check_name(value: Any, what: str) -> str:
    """A name is a URL path segment: it must be non-empty and free of '/' (which no URL could address)."""
    if not isinstance(value, str) or not value:
        raise errors.Invalid(f"The {what} name must be a non-empty string.")
    if "/" in value:
        raise errors.Invalid(f"The {what} name {value!r} may not contain '/'.")
    return value


def can_see(ctx: RequestContext, row: Any) -> bool:
    return bool(ctx.is_admin or row["visibility"] == "public" or row["owner"] == ctx.project_id)


def namespace_not_found(name: str) -> errors.NotFound:
    return errors.NotFound(f"Metadata definition namespace={name} was not found.")


async def load_namespace(conn: AsyncConnection, ctx: RequestContext, name: str) -> dict[str, Any]:
    """The namespace row, or 404 when missing or not visible to the caller (no existence leak)."""
    row = (
        await conn.execute(sa.select(metadef_namespaces).where(metadef_namespaces.c.namespace == name))
    ).mappings().first()
    if row is None or not can_see(ctx, row):
        raise namespace_not_found(name)
    return dict(row)


def parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.strip().isdigit():
        raise errors.Invalid("limit param must be an integer")
    value = int(raw)
    if value <= 0:
        raise errors.Invalid("limit param must be positive")
    return min(value, MAX_LIMIT)


def parse_sort_dir(raw: str | None) -> str:
    value = raw or "desc"
    if value not in ("asc", "desc"):
        raise errors.Invalid(f"Invalid sort direction: {value}")
    return value


@asynccontextmanager
async def writing(db: Database) -> AsyncIterator[AsyncConnection]:
    """A write transaction where a unique name taken meanwhile (a concurrent create or rename that
    passed the same check) is a 409, not a 500. The checks before each insert give the precise message."""
    try:
        async with db.write() as conn:
            yield conn
    except IntegrityError as exc:
        raise errors.Conflict("A metadata definition with this name already exists.") from exc
