"""/paas/rest/vdc/{vdc}/task...: the caller's project's tasks (Pegasus's `task/{id}` ignored the vdc
and served any tenant's task; here another project's task is a 404, whatever its id).

- GET vdc/{vdc}/task (?states=RUNNING,ERROR, page/pageSize): [Task], oldest first;
- GET vdc/{vdc}/task/{id}: Task;
- GET vdc/{vdc}/task/environmentInstance/{name}[/tierInstance/{tier}]: [Task] of that instance (tier).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cumulo.paas.api.scope import begin
from cumulo.paas.inventory import Inventory
from cumulo.paas.shapes import render_task
from cumulo.web.http import json_response

READ = "paas:task:read"


async def list_tasks(request: Request) -> Response:
    call = await begin(request, READ)
    inv = Inventory(call.deps.catalogue.db)
    rows = await inv.tasks(call.ctx, statuses=call.params("states"), instance=request.path_params.get("name"),
                           tier=request.path_params.get("tier"))
    return json_response([render_task(r, call.base) for r in call.page(rows)])


async def show_task(request: Request) -> Response:
    call = await begin(request, READ)
    row = await Inventory(call.deps.catalogue.db).task(call.ctx, call.path("task_id"))
    return json_response(render_task(row, call.base))


def routes(root: str) -> list[BaseRoute]:
    tasks = f"{root}/vdc/{{vdc}}/task"
    return [
        Route(tasks, list_tasks, methods=["GET"]),
        Route(f"{tasks}/{{task_id}}", show_task, methods=["GET"]),
        Route(f"{tasks}/environmentInstance/{{name}}", list_tasks, methods=["GET"]),
        Route(f"{tasks}/environmentInstance/{{name}}/tierInstance/{{tier}}", list_tasks, methods=["GET"]),
    ]
