"""`openstack paas product ...` and `openstack paas environment ...`: the catalogue."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from osc_lib import exceptions
from osc_lib.cli import format_columns
from osc_lib.command import command

from cumulo.paas.osc import envfile
from cumulo.paas.osc.common import call, client_of


def _load(fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    try:
        data: dict[str, Any] = fn(*args, **kwargs)
    except envfile.EnvFileError as exc:
        raise exceptions.CommandError(str(exc)) from None
    return data


def product_ref(p: Mapping[str, Any]) -> str:
    return f"{p.get('productName')}-{p.get('version')}"


PRODUCT_COLUMNS = ("name", "version", "description", "builtin", "public", "metadata", "attributes", "recipes")


def _product_row(p: Mapping[str, Any]) -> tuple[Any, ...]:
    return (p.get("productName"), p.get("version"), p.get("productDescription", ""), p.get("builtin", False),
            p.get("public", False), format_columns.ListDictColumn(p.get("metadatas") or []),
            format_columns.ListDictColumn(p.get("attributes") or []),
            format_columns.DictColumn(p.get("recipes") or {}))


class ListProduct(command.Lister):
    """List the product releases the project can use (built-in, public and its own)."""

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Iterable[Any]]:
        products = call(client_of(self.app).list_products)
        return ("Name", "Version", "Builtin", "Description"), [
            (p.get("productName"), p.get("version"), p.get("builtin", False), p.get("productDescription", ""))
            for p in products
        ]


class ShowProduct(command.ShowOne):
    """Show a product release (metadata, attributes and recipes)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("product", metavar="<name-version>", help="Product release, e.g. httpd-web-1.0")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Iterable[Any]]:
        p = call(client_of(self.app).get_product, parsed_args.product)
        return PRODUCT_COLUMNS, _product_row(p)


class CreateProduct(command.ShowOne):
    """Register a product release from a YAML file (recipes, metadata, attributes)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("--file", required=True, metavar="<product.yaml>", help="The product's YAML file")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Iterable[Any]]:
        dto = _load(envfile.load_product, parsed_args.file)
        paas = client_of(self.app)
        call(paas.create_product, dto)  # 204, no body (Pegasus's answer): show what the catalogue holds
        return PRODUCT_COLUMNS, _product_row(call(paas.get_product, product_ref(dto)))


class DeleteProduct(command.Command):
    """Delete product releases of the project."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("product", nargs="+", metavar="<name-version>", help="Product release(s) to delete")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> None:
        paas = client_of(self.app)
        for name in parsed_args.product:
            call(paas.delete_product, name)


ENV_COLUMNS = ("name", "description", "tiers")


def _tier_line(t: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": t.get("name"), "image": t.get("image"), "flavor": t.get("flavour"),
        "min": t.get("minimumNumberInstances"), "max": t.get("maximumNumberInstances"),
        "initial": t.get("initialNumberInstances"),
        "products": [product_ref(p) for p in t.get("productReleaseDtos") or []],
    }


def _env_row(e: Mapping[str, Any]) -> tuple[Any, ...]:
    return (e.get("name"), e.get("description", ""),
            format_columns.ListDictColumn([_tier_line(t) for t in e.get("tierDtos") or []]))


class ListEnvironment(command.Lister):
    """List the project's environments."""

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Iterable[Any]]:
        envs = call(client_of(self.app).list_environments)
        return ("Name", "Description", "Tiers"), [
            (e.get("name"), e.get("description", ""), ", ".join(str(t.get("name")) for t in e.get("tierDtos") or []))
            for e in envs
        ]


class ShowEnvironment(command.ShowOne):
    """Show an environment and its tiers."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("environment", metavar="<name>", help="Environment name")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Iterable[Any]]:
        return ENV_COLUMNS, _env_row(call(client_of(self.app).get_environment, parsed_args.environment))


class CreateEnvironment(command.ShowOne):
    """Register an environment (tiers, their products, policies) from an env.yaml file."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("--file", required=True, metavar="<env.yaml>", help="The environment's YAML file")
        parser.add_argument("--name", metavar="<name>", help="Environment name (default: the file's)")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[Sequence[str], Iterable[Any]]:
        dto = _load(envfile.load_environment, parsed_args.file, name=parsed_args.name)
        paas = client_of(self.app)
        call(paas.create_environment, dto)  # 204, no body (Pegasus's answer): show what the catalogue holds
        return ENV_COLUMNS, _env_row(call(paas.get_environment, dto["name"]))


class DeleteEnvironment(command.Command):
    """Delete environments of the project."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("environment", nargs="+", metavar="<name>", help="Environment(s) to delete")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> None:
        paas = client_of(self.app)
        for name in parsed_args.environment:
            call(paas.delete_environment, name)
