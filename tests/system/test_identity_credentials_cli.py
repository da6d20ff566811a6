"""Application credentials, EC2 credentials and extra project attributes through the real
`openstack` CLI (python-openstackclient over keystoneauth) against `cumulo up`.

The demo user makes an application credential; a second clouds.yaml entry with
`auth_type: v3applicationcredential` then uses it, as an application would: `openstack token issue`
gives a token scoped to demo's project, and it can list servers. Deleting the credential ends its
tokens. EC2 credentials: create, list, show, delete as demo. A project made with
`--property` keeps it.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import yaml

if TYPE_CHECKING:  # the harness lives in tests/system/conftest.py
    from conftest import CumuloCloud

pytestmark = pytest.mark.system

cumulo_options = {"fake_hosts": 0}
cumulo_configs = ("embedded", "scaled")  # and on the scaled-out cloud (tests/system/cluster.py)

ADMIN, DEMO = "cumulo", "cumulo-demo"


def _app_cred_osc(cumulo: CumuloCloud, tmp: Path, cred_id: str, secret: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`openstack ARGS` authenticated with the application credential only (no password anywhere)."""
    clouds = {
        "clouds": {
            "app": {
                "auth_type": "v3applicationcredential",
                "auth": {
                    "auth_url": cumulo.auth_url,
                    "application_credential_id": cred_id,
                    "application_credential_secret": secret,
                },
                "region_name": cumulo.clouds()[DEMO].get("region_name", "RegionOne"),
                "identity_api_version": 3,
            }
        }
    }
    path = tmp / "app-clouds.yaml"
    path.write_text(yaml.safe_dump(clouds))
    path.chmod(0o600)
    env = {**cumulo.osc_env(), "OS_CLIENT_CONFIG_FILE": str(path)}
    openstack = Path(sys.executable).parent / "openstack"
    return subprocess.run(  # noqa: S603 - fixed argv, no shell
        [str(openstack), "--os-cloud", "app", *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )


def test_application_credential_through_the_cli(cumulo: CumuloCloud, tmp_path: Path) -> None:
    name = f"ci-{secrets.token_hex(3)}"
    made: dict[str, Any] = cumulo.osc("application", "credential", "create", "--description", "for CI", name, cloud=DEMO)
    assert made["Name"] == name and made["Secret"] and made["Unrestricted"] is False
    assert sorted(r["name"] for r in made["Roles"]) == ["member", "reader"]
    cred_id, secret = made["ID"], made["Secret"]
    demo_project = cumulo.osc("project", "show", cumulo.clouds()[DEMO]["auth"]["project_name"])["id"]
    assert made["Project ID"] == demo_project
    listed = cumulo.osc("application", "credential", "list", cloud=DEMO)
    assert cred_id in {c["ID"] for c in listed}
    shown = cumulo.osc("application", "credential", "show", name, cloud=DEMO)
    assert shown["ID"] == cred_id and not shown.get("Secret")

    issued = _app_cred_osc(cumulo, tmp_path, cred_id, secret, "token", "issue", "-f", "yaml")
    assert issued.returncode == 0, issued.stderr
    token = yaml.safe_load(issued.stdout)
    assert token["project_id"] == demo_project
    servers = _app_cred_osc(cumulo, tmp_path, cred_id, secret, "server", "list", "-f", "json")
    assert servers.returncode == 0, servers.stderr
    wrong = _app_cred_osc(cumulo, tmp_path, cred_id, secret + "x", "token", "issue")
    assert wrong.returncode != 0 and "401" in wrong.stderr, wrong.stderr

    # The token made with it works until the credential goes.
    check = httpx.get(f"{cumulo.auth_url}/auth/projects", headers={"X-Auth-Token": token["id"]}, timeout=30)
    assert check.status_code == 200, check.text
    cumulo.osc("application", "credential", "delete", name, cloud=DEMO, json=False)
    check = httpx.get(f"{cumulo.auth_url}/auth/projects", headers={"X-Auth-Token": token["id"]}, timeout=30)
    assert check.status_code == 401, check.text
    again = _app_cred_osc(cumulo, tmp_path, cred_id, secret, "token", "issue")
    assert again.returncode != 0
    assert cred_id not in {c["ID"] for c in cumulo.osc("application", "credential", "list", cloud=DEMO)}


def test_ec2_credentials_through_the_cli(cumulo: CumuloCloud) -> None:
    made = cumulo.osc("ec2", "credentials", "create", cloud=DEMO)
    access, secret = made["access"], made["secret"]
    assert access and secret
    try:
        assert access in {c["Access"] for c in cumulo.osc("ec2", "credentials", "list", cloud=DEMO)}
        shown = cumulo.osc("ec2", "credentials", "show", access, cloud=DEMO)
        assert shown["secret"] == secret and shown["project_id"] == made["project_id"]
        # The admin's list of its own does not show demo's.
        assert access not in {c["Access"] for c in cumulo.osc("ec2", "credentials", "list", cloud=ADMIN)}
    finally:
        cumulo.osc("ec2", "credentials", "delete", access, cloud=DEMO, json=False)
    assert access not in {c["Access"] for c in cumulo.osc("ec2", "credentials", "list", cloud=DEMO)}


def test_project_keeps_extra_properties(cumulo: CumuloCloud) -> None:
    name = f"px-{secrets.token_hex(3)}"
    made = cumulo.osc("project", "create", "--property", "cost_centre=42", "--property", "owner=ops", name)
    try:
        shown = cumulo.osc("project", "show", name)
        assert shown["cost_centre"] == "42" and shown["owner"] == "ops", shown
        cumulo.osc("project", "set", "--property", "owner=dev", name, json=False)
        shown = cumulo.osc("project", "show", name)
        assert shown["cost_centre"] == "42" and shown["owner"] == "dev", shown
    finally:
        cumulo.osc("project", "delete", made["id"], json=False)
