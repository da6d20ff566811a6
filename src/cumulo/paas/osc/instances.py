"""`openstack paas environment instance|tier|product instance|application ...`: the inventory."""

from __future__ import annotations

import argparse
import base64
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from osc_lib import exceptions
from osc_lib.cli import format_columns
from osc_lib.command import command

from cumulo.paas.osc.common import add_callback, add_wait, call, client_of, finish

# An inline artifact rides in the JSON body (1 MiB limit, base64 adds a third).
MAX_INLINE_ARTIFACT = 700 * 1024


def _tiers(inst: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(inst.get("tierDto") or [])


def _nodes(inst: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [n for t in _tiers(inst) for n in t.get("tierInstancePDto") or []]


def _fip(vm: Mapping[str, Any]) -> Any:
    return vm.get("floatingIp", vm.get("floatingip"))


def _node_line(n: Mapping[str, Any]) -> str:
    vm = n.get("vm") or {}
    ips = ", ".join(str(x) for x in (vm.get("ip"), _fip(vm)) if x)
    return f"{n.get('tierInstanceName')} {n.get('status')}{f' ({ips})' if ips else ''}"


INSTANCE_COLUMNS = ("name", "environment", "status", "description", "task_id", "tiers", "nodes", "error")


def _instance_row(inst: Mapping[str, Any]) -> tuple[Any, ...]:
    env = inst.get("environmentDto") or {}
    return (
        inst.get("blueprintName") or inst.get("environmentInstanceName"),
        inst.get("environmentName") or (env.get("name") if isinstance(env, Mapping) else env),
        inst.get("status"), inst.get("description", ""), inst.get("taskId"),
        ", ".join(str(t.get("name")) for t in _tiers(inst)),
        format_columns.ListColumn([_node_line(n) for n in _nodes(inst)]),
        _error(inst.get("error")),
    )


def _error(err: Any) -> Any:
    """An ERROR instance's failed step and output (the task error's message)."""
    if isinstance(err, Mapping):
        return err.get("message") or err
    return err


class CreateInstance(command.ShowOne):
    """Deploy an environment as an environment instance (asynchronous: shows the task)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("name", metavar="<name>", help="Instance name (Pegasus's blueprintName)")
        parser.add_argument("--environment", required=True, metavar="<environment>", help="Environment to deploy")
        parser.add_argument("--description", default="", metavar="<text>", help="Description")
        parser.add_argument("--keep-on-failure", action="store_true",
                            help="On failure keep what was made (for debugging) instead of rolling it back")
        add_callback(parser)
        add_wait(parser)
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Iterable[Any]]:
        task = call(client_of(self.app).create_instance, parsed_args.name, parsed_args.environment,
                    description=parsed_args.description, keep_on_failure=parsed_args.keep_on_failure,
                    callback=parsed_args.callback)
        return finish(self.app, parsed_args, task)


class ListInstance(command.Lister):
    """List the project's environment instances."""

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Iterable[Any]]:
        rows = call(client_of(self.app).list_instances)
        return ("Name", "Environment", "Status", "Nodes"), [
            (r[0], r[1], r[2], len(_nodes(i))) for i, r in ((i, _instance_row(i)) for i in rows)
        ]


class ShowInstance(command.ShowOne):
    """Show an environment instance, its tiers and nodes."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("name", metavar="<name>", help="Instance name")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Iterable[Any]]:
        return INSTANCE_COLUMNS, _instance_row(call(client_of(self.app).get_instance, parsed_args.name))


class DeleteInstance(command.ShowOne):
    """Undeploy an environment instance: uninstall, delete its servers (asynchronous: shows the task)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("name", metavar="<name>", help="Instance name")
        add_callback(parser)
        add_wait(parser)
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Iterable[Any]]:
        task = call(client_of(self.app).delete_instance, parsed_args.name, callback=parsed_args.callback)
        return finish(self.app, parsed_args, task)


class ListTierInstance(command.Lister):
    """List the nodes (tier instances) of an environment instance."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("instance", metavar="<instance>", help="Environment instance name")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Iterable[Any]]:
        nodes = call(client_of(self.app).list_tier_instances, parsed_args.instance)
        rows = []
        for n in nodes:
            vm = n.get("vm") or {}
            tier = n.get("tierDto") or {}
            rows.append((n.get("tierInstanceName"), tier.get("name") if isinstance(tier, Mapping) else tier,
                         n.get("replicaNumber"), n.get("status"), vm.get("id"), vm.get("ip"), _fip(vm),
                         n.get("fromTemplate")))
        return ("Name", "Tier", "Replica", "Status", "Server", "IP", "Floating IP", "From Template"), rows


class ScaleTier(command.ShowOne):
    """Scale a tier to a number of nodes, or remove one named node (asynchronous: shows the task)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("instance", metavar="<instance>", help="Environment instance name")
        parser.add_argument("tier", metavar="<tier>", help="Tier name")
        how = parser.add_mutually_exclusive_group(required=True)
        how.add_argument("--count", type=int, metavar="<n>", help="The number of nodes the tier should have")
        how.add_argument("--remove", metavar="<node>", help="Remove this node (its tier instance name)")
        parser.add_argument("--no-template", action="store_true",
                            help="New nodes install from the base image instead of the tier's template image")
        add_callback(parser)
        add_wait(parser)
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Iterable[Any]]:
        if parsed_args.count is not None and parsed_args.count < 0:
            raise exceptions.CommandError("--count must be 0 or more")
        task = call(client_of(self.app).scale, parsed_args.instance, parsed_args.tier, count=parsed_args.count,
                    remove=parsed_args.remove, use_template=not parsed_args.no_template,
                    callback=parsed_args.callback)
        return finish(self.app, parsed_args, task)


def _tail(text: Any, lines: int = 5) -> str:
    return "\n".join(str(text or "").rstrip().splitlines()[-lines:])


class ListProductInstance(command.Lister):
    """List the products of a node with each recipe run: status, exit code, or why it was skipped."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("instance", metavar="<instance>", help="Environment instance name")
        parser.add_argument("node", metavar="<node>", help="Node (tier instance name)")
        parser.add_argument("--long", action="store_true", help="Also show the tail of each run's output")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Iterable[Any]]:
        products = call(client_of(self.app).list_product_instances, parsed_args.instance, parsed_args.node)
        columns = ["Product", "Version", "Product Status", "Step", "Step Status", "Exit Code", "Skipped Reason"]
        if parsed_args.long:
            columns.append("Output")
        rows = []
        for p in products:
            release = p.get("productReleaseDto") or {}
            name, version = release.get("productName", p.get("name")), release.get("version")
            steps = p.get("steps") or [{}]
            for s in steps:
                status = s.get("status") or ("SKIPPED" if s.get("skippedReason") else None)
                row = [name, version, p.get("status"), s.get("step"), status, s.get("exitCode"), s.get("skippedReason")]
                if parsed_args.long:
                    row.append(_tail(s.get("output")))
                rows.append(tuple(row))
        return columns, rows


class DeployApplication(command.ShowOne):
    """Deploy an application tarball into a product's directory on every node that has it."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("instance", metavar="<instance>", help="Environment instance name")
        parser.add_argument("--product", required=True, metavar="<product>",
                            help="Product that receives it: <name> or <name>-<version>")
        parser.add_argument("--file", required=True, metavar="<app.tar.gz>", help="The application tarball")
        parser.add_argument("--name", metavar="<name>", help="Application name (default: the file's stem)")
        parser.add_argument("--version", dest="app_version", default="1.0", metavar="<version>",
                            help="Application version (default 1.0)")
        add_callback(parser)
        add_wait(parser)
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Iterable[Any]]:
        path = Path(parsed_args.file)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise exceptions.CommandError(f"{path}: {exc.strerror or exc}") from None
        if len(data) > MAX_INLINE_ARTIFACT:
            raise exceptions.CommandError(f"{path}: {len(data)} bytes; inline artifacts are limited to "
                                          f"{MAX_INLINE_ARTIFACT} bytes")
        name = parsed_args.name or path.name.split(".")[0]
        product, _, version = parsed_args.product.rpartition("-")
        release = ({"productName": product, "version": version} if product and version[:1].isdigit()
                   else {"productName": parsed_args.product})
        dto = {
            "applicationName": name, "version": parsed_args.app_version, "applicationType": "tar",
            "artifactsDto": [{
                "name": path.name, "productReleaseDto": release,
                "path": "data:application/gzip;base64," + base64.b64encode(data).decode("ascii"),
            }],
        }
        task = call(client_of(self.app).deploy_application, parsed_args.instance, dto, callback=parsed_args.callback)
        return finish(self.app, parsed_args, task)


class ListApplication(command.Lister):
    """List the applications deployed on an environment instance."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("instance", metavar="<instance>", help="Environment instance name")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Iterable[Any]]:
        apps = call(client_of(self.app).list_applications, parsed_args.instance)
        return ("Name", "Version", "Status", "Product"), [
            (a.get("applicationName", a.get("name")), a.get("version"), a.get("status"),
             a.get("productName") or (a.get("productReleaseDto") or {}).get("productName"))
            for a in apps
        ]


class DeleteApplication(command.ShowOne):
    """Undeploy an application (asynchronous: shows the task)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("instance", metavar="<instance>", help="Environment instance name")
        parser.add_argument("application", metavar="<name>", help="Application name")
        add_callback(parser)
        add_wait(parser)
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Iterable[Any]]:
        task = call(client_of(self.app).delete_application, parsed_args.instance, parsed_args.application,
                    callback=parsed_args.callback)
        return finish(self.app, parsed_args, task)
