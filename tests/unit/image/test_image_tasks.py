"""The tasks API is present but never imports from a URL: POST answers 400 naming the upload
alternative, lists are empty, and every call is admin-only (Glance's default policy)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from cumulo.context import RequestContext

Client = Callable[[RequestContext], httpx.AsyncClient]
IMPORT = {"type": "import", "input": {"import_from": "http://example.invalid/x.qcow2", "import_from_format": "qcow2",
                                      "image_properties": {"disk_format": "qcow2", "container_format": "bare"}}}


def _fault(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    assert set(r.json()) == {"message", "code", "title"}
    return str(r.json()["message"])


@pytest.fixture
def admin(client: Client, ctx: Callable[..., RequestContext]) -> httpx.AsyncClient:
    return client(ctx("admin-project", "admin"))


async def test_url_import_is_refused_with_the_alternative(admin: httpx.AsyncClient) -> None:
    message = _fault(await admin.post("/v2/tasks", json=IMPORT), 400)
    assert "PUT /v2/images/{image_id}/file" in message


@pytest.mark.parametrize(
    "body",
    [{}, {"type": "import"}, {"type": "copy", "input": {}}, {"type": "import", "input": {"import_from": "x"}}, [1]],
)
async def test_bad_task_bodies_are_400(admin: httpx.AsyncClient, body: Any) -> None:
    _fault(await admin.post("/v2/tasks", json=body), 400)


async def test_lists_are_empty_and_shows_404(admin: httpx.AsyncClient) -> None:
    r = await admin.get("/v2/tasks")
    assert r.status_code == 200 and r.json() == {"tasks": [], "first": "/v2/tasks", "schema": "/v2/schemas/tasks"}
    _fault(await admin.get("/v2/tasks", params={"status": "done"}), 400)
    _fault(await admin.get("/v2/tasks/3f0c9d4e-0000-4000-8000-000000000000"), 404)
    assert (await admin.get("/v2/schemas/task")).json()["name"] == "task"
    assert (await admin.get("/v2/schemas/tasks")).json()["name"] == "tasks"


async def test_tasks_are_admin_only(client: Client, ctx: Callable[..., RequestContext]) -> None:
    member = client(ctx("p1"))
    _fault(await member.get("/v2/tasks"), 403)
    _fault(await member.post("/v2/tasks", json=IMPORT), 403)
