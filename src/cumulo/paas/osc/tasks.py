"""`openstack paas task show|list` and `openstack paas event list`."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from typing import Any

from osc_lib.command import command

from cumulo.paas.osc.client import task_id
from cumulo.paas.osc.common import add_wait, call, client_of, finish


class ShowTask(command.ShowOne):
    """Show a task: status, result, and on ERROR the failed step with its exit code and output."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("task", metavar="<task-id>", help="Task id (the last part of its href)")
        add_wait(parser)
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Iterable[Any]]:
        return finish(self.app, parsed_args, call(client_of(self.app).get_task, parsed_args.task))


class ListTask(command.Lister):
    """List the project's tasks."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("--status", metavar="<status>",
                            help="Only tasks in this status (QUEUED, RUNNING, SUCCESS, ERROR; comma-separated)")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Iterable[Any]]:
        tasks = call(client_of(self.app).list_tasks, states=parsed_args.status)
        return ("ID", "Status", "Description", "Start Time", "End Time"), [
            (task_id(t), t.get("status"), t.get("description", ""), t.get("startTime"), t.get("endTime"))
            for t in tasks
        ]


class ListEvent(command.Lister):
    """List an instance's scaling decisions (autoscaler and manual), with the metric value behind each."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("instance", metavar="<instance>", help="Environment instance name")
        parser.add_argument("--tier", metavar="<tier>", help="Only this tier's events")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Iterable[Any]]:
        events = call(client_of(self.app).list_events, parsed_args.instance, parsed_args.tier)
        columns = ("Time", "Tier", "Policy", "Metric", "Value", "Threshold", "Decision", "From", "To", "Reason",
                   "Task")
        keys = ("time", "tier", "policy", "metric", "value", "threshold", "decision", "fromSize", "toSize",
                "reason", "taskId")
        return columns, [tuple(e.get(k) for k in keys) for e in events]
