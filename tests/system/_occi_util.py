"""What the OCCI system tests share besides the spec client: a cloud's identities and clients for
the three renderings, a second project for the isolation checks, the JSON schema check, and the
host-side facts (runc state, a container's files and NICs, a network's bridge, a volume's file).

Everything on the host is looked up by this cloud's own state dir and ids.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from _occi_client import JSON, RENDERINGS, TEXT_OCCI, TEXT_PLAIN, Occi, keystone_token
from _runc_util import runc, runc_state, wait_for

if TYPE_CHECKING:
    from conftest import CumuloCloud

DEMO = "cumulo-demo"
REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "occi"
OS_TPL_SCHEME = "http://schemas.openstack.org/template/os#"
RESOURCE_TPL_SCHEME = "http://schemas.openstack.org/template/resource#"


@dataclass
class Tenant:
    """A user of one project: its clouds.yaml-like credentials and a token."""

    username: str
    password: str
    project: str
    project_id: str
    token: str


@dataclass
class OcciWorld:
    cloud: CumuloCloud
    demo: Tenant
    other: Tenant | None = None
    clients: dict[str, Occi] = field(default_factory=dict)

    def occi(self, rendering: str) -> Occi:
        """The demo user's client in `rendering` (token auth)."""
        if rendering not in self.clients:
            self.clients[rendering] = Occi(self.cloud.base_url, rendering, token=self.demo.token,
                                           validator=validate_any)
        return self.clients[rendering]

    def close(self) -> None:
        for c in self.clients.values():
            c.close()


def tenant_of(cloud: CumuloCloud, name: str = DEMO) -> Tenant:
    auth = cloud.clouds()[name]["auth"]
    token = keystone_token(cloud.auth_url, auth)
    resp = httpx.get(f"{cloud.auth_url}/auth/tokens", headers={"X-Auth-Token": token, "X-Subject-Token": token},
                     timeout=30)
    assert resp.status_code == 200, resp.text
    project_id = resp.json()["token"]["project"]["id"]
    return Tenant(auth["username"], auth["password"], auth["project_name"], project_id, token)


def make_tenant(cloud: CumuloCloud, prefix: str = "occi-other") -> Tenant:
    """A new project and a member user of it (through Keystone's API, as the admin)."""
    name = f"{prefix}-{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(12)
    with cloud.client("cumulo") as c:
        r = c.post("/identity/v3/projects", json={"project": {"name": name, "domain_id": "default"}})
        assert r.status_code == 201, r.text
        project_id = r.json()["project"]["id"]
        r = c.post("/identity/v3/users", json={"user": {"name": name, "password": password, "domain_id": "default",
                                                        "default_project_id": project_id}})
        assert r.status_code == 201, r.text
        user_id = r.json()["user"]["id"]
        roles = c.get("/identity/v3/roles", params={"name": "member"}).json()["roles"]
        r = c.put(f"/identity/v3/projects/{project_id}/users/{user_id}/roles/{roles[0]['id']}")
        assert r.status_code in (200, 204), r.text
    auth = {"username": name, "password": password, "project_name": name}
    return Tenant(name, password, name, project_id, keystone_token(cloud.auth_url, auth))


def renderings() -> tuple[str, ...]:
    return RENDERINGS


def schema() -> dict[str, Any] | None:
    """The OCCI 1.2 JSON schema vendored under tests/reference/occi/ (None until it is there)."""
    if not REFERENCE.is_dir():
        return None
    for path in sorted(REFERENCE.glob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "definitions" in data:
            return data
    return None


def validate_json(doc: Any, definition: str) -> bool:
    """Validate `doc` against the schema's `definition` (e.g. "resource", "kind_collection"); False
    when the schema is not vendored yet. Fails the test on a violation."""
    sch = schema()
    if sch is None:
        return False
    import jsonschema

    sub = {**sch, "$ref": f"#/definitions/{definition}"}
    sub.pop("anyOf", None)
    sub.pop("oneOf", None)
    jsonschema.validate(doc, sub)
    return True


def validate_any(doc: Any) -> None:
    """Validate an OCCI JSON answer against the schema's definition for its shape (a model, a
    collection, a link, a resource); answers of another shape (errors) are left alone."""
    if not isinstance(doc, dict):
        return
    if "kind" in doc:
        validate_json(doc, "link" if "source" in doc else "resource")
    elif "resources" in doc:
        validate_json(doc, "resource_collection")
    elif "links" in doc:
        validate_json(doc, "link_collection")
    elif {"kinds", "mixins", "actions"} & doc.keys():
        validate_json(doc, "model")


# -- the host ---------------------------------------------------------------------------------


def container_status(cloud: CumuloCloud, uuid: str) -> str | None:
    state = runc_state(cloud, uuid)
    return None if state is None else str(state["status"])


def wait_container(cloud: CumuloCloud, uuid: str, *statuses: str | None, timeout: float = 90.0) -> None:
    """Wait until `runc state` says one of `statuses` (None: no runc container)."""
    wait_for(lambda: container_status(cloud, uuid) in statuses, timeout=timeout,
             what=f"container {uuid} {statuses} (now {container_status(cloud, uuid)})")


def exec_in(cloud: CumuloCloud, uuid: str, script: str) -> subprocess.CompletedProcess[str]:
    return runc(cloud, "exec", f"cumulo-{uuid}", "/bin/sh", "-c", script)


def container_file(cloud: CumuloCloud, uuid: str, path: str) -> str | None:
    done = exec_in(cloud, uuid, f"cat {path}")
    return done.stdout if done.returncode == 0 else None


def container_ipv4(cloud: CumuloCloud, uuid: str) -> dict[str, list[str]]:
    """The container's NICs (but lo) and their IPv4 addresses."""
    done = exec_in(cloud, uuid, "ip -o -4 addr show")
    out: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():
        m = re.match(r"\d+:\s+(\S+)\s+inet\s+([0-9.]+)/", line)
        if m and m.group(1) != "lo":
            out.setdefault(m.group(1), []).append(m.group(2))
    return out


def container_pings(cloud: CumuloCloud, uuid: str, ip: str) -> bool:
    return runc(cloud, "exec", f"cumulo-{uuid}", "ping", "-c", "1", "-W", "1", ip).returncode == 0


def bridge_up(network_id: str, cloud: CumuloCloud | None = None, server: str = "") -> bool | None:
    """Whether the network's bridge (br0 in cnet-<id>) is administratively up; None when absent.
    On a cluster: on the host of `server` (its own /run/netns, inside its namespaces)."""
    from cumulo.netplane import netns

    argv = ["ip", "-n", netns.network_ns(network_id), "-j", "link", "show", "dev", "br0"]
    if cloud is not None and server:
        argv = cloud.host_argv(server, argv)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)  # noqa: S603
    if done.returncode != 0:
        return None
    data = json.loads(done.stdout or "[]")
    return bool(data) and "UP" in data[0].get("flags", [])


def network_ns_exists(network_id: str, cloud: CumuloCloud | None = None, server: str = "") -> bool:
    """Whether the network's namespace is there (on a cluster: on the host of `server`)."""
    from cumulo.netplane import netns

    if cloud is not None and server:
        # /run, not netns.NETNS_DIR's /var/run: a symlink, which /proc/<pid>/root would resolve in our root
        return cloud.host_path(server, f"/run/netns/{netns.network_ns(network_id)}").exists()
    return netns.exists(netns.network_ns(network_id))


def volume_loops(volume_id: str) -> list[str]:
    """The loop devices over the volume (`losetup -a`, by the backing file's name): its file on the
    volume host, or on another host its NBD connection's FUSE file (connections/<id>/disk)."""
    done = subprocess.run(["losetup", "-a"], capture_output=True, text=True, timeout=30, check=False)  # noqa: S603, S607
    return [line for line in done.stdout.splitlines() if volume_id in line]


def volume_files(cloud: CumuloCloud, volume_id: str) -> list[Path]:
    """The volume's files in the volumes/ dir of the cloud's volume host (not its snapshots' or the
    loop records below it)."""
    root = cloud.host_dir(cloud.volume_host) / "volumes"
    return [p for p in root.glob(f"*{volume_id}*") if p.is_file()] if root.is_dir() else []


def backup_files(cloud: CumuloCloud, volume_id: str | None = None) -> list[Path]:
    root = cloud.host_dir(cloud.volume_host) / "backups"
    return [p for p in root.rglob("*") if p.is_file()] if root.is_dir() else []


def immutable(path: Path) -> bool:
    done = subprocess.run(["lsattr", "-d", "--", str(path)], capture_output=True, text=True,  # noqa: S603, S607
                          timeout=30, check=False)
    return done.returncode == 0 and "i" in done.stdout.split(maxsplit=1)[0]


def api(cloud: CumuloCloud, tenant: Tenant, method: str, path: str, **kw: Any) -> httpx.Response:
    """An OpenStack API call as `tenant` (the cross-checks of what OCCI did)."""
    with httpx.Client(base_url=cloud.base_url, headers={"X-Auth-Token": tenant.token}, timeout=60) as c:
        return c.request(method, path, **kw)


def first(it: Iterator[Any]) -> Any:
    return next(it, None)


__all__ = ["JSON", "TEXT_OCCI", "TEXT_PLAIN"]
