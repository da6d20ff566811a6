"""The Prometheus endpoint in the in-process cloud (fake driver): who may read it, the per-server
series with their labels and their agreement with diagnostics, and the control-plane series
(latency by route template, bus messages, scheduler decisions, builds in flight)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from servers_support import (  # noqa: F401  (settings is a fixture override)
    API,
    World,
    make_world,
    settings,
)

from cumulo.monitoring import endpoint
from cumulo.monitoring.servers import ServerCollector

Samples = dict[str, list[tuple[dict[str, str], float]]]


def parse(text: str) -> Samples:
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    for got, v in samples.get(name, []):
        if all(got.get(k) == want for k, want in labels.items()):
            return v
    return None


class Env:
    def __init__(self, cloud: Any, app: endpoint.MetricsApp, secret: str) -> None:
        self.cloud, self.app, self.secret = cloud, app, secret
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://metrics.test")
        self.api = httpx.AsyncClient(transport=httpx.ASGITransport(app=cloud.asgi_app()), base_url="http://cumulo.test")

    async def token(self, user: str) -> str:
        creds = self.cloud.credentials[user]
        auth = {
            "identity": {"methods": ["password"], "password": {
                "user": {"name": user, "domain": {"name": "Default"}, "password": creds["password"]}}},
            "scope": {"project": {"name": creds["project"], "domain": {"name": "Default"}}},
        }
        resp = await self.api.post("/identity/v3/auth/tokens", json={"auth": auth})
        assert resp.status_code == 201, resp.text
        return str(resp.headers["x-subject-token"])

    async def scrape(self) -> Samples:
        resp = await self.client.get("/metrics", headers={"Authorization": f"Bearer {self.secret}"})
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("text/plain")
        return parse(resp.text)


@pytest.fixture
async def env(cloud: Any) -> Env:
    registry = endpoint.build_registry(cloud.managers, cloud.db, asyncio.get_running_loop())
    secret = await asyncio.to_thread(endpoint.ensure_secret, cloud.conf.state_dir)
    return Env(cloud, endpoint.MetricsApp(registry, cloud.services.identity, secret), secret)


async def test_only_admins_and_the_scrape_secret_read_the_endpoint(env: Env) -> None:
    assert (await env.client.get("/metrics")).status_code == 401
    assert (await env.client.get("/metrics", headers={"X-Auth-Token": "not-a-token"})).status_code == 401
    member = await env.token("demo")
    for headers in ({"X-Auth-Token": member}, {"Authorization": f"Bearer {member}"}):
        resp = await env.client.get("/metrics", headers=headers)
        assert resp.status_code == 403 and "cumulo_" not in resp.text
    admin = await env.token("admin")
    resp = await env.client.get("/metrics", headers={"X-Auth-Token": admin})
    assert resp.status_code == 200 and "cumulo_node_scrape_success" in resp.text
    assert (await env.client.get("/metrics", headers={"Authorization": f"Bearer {env.secret}"})).status_code == 200
    assert (await env.client.get("/other", headers={"X-Auth-Token": admin})).status_code == 404
    assert (await env.client.post("/metrics", headers={"X-Auth-Token": admin})).status_code == 405


def test_the_scrape_secret_is_private_and_kept(tmp_path: Path) -> None:
    first = endpoint.ensure_secret(tmp_path)
    assert (tmp_path / endpoint.SECRET_FILE).stat().st_mode & 0o777 == 0o600
    assert endpoint.ensure_secret(tmp_path) == first and len(first) >= 32


async def test_server_series_carry_labels_and_agree_with_diagnostics(cloud: Any, as_ctx: Any, env: Env) -> None:
    world: World = await make_world(cloud, as_ctx)
    server = await world.active("metered")
    sid = server["id"]
    node = server["OS-EXT-SRV-ATTR:hypervisor_hostname"] if "OS-EXT-SRV-ATTR:hypervisor_hostname" in server else None
    samples = await env.scrape()
    labelled = [labels for labels, _ in samples.get("cumulo_server_cpu_seconds_total", []) if labels["server_id"] == sid]
    assert len(labelled) == 1
    assert labelled[0]["project_id"] == world.project_id
    assert labelled[0]["node"] in {m.name for m in cloud.managers} and (node is None or labelled[0]["node"] == node)
    for name in ("cumulo_server_memory_used_bytes", "cumulo_server_memory_limit_bytes",
                 "cumulo_server_disk_read_bytes_total", "cumulo_server_power_state"):
        assert value(samples, name, server_id=sid) is not None, name
    assert value(samples, "cumulo_server_power_state", server_id=sid) == 1.0
    # Diagnostics and metrics are one reading: the same memory figures (MiB there, bytes here).
    diag = (await world.admin.get(f"{API}/servers/{sid}/diagnostics",
                                  headers={"OpenStack-API-Version": "compute 2.48"})).json()
    assert diag["memory_details"]["maximum"] * 2**20 == value(samples, "cumulo_server_memory_limit_bytes", server_id=sid)
    assert diag["memory_details"]["used"] * 2**20 == value(samples, "cumulo_server_memory_used_bytes", server_id=sid)
    assert diag["num_cpus"] == 1
    # A deleted server has no series.
    assert (await world.member.delete(f"{API}/servers/{sid}")).status_code == 204
    for _ in range(200):
        gone = value(await env.scrape(), "cumulo_server_cpu_seconds_total", server_id=sid) is None
        if gone:
            break
        await asyncio.sleep(0.05)
    assert gone


async def test_control_plane_series(cloud: Any, as_ctx: Any, env: Env) -> None:
    world: World = await make_world(cloud, as_ctx)
    server = await world.active("timed")
    assert (await world.member.get(f"{API}/servers/{server['id']}")).status_code == 200
    assert (await world.member.get(f"{API}/servers/no-such-server")).status_code == 404
    assert (await world.member.get("/compute/v2.1/no/such/route")).status_code == 404
    samples = await env.scrape()
    routes = {labels["route"] for labels, _ in samples["cumulo_http_request_duration_seconds_count"]}
    assert "/compute/v2.1/servers/{server_id}" in routes and "/compute/v2.1/servers" in routes
    assert "(unmatched)" in routes
    assert not any(server["id"] in r or "no-such-server" in r for r in routes)  # templates, not paths
    assert value(samples, "cumulo_http_request_duration_seconds_count", family="compute", method="GET",
                 route="/compute/v2.1/servers/{server_id}", status="404") is not None
    assert (value(samples, "cumulo_bus_messages_total", topic="conductor", method="build_instances", kind="cast")
            or 0) >= 1
    assert (value(samples, "cumulo_scheduler_decisions_total", outcome="selected") or 0) >= 1
    assert "cumulo_builds_in_flight" not in samples or all(v >= 0 for _, v in samples["cumulo_builds_in_flight"])
    assert value(samples, "process_resident_memory_bytes") is not None


async def test_the_collector_refuses_to_run_on_the_event_loop(cloud: Any) -> None:
    collector = ServerCollector(cloud.managers, cloud.db, asyncio.get_running_loop())
    with pytest.raises(RuntimeError, match="never on the event loop"):
        list(collector.collect())
