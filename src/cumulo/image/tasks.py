"""Glance's tasks API (v2.2, admin-only by default). Tasks of type "import" are refused: such a
task would make the cloud fetch whatever address the caller names (a server-side request on a
tenant's behalf), so POST /v2/tasks validates the body as Glance does and then answers 400 naming
the alternatives (glance-direct import, or PUT /file). GET /v2/tasks and /v2/tasks/{id} show the
api_image_import tasks that glance-direct imports record (image/imports.py)."""

from __future__ import annotations

from typing import Any

import jsonschema
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cumulo import errors, policy
from cumulo.image import imports
from cumulo.image._schemas import UUID_PATTERN
from cumulo.image.deps import services_of
from cumulo.web.http import authenticate, json_body, json_response

POLICY_RULES = {
    "image:get_tasks": policy.ADMIN,
    "image:get_task": policy.ADMIN,
    "image:add_task": policy.ADMIN,
}
policy.register(POLICY_RULES)

STATUSES = ("pending", "processing", "success", "failure")
TYPES = ("import", "api_image_import")  # what GET /v2/tasks?type= accepts; POST takes "import" only


def task_schema() -> dict[str, Any]:
    """GET /v2/schemas/task, as the Image API v2 reference shows it."""
    return {
        "name": "task",
        "properties": {
            "id": {"type": "string", "description": "An identifier for the task", "pattern": UUID_PATTERN},
            "type": {"type": "string", "description": "The type of task represented by this content",
                     "enum": ["import"]},
            "status": {"type": "string", "description": "The current status of this task", "enum": list(STATUSES)},
            "input": {"type": ["null", "object"], "description": "The parameters required by task, JSON blob"},
            "result": {"type": ["null", "object"], "description": "The result of current task, JSON blob"},
            "owner": {"type": "string", "description": "An identifier for the owner of this task"},
            "message": {
                "type": "string",
                "description": "Human-readable informative message only included when appropriate (usually on failure)",
            },
            "expires_at": {"type": ["null", "string"],
                           "description": "Datetime when this resource would be subject to removal"},
            "created_at": {"type": "string", "description": "Datetime when this resource was created"},
            "updated_at": {"type": "string", "description": "Datetime when this resource was updated"},
            "self": {"type": "string", "readOnly": True},
            "schema": {"type": "string", "readOnly": True},
        },
    }


def tasks_schema() -> dict[str, Any]:
    item = task_schema()
    return {
        "name": "tasks",
        "properties": {
            "tasks": {"type": "array", "items": item},
            "first": {"type": "string"},
            "next": {"type": "string"},
            "schema": {"type": "string"},
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


# What POST /v2/tasks accepts (Glance: type and input required; "import" input names its source).
_CREATE = jsonschema.Draft4Validator(
    {
        "type": "object",
        "properties": {
            "type": {"type": "string"},
            "input": {
                "type": "object",
                "properties": {
                    "import_from": {"type": "string"},
                    "import_from_format": {"type": "string"},
                    "image_properties": {"type": "object"},
                },
                "required": ["import_from", "import_from_format", "image_properties"],
            },
        },
        "required": ["type", "input"],
    }
)


async def create_task(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "image:add_task")
    body = await json_body(request)
    if isinstance(body, dict) and "type" in body and body.get("type") != "import":
        raise errors.Invalid(f"Invalid type value: {body.get('type')}")
    error = jsonschema.exceptions.best_match(_CREATE.iter_errors(body))
    if error is not None:
        raise errors.Invalid(f"Provided object does not match schema 'task': {error.message}")
    raise errors.Invalid(
        "Importing an image from a URL is not supported by this cloud (it never fetches a caller's URL): "
        "create the image with POST /v2/images and upload its data with PUT /v2/images/{image_id}/file."
    )


async def list_tasks(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "image:get_tasks")
    for key, allowed in (("status", STATUSES), ("type", TYPES)):
        value = request.query_params.get(key)
        if value is not None and value not in allowed:
            raise errors.Invalid(f"Invalid {key} value: {value}")
    found = await imports.all_tasks(services_of(request).images)
    for key in ("status", "type"):
        if request.query_params.get(key) is not None:
            found = [t for t in found if t[key] == request.query_params[key]]
    return json_response({"tasks": found, "first": "/v2/tasks", "schema": "/v2/schemas/tasks"})


async def show_task(request: Request) -> Response:
    ctx = await authenticate(request)
    policy.authorize(ctx, "image:get_task")
    task = await imports.one_task(services_of(request).images, request.path_params["task_id"])
    if task is None:
        raise errors.NotFound(f"Task with the given ID {request.path_params['task_id']} was not found")
    return json_response(task)


async def _schema(request: Request) -> Response:
    await authenticate(request)
    return json_response(task_schema() if request.url.path.endswith("/task") else tasks_schema())


ROUTES: list[BaseRoute] = [
    Route("/v2/tasks", list_tasks, methods=["GET"]),
    Route("/v2/tasks", create_task, methods=["POST"]),
    Route("/v2/tasks/{task_id}", show_task, methods=["GET"]),
    Route("/v2/schemas/task", _schema, methods=["GET"]),
    Route("/v2/schemas/tasks", _schema, methods=["GET"]),
]
