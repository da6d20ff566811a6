"""Helpers for the PaaS system tests (issue 13): a runc `cumulo up` with its host link to `public`
(floating IPs reachable from the host), the `openstack paas ...` CLI as the demo project, the demo
application tarball, and what the host and the IaaS APIs hold of a deployment.

The deployments run in the demo project (`cumulo-demo`): its `private` network has `router1` to
`public`, which is where a tier without named networks lands and where its floating IPs come from.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import yaml
from _runc_util import containers, launch_runc, wait_for

if TYPE_CHECKING:
    from conftest import CumuloCloud

DEMO = "cumulo-demo"
# Generous: several clouds, VMs and Tempest may share the 2 cores.
DEPLOY_TIMEOUT = 900
# A restarted cloud takes over a task once its lease ran out (a crash leaves the old owner's lease).
PAAS = {"paas_lease": 10.0, "paas_boot_timeout": 300.0}


def launch_paas(launcher: Callable[..., CumuloCloud], tmp: Path, **extra: Any) -> CumuloCloud:
    """A runc cloud with the external link on (the harness picks a free 172.24.X.0/24)."""
    return launch_runc(launcher, tmp, **{**PAAS, **extra})


def paas(cloud: CumuloCloud, *args: str, as_cloud: str = DEMO, timeout: float = 300.0) -> Any:
    """`openstack paas ARGS` as `as_cloud`: parsed JSON for display commands, else the text."""
    return cloud.osc("paas", *args, cloud=as_cloud, timeout=timeout)


def paas_run(cloud: CumuloCloud, *args: str, as_cloud: str = DEMO, timeout: float = DEPLOY_TIMEOUT + 60
             ) -> Any:
    """`openstack paas ARGS -f json` as is (exit code, stdout, stderr): for --wait and refusals."""
    return cloud.osc_run("paas", *args, "-f", "json", cloud=as_cloud, timeout=timeout)


def statuses_seen(stderr: str) -> list[str]:
    """The task statuses `--wait` reported ("task 7: RUNNING" lines), in order."""
    return [line.split(": ", 1)[1].strip() for line in stderr.splitlines() if line.startswith("task ") and ": " in line]


# -- products and environments ---------------------------------------------------------------


def copy_of_builtin(cloud: CumuloCloud, builtin: str, name: str, out: Path) -> Path:
    """A product.yaml registering `name` 1.0 with the recipes, metadata and attribute defaults the
    built-in release `builtin` (e.g. "httpd-web-1.0") shows through `paas product show`."""
    shown = paas(cloud, "product", "show", builtin)
    assert shown["builtin"] is True, shown
    doc = {
        "name": name, "version": "1.0", "description": f"a copy of {builtin}",
        "metadata": [{"key": m["key"], "value": m.get("value", "")} for m in shown["metadata"]],
        "attributes": [{"key": a["key"], "value": a.get("value", ""), "type": a.get("type", "Plain")}
                       for a in shown["attributes"]],
        "recipes": dict(shown["recipes"]),
    }
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def write_yaml(path: Path, doc: Any) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def demo_app(out: Path) -> Path:
    """The demo application tarball (index.html, cgi-bin/app, cgi-bin/burn) the built-ins ship."""
    from cumulo.paas.products.builtin import demo_app_tarball

    path = out / "demo-app.tar.gz"
    path.write_bytes(demo_app_tarball())
    return path


# -- the inventory ---------------------------------------------------------------------------


def nodes(cloud: CumuloCloud, instance: str, tier: str | None = None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = paas(cloud, "tier", "instance", "list", instance)
    return sorted((r for r in rows if tier is None or r["Tier"] == tier), key=lambda r: int(r["Replica"]))


def product_steps(cloud: CumuloCloud, instance: str, node: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(product, step) -> the row `paas product instance list` shows for it (the last run of a step)."""
    rows = paas(cloud, "product", "instance", "list", instance, node, "--long")
    return {(r["Product"], r["Step"]): r for r in rows}


def page(ip: str, path: str = "/cgi-bin/app", timeout: float = 10.0) -> httpx.Response:
    return httpx.get(f"http://{ip}{path}", timeout=timeout)


def wait_page(ip: str, ready: Callable[[str], bool], what: str, timeout: float = 120.0) -> str:
    """The page at the floating IP once `ready(text)` holds (the last body is in the failure)."""
    last: list[str] = [""]

    def fetch() -> str | None:
        try:
            r = page(ip)
        except httpx.HTTPError as exc:
            last[0] = f"{type(exc).__name__}: {exc}"
            return None
        last[0] = f"HTTP {r.status_code}\n{r.text}"
        return r.text if r.status_code == 200 and ready(r.text) else None

    try:
        text: str = wait_for(fetch, timeout=timeout, interval=0.5, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last answer: {last[0][:2000]}") from None
    return text


def backend_ok(text: str, backend_node: str, client_ip: str) -> bool:
    """The application page shows the backend's data, fetched from the web node's address (busybox
    httpd shows an IPv4 client as [::ffff:a.b.c.d])."""
    return ('class="backend ok"' in text and f'"node": "{backend_node}"' in text
            and (f'"client": "{client_ip}"' in text or f'"client": "[::ffff:{client_ip}]"' in text))


# -- what the IaaS and the host hold --------------------------------------------------------


def servers(cloud: CumuloCloud) -> list[dict[str, Any]]:
    """Every server of the cloud (admin, all projects), with its metadata."""
    with cloud.client("cumulo", headers={"X-OpenStack-Nova-API-Version": "2.79"}) as c:
        r = c.get("/compute/v2.1/servers/detail", params={"all_tenants": "1"})
    r.raise_for_status()
    return list(r.json()["servers"])


def deleted_paas_servers(cloud: CumuloCloud) -> dict[str, dict[str, Any]]:
    """The deleted servers of PaaS nodes (admin, Nova's deleted=true), by id."""
    with cloud.client("cumulo", headers={"X-OpenStack-Nova-API-Version": "2.79"}) as c:
        r = c.get("/compute/v2.1/servers/detail", params={"all_tenants": "1", "deleted": "true"})
    r.raise_for_status()
    return {s["id"]: s for s in r.json()["servers"] if str(s.get("name", "")).startswith("paas-")}


def paas_servers(cloud: CumuloCloud) -> list[dict[str, Any]]:
    return [s for s in servers(cloud) if (s.get("metadata") or {}).get("paas_instance")]


def iaas_view(cloud: CumuloCloud) -> dict[str, set[str]]:
    """Names/ids of what a deployment makes, as the APIs and the host show them: servers, security
    groups, floating IPs, images (all projects), runc containers (on a cluster: of every dev host)."""
    with cloud.client("cumulo") as c:
        sgs = c.get("/networking/v2.0/security-groups").json()["security_groups"]
        fips = c.get("/networking/v2.0/floatingips").json()["floatingips"]
        images = c.get("/image/v2/images", params={"limit": 1000}).json()["images"]
    return {
        "servers": {f"{s['name']} {s['id']}" for s in servers(cloud)},
        "security_groups": {f"{g['name']} {g['id']}" for g in sgs},
        "floating_ips": {f"{f['floating_ip_address']} {f['id']}" for f in fips},
        "images": {f"{i['name']} {i['id']}" for i in images},
        "containers": containers(cloud),
    }


def orphans(cloud: CumuloCloud) -> set[str]:
    """runc containers of this cloud (on a cluster: of every dev host) that no server of it owns."""
    return containers(cloud) - {f"cumulo-{s['id']}" for s in servers(cloud)}


def wait_no_paas_servers(cloud: CumuloCloud, instance_ids: Iterable[str], timeout: float = 120.0) -> None:
    ids = set(instance_ids)
    wait_for(lambda: not [s for s in paas_servers(cloud) if s["metadata"]["paas_instance"] in ids],
             timeout=timeout, interval=0.5, what=f"the servers of {ids} to be gone")


def project_id(cloud: CumuloCloud, as_cloud: str = DEMO) -> str:
    """The project (Pegasus's vdc) of a clouds.yaml entry's token."""
    with cloud.client(as_cloud) as c:
        token = c.get("/identity/v3/auth/tokens", headers={"X-Subject-Token": cloud.token(as_cloud)}).json()
    return str(token["token"]["project"]["id"])


def drop_instance(cloud: CumuloCloud, instance: str, instance_ids: Iterable[str]) -> None:
    """A module's teardown: whatever a failed test left of `instance` goes through the API (so its
    servers go too), then its servers are waited for (best effort: the cloud is closed next)."""
    cloud.osc_run("paas", "environment", "instance", "delete", instance, "--wait", cloud=DEMO, timeout=300)
    try:
        wait_no_paas_servers(cloud, instance_ids, timeout=120)
    except AssertionError:
        pass


def elapsed(t0: float) -> str:
    return f"{time.monotonic() - t0:.1f}s"
