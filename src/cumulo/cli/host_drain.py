"""`cumulo admin host drain HOST`: host maintenance, Nova's `nova host-evacuate-live` for Cumulo.

1. Every nova-compute service of HOST is disabled (the scheduler sends it nothing new), with the
   reason "maintenance: drained by cumulo admin host drain" (what `openstack compute service set
   --disable --disable-reason ...` does).
2. Every server on HOST (all projects) that is ACTIVE or PAUSED is live-migrated away
   (os-migrateLive, host chosen by the scheduler, block_migration auto), `--parallel` at a time
   (default 1, as Nova's max_concurrent_live_migrations), each waited for until it is on another
   host or its migration failed.
3. One line per server (moved: to which host; failed: the reason;
   left: servers in other states, which need a cold `openstack server migrate`), and the exit code
   0 only when nothing is left on HOST.

It speaks the compute API as an admin client does: the CLI uses openstacksdk (`--os-cloud`, default
"cumulo", from clouds.yaml), the tests an in-process client; `drain()` takes any `Api`.
The same with the OpenStack CLI (docs/operations.md "Live migration and host maintenance"):
    openstack compute service set --disable --disable-reason maintenance HOST nova-compute
    for s in $(openstack server list --all-projects --host HOST -f value -c ID); do
        openstack server migrate --live-migration --os-compute-api-version 2.30 $s --wait; done
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

MICROVERSION = "2.53"  # services by id, servers' host filter; os-migrateLive's block_migration "auto"
REASON = "maintenance: drained by cumulo admin host drain"


class Api(Protocol):
    async def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """(status, JSON body or None) of a compute API call (path under /v2.1, microversion 2.53)."""
        ...


@dataclass
class Outcome:
    moved: list[tuple[str, str]] = field(default_factory=list)  # (server, destination host)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (server, why)
    left: list[tuple[str, str]] = field(default_factory=list)  # (server, status)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.left


def _check(status: int, body: Any, what: str) -> Any:
    if status >= 400:
        raise RuntimeError(f"{what}: HTTP {status}: {body}")
    return body


async def disable(api: Api, host: str) -> list[str]:
    """Disable every nova-compute service of `host` (its nodes' services too); their ids."""
    _s, body = await api.request("GET", "/os-services?binary=nova-compute")
    services = [s for s in (body or {}).get("services", []) if s["host"] == host or s["host"].startswith(f"{host}-")]
    if not services:
        raise RuntimeError(f"no nova-compute service on host {host}")
    for svc in services:
        status, out = await api.request("PUT", f"/os-services/{svc['id']}",
                                        {"status": "disabled", "disabled_reason": REASON})
        _check(status, out, f"disabling service {svc['id']} of {svc['host']}")
    return [str(s["id"]) for s in services]


async def _servers(api: Api, host: str) -> list[dict[str, Any]]:
    status, body = await api.request("GET", f"/servers/detail?all_tenants=1&host={host}")
    return list(_check(status, body, "listing the host's servers")["servers"])


async def _move(api: Api, host: str, server: dict[str, Any], out: Outcome, timeout: float,
                clock: Callable[[], float]) -> None:
    sid = server["id"]
    status, body = await api.request("POST", f"/servers/{sid}/action",
                                     {"os-migrateLive": {"host": None, "block_migration": "auto"}})
    if status >= 400:
        out.failed.append((sid, f"HTTP {status}: {body}"))
        return
    deadline = clock() + timeout
    while True:
        await asyncio.sleep(0.5)
        status, body = await api.request("GET", f"/servers/{sid}")
        srv = (body or {}).get("server") or {}
        if srv.get("status") != "MIGRATING" and srv.get("OS-EXT-STS:task_state") is None:
            break
        if clock() > deadline:
            out.failed.append((sid, f"still migrating after {timeout:.0f}s"))
            return
    _s, migs = await api.request("GET", f"/os-migrations?instance_uuid={sid}&migration_type=live-migration")
    latest = ((migs or {}).get("migrations") or [{}])[0]
    dest = srv.get("OS-EXT-SRV-ATTR:host")
    if dest and dest != host:
        out.moved.append((sid, str(dest)))
        return
    fault = (srv.get("fault") or {}).get("message") or f"migration {latest.get('status', 'unknown')}"
    out.failed.append((sid, fault))


async def drain(api: Api, host: str, *, parallel: int = 1, timeout: float = 1800.0,
                clock: Callable[[], float] = time.monotonic) -> Outcome:
    """Disable `host`, then live-migrate everything off it (module docstring)."""
    await disable(api, host)
    out = Outcome()
    movable = []
    for server in await _servers(api, host):
        if server.get("status") in ("ACTIVE", "PAUSED"):
            movable.append(server)
        else:
            out.left.append((server["id"], str(server.get("status"))))
    slots = asyncio.Semaphore(max(1, parallel))

    async def one(server: dict[str, Any]) -> None:
        async with slots:
            await _move(api, host, server, out, timeout, clock)

    await asyncio.gather(*(one(s) for s in movable))
    return out


# -- the command ----------------------------------------------------------------------------------


class SdkApi:
    """Api over an openstacksdk connection (blocking calls in a thread)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        def call() -> tuple[int, Any]:
            resp = self.conn.compute.request(path, method, json=body, microversion=MICROVERSION, raise_exc=False)
            try:
                data = resp.json() if resp.content else None
            except ValueError:
                data = resp.text
            return resp.status_code, data

        return await asyncio.to_thread(call)


def add_parser(sub: Any) -> None:
    admin = sub.add_parser("admin", help="admin helpers that drive the cloud's API")
    asub = admin.add_subparsers(dest="admin_command", required=True)
    host = asub.add_parser("host", help="compute host maintenance")
    hsub = host.add_subparsers(dest="host_command", required=True)
    drain_p = hsub.add_parser("drain", help="disable HOST, then live-migrate every server off it")
    drain_p.add_argument("host")
    drain_p.add_argument("--os-cloud", default="cumulo", help="the clouds.yaml entry (an admin's)")
    drain_p.add_argument("--parallel", type=int, default=1, help="live migrations at once (default 1)")
    drain_p.add_argument("--timeout", type=float, default=1800.0, help="seconds per server (default 1800)")


def main(args: argparse.Namespace) -> int:
    try:
        import openstack
    except ImportError:
        print("cumulo admin needs openstacksdk: pip install 'cumulo[client]'")
        return 2
    conn = openstack.connect(cloud=args.os_cloud)
    try:
        out = asyncio.run(drain(SdkApi(conn), args.host, parallel=args.parallel, timeout=args.timeout))
    except RuntimeError as exc:
        print(f"drain of {args.host} failed: {exc}")
        return 1
    for sid, dest in out.moved:
        print(f"moved  {sid} -> {dest}")
    for sid, why in out.failed:
        print(f"failed {sid}: {why}")
    for sid, status in out.left:
        print(f"left   {sid} ({status}: use `openstack server migrate` for a cold move)")
    print(f"host {args.host}: disabled, {len(out.moved)} moved, {len(out.failed)} failed, {len(out.left)} left")
    return 0 if out.ok else 1
