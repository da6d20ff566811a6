"""How long the network service takes to create a port (IPAM included), by how full the network is.

No cloud: a migrated SQLite database in a temp dir and the real NetworkService over it, as the API
calls it. One network with one IPv4 /16 subnet; ports are made in batches, and for each fill level
(0, 1000, 4000 ports already on the network) 50 more port creates are timed one by one (the first
free pool address is searched past every taken one, and the taken set is read each time). Also the
list of all the network's ports. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/network_ports.py
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from cumulo import conf as conf_mod  # noqa: E402
from cumulo.context import RequestContext, expand_roles  # noqa: E402
from cumulo.db import Database  # noqa: E402
from cumulo.network.service import NetworkService  # noqa: E402

LEVELS = (0, 1000, 4000)
TIMED = 50


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        conf = conf_mod.load(env={}, state_dir=Path(tmp))
        db = Database(f"sqlite+aiosqlite:///{tmp}/bench.db")
        await db.create_all()
        svc = NetworkService(db, conf)
        ctx = RequestContext(user_id="u", project_id="bench", roles=expand_roles(["admin"]))
        await svc.update_quota(ctx, "bench", {"port": -1})
        net = await svc.create_network(ctx, {"name": "bench"})
        await svc.create_subnet(ctx, {"network_id": net["id"], "cidr": "10.0.0.0/16", "ip_version": 4})
        made = 0
        for level in LEVELS:
            while made < level:
                await svc.create_port(ctx, {"network_id": net["id"], "port_security_enabled": False})
                made += 1
            times = []
            for _ in range(TIMED):
                t0 = time.perf_counter()
                await svc.create_port(ctx, {"network_id": net["id"], "port_security_enabled": False})
                times.append((time.perf_counter() - t0) * 1000)
                made += 1
            times.sort()
            t0 = time.perf_counter()
            listed = await svc.list_ports(ctx)
            list_ms = (time.perf_counter() - t0) * 1000
            print(f"ports on the network {level:5d}: port create p50 {statistics.median(times):6.2f} ms, "
                  f"p95 {times[int(len(times) * 0.95) - 1]:6.2f} ms; list of {len(listed)} ports {list_ms:7.1f} ms")
        await db.dispose()


if __name__ == "__main__":
    asyncio.run(main())
