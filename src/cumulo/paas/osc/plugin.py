"""The OSC plugin module (entry point `openstack.cli.extension`: paas = cumulo.paas.osc.plugin).

OSC 10.5 reads API_NAME, API_VERSION_OPTION, DEFAULT_API_VERSION, API_VERSIONS, make_client and
build_option_parser (openstackclient/common/clientmanager.py), then loads the command group
`openstack.paas.v1` (the `[project.entry-points."openstack.paas.v1"]` lines of pyproject.toml).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from cumulo.paas.osc.client import PaasClient

API_NAME = "paas"
API_VERSION_OPTION = "os_paas_api_version"
DEFAULT_API_VERSION = "1"
API_VERSIONS = ("1",)


def make_client(instance: Any) -> PaasClient:
    """The PaaS client over OSC's session, for the catalog's `paas` endpoint (or --os-paas-url)."""
    cloud = getattr(instance, "_cli_options", None)  # OSC's CloudRegion: its config holds the parsed options
    config = getattr(cloud, "config", None) or {}
    endpoint = config.get("paas_url") if isinstance(config, dict) else None
    return PaasClient(
        instance.session, interface=getattr(instance, "interface", None),
        region_name=getattr(instance, "region_name", None), endpoint_override=endpoint or None,
    )


def build_option_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--os-paas-api-version", metavar="<paas-api-version>",
        default=os.environ.get("OS_PAAS_API_VERSION"),
        help=f"PaaS API version, default={DEFAULT_API_VERSION} (Env: OS_PAAS_API_VERSION)",
    )
    parser.add_argument(
        "--os-paas-url", metavar="<url>", default=os.environ.get("OS_PAAS_URL"),
        help="PaaS API endpoint instead of the catalog's 'paas' entry (Env: OS_PAAS_URL)",
    )
    return parser


def check_api_version(version: str) -> bool:
    """Only v1 exists. True: OSC skips its own check; False: OSC warns that the version is not in
    API_VERSIONS (raising here would break every `openstack` command, not only the paas ones)."""
    return str(version).split(".")[0] == DEFAULT_API_VERSION
