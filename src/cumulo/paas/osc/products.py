"""`openstack paas tier reconfigure` and `openstack paas product instance add|remove`: Pegasus's
PUT tierInstance (scale reconfigure) and POST/DELETE productInstance (docs/paas.md)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from typing import Any

from osc_lib import exceptions
from osc_lib.command import command

from cumulo.paas.osc.common import add_callback, add_wait, call, client_of, finish


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise exceptions.CommandError(f"--attribute {text!r}: give KEY=VALUE")
    return key, value


def _release(text: str) -> dict[str, str]:
    """<name> or <name>-<version> (a version starts with a digit)."""
    name, _, version = text.rpartition("-")
    return {"productName": name, "version": version} if name and version[:1].isdigit() else {"productName": text}


class ReconfigureTier(command.ShowOne):
    """Set attribute values of a tier's products and re-run their configure on every node of the tier."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("instance", metavar="<instance>", help="Environment instance name")
        parser.add_argument("tier", metavar="<tier>", help="Tier name")
        parser.add_argument("--attribute", action="append", default=[], metavar="[<product>:]<key>=<value>",
                            help="A new value: for one product (<product>:KEY=VALUE), or for every product of "
                                 "the tier that has KEY (repeat for several)")
        add_callback(parser)
        add_wait(parser)
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Iterable[Any]]:
        if not parsed_args.attribute:
            raise exceptions.CommandError("give at least one --attribute")
        per_product: dict[str, list[dict[str, str]]] = {}
        common: list[dict[str, str]] = []
        for text in parsed_args.attribute:
            head, colon, rest = text.partition(":")
            if colon and "=" not in head:
                key, value = _pair(rest)
                per_product.setdefault(head, []).append({"key": key, "value": value})
            else:
                key, value = _pair(text)
                common.append({"key": key, "value": value})
        dto: dict[str, Any] = {"tierDto": {"name": parsed_args.tier}, "attributes": common,
                               "productInstanceDtos": [{"productReleaseDto": {"productName": p}, "attributes": a}
                                                       for p, a in per_product.items()]}
        task = call(client_of(self.app).reconfigure_tier, parsed_args.instance, dto, callback=parsed_args.callback)
        return finish(self.app, parsed_args, task)


class AddProductInstance(command.ShowOne):
    """Install one more product release on one node (asynchronous: shows the task)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("instance", metavar="<instance>", help="Environment instance name")
        parser.add_argument("node", metavar="<node>", help="Node (tier instance name)")
        parser.add_argument("--product", required=True, metavar="<product>",
                            help="Product release: <name> or <name>-<version>")
        parser.add_argument("--attribute", action="append", default=[], metavar="<key>=<value>",
                            help="An attribute value over the release's default (repeat for several)")
        add_callback(parser)
        add_wait(parser)
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Iterable[Any]]:
        attrs = [dict(zip(("key", "value"), _pair(t), strict=True)) for t in parsed_args.attribute]
        dto = {"productReleaseDto": _release(parsed_args.product), "attributes": attrs}
        task = call(client_of(self.app).add_product_instance, parsed_args.instance, parsed_args.node, dto,
                    callback=parsed_args.callback)
        return finish(self.app, parsed_args, task)


class RemoveProductInstance(command.ShowOne):
    """Stop and uninstall a product added to one node (asynchronous: shows the task)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("instance", metavar="<instance>", help="Environment instance name")
        parser.add_argument("node", metavar="<node>", help="Node (tier instance name)")
        parser.add_argument("product", metavar="<product>", help="Product name (or <node>_<product>_<version>)")
        add_callback(parser)
        add_wait(parser)
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Iterable[Any]]:
        task = call(client_of(self.app).remove_product_instance, parsed_args.instance, parsed_args.node,
                    parsed_args.product, callback=parsed_args.callback)
        return finish(self.app, parsed_args, task)
