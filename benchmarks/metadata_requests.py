"""How long the metadata service takes to answer a server, by how many ports its network holds.

No cloud: a migrated SQLite database in a temp dir, the real NetworkService and MetadataService
over it, documents from a stub (compute's rendering is the config drive's, timed elsewhere). For
each fill level (1, 1000 ports on the network), 200 GETs of /openstack/latest/meta_data.json are
timed one by one:

(a) `respond()` alone: the lookup (network, source IP) -> port -> instance, the NICs, the render;
(b) as root, a real HTTP round trip: a client namespace `cbmd-<pid>` with a veth on the network's
    bridge in `cnet-<uuid>`, a TCP connect to 169.254.169.254:80 (through the bridge's steal rule)
    served on this event loop, the response read to the end.

Everything made is removed by name at the end. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/metadata_requests.py
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from cumulo import conf as conf_mod  # noqa: E402
from cumulo.context import RequestContext, expand_roles  # noqa: E402
from cumulo.db import Database  # noqa: E402
from cumulo.netplane import bridge, netns  # noqa: E402
from cumulo.network.metadata import MetadataService  # noqa: E402
from cumulo.network.service import NetworkService  # noqa: E402

LEVELS = (1, 1000)
TIMED = 200
PATH = "/openstack/latest/meta_data.json"


def figures(times: list[float]) -> str:
    times.sort()
    return f"p50 {statistics.median(times):6.2f} ms, p95 {times[int(len(times) * 0.95) - 1]:6.2f} ms"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)  # noqa: S603,S607


def get_in(ns: str) -> bytes:
    def fetch() -> bytes:
        with socket.create_connection(("169.254.169.254", 80), timeout=5) as s:
            s.sendall(f"GET {PATH} HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            return data

    return netns.run_in_sync(ns, fetch)


async def main() -> None:
    root = os.geteuid() == 0
    client = f"cbmd-{os.getpid()}"
    with tempfile.TemporaryDirectory() as tmp:
        conf = conf_mod.load(env={}, state_dir=Path(tmp))
        db = Database(f"sqlite+aiosqlite:///{tmp}/bench.db")
        await db.create_all()
        svc = NetworkService(db, conf)
        ctx = RequestContext(user_id="u", project_id="bench", roles=expand_roles(["admin"]))
        await svc.update_quota(ctx, "bench", {"port": -1})
        net = await svc.create_network(ctx, {"name": "bench"})
        sub = await svc.create_subnet(ctx, {"network_id": net["id"], "cidr": "10.0.0.0/16", "ip_version": 4})
        await svc.create_port(ctx, {"network_id": net["id"], "device_id": "bench-server", "device_owner": "compute:nova",
                                    "fixed_ips": [{"subnet_id": sub["id"], "ip_address": "10.0.0.5"}]})

        async def documents(uuid: str, nics: list[dict[str, Any]]) -> dict[str, Any] | None:
            return {"uuid": uuid, "meta_data": {"uuid": uuid, "name": "bench"}}

        md = MetadataService(db, documents)
        ns = netns.network_ns(net["id"])
        made = 1
        try:
            if root:
                await bridge.ensure(ns)
                await md.serve(net["id"])
                ip("netns", "add", client)
                ip("-n", client, "link", "set", "lo", "up")
                ip("-n", ns, "link", "add", "tapbench0", "type", "veth", "peer", "name", "eth0", "netns", client)
                ip("-n", ns, "link", "set", "tapbench0", "master", bridge.BRIDGE, "up")
                ip("-n", client, "link", "set", "eth0", "up")
                ip("-n", client, "addr", "add", "10.0.0.5/16", "dev", "eth0")
                ip("-n", client, "route", "add", "169.254.169.254/32", "dev", "eth0")
            for level in LEVELS:
                while made < level:
                    await svc.create_port(ctx, {"network_id": net["id"], "device_id": f"other-{made}",
                                                "device_owner": "compute:nova"})
                    made += 1
                times = []
                for _ in range(TIMED):
                    t0 = time.perf_counter()
                    status, _, _ = await md.respond(net["id"], "10.0.0.5", PATH)
                    times.append((time.perf_counter() - t0) * 1000)
                    assert status == 200
                line = f"ports on the network {level:5d}: (a) respond {figures(times)}"
                if root:
                    times = []
                    for _ in range(TIMED):
                        t0 = time.perf_counter()
                        reply = await asyncio.to_thread(get_in, client)
                        times.append((time.perf_counter() - t0) * 1000)
                        assert reply.startswith(b"HTTP/1.1 200"), reply[:80]
                    line += f"; (b) HTTP from a namespace {figures(times)}"
                print(line)
        finally:
            await md.close()
            if root:
                subprocess.run(["ip", "netns", "delete", client], check=False, timeout=30)  # noqa: S603,S607
                await netns.delete(ns)
            await db.dispose()


if __name__ == "__main__":
    asyncio.run(main())
