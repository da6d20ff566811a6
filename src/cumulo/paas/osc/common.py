"""What the command modules share: the client from OSC's app, --wait, and how a Task is shown."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from osc_lib import exceptions

from cumulo.paas.osc.client import PaasClient, PaasError, task_id

DEFAULT_TIMEOUT = 600.0
TASK_COLUMNS = ("id", "status", "description", "start_time", "end_time", "result", "error", "error_step",
                "error_code", "exit_code", "output")


def client_of(app: Any) -> PaasClient:
    paas: PaasClient = app.client_manager.paas
    return paas


def add_wait(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", action="store_true",
                        help="Wait for the task to end; exit non-zero with its error if it fails")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="<seconds>",
                        help=f"How long --wait waits (default {DEFAULT_TIMEOUT:g} s)")


def add_callback(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--callback", metavar="<url>",
                        help="URL that gets one POST of the Task when it ends (loopback or an allowed host)")


def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a client call; an API refusal becomes a CommandError with the API's message."""
    try:
        return fn(*args, **kwargs)
    except PaasError as exc:
        raise exceptions.CommandError(str(exc)) from None


def task_row(task: Mapping[str, Any]) -> tuple[Any, ...]:
    err = task.get("error") or {}
    result = task.get("result") or {}
    return (
        task_id(task), task.get("status"), task.get("description", ""), task.get("startTime"),
        task.get("endTime"), result.get("href") if isinstance(result, Mapping) else result,
        err.get("message"), err.get("step"), err.get("majorErrorCode"), err.get("minorErrorCode"),
        err.get("output"),
    )


def show_task(task: Mapping[str, Any]) -> tuple[Sequence[str], tuple[Any, ...]]:
    return TASK_COLUMNS, task_row(task)


def finish(app: Any, parsed: argparse.Namespace, task: Mapping[str, Any]) -> tuple[Sequence[str], tuple[Any, ...]]:
    """Show the task; with --wait, first poll it to its end (status changes go to stderr) and fail
    with the task's error when it ends in ERROR."""
    if getattr(parsed, "wait", False):
        paas = client_of(app)

        def note(t: Mapping[str, Any]) -> None:
            print(f"task {task_id(t)}: {t.get('status')}", file=sys.stderr, flush=True)

        try:
            task = call(paas.wait_task, task, timeout=parsed.timeout, on_status=note)
        except TimeoutError as exc:
            raise exceptions.CommandError(str(exc)) from None
        if task.get("status") != "SUCCESS":
            err = task.get("error") or {}
            message = err.get("message") or f"task {task_id(task)} ended {task.get('status')}"
            raise exceptions.CommandError(f"task {task_id(task)} {task.get('status')}: {message}")
    return show_task(task)
