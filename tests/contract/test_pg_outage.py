"""PostgreSQL unreachable, then back (issue 14, OWNERS D3): requests fail fast with a 503 in their
API family's fault format (never a hang, never a 500), and the first request after the database is
back works without restarting the cloud (the pool's pre-ping replaces the dead connections).

The outage is a TCP relay of this test's own between the cloud and the run's PostgreSQL: closing it
refuses new connections and cuts the open ones, as a stopped or restarting server does, without
disturbing the other tests on the shared server.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from _asgi_ctx import AsCtx

from cumulo import conf as conf_mod
from cumulo.context import RequestContext, expand_roles


class Relay:
    """127.0.0.1:<port> -> the PostgreSQL server, with an off switch."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.server: asyncio.Server | None = None
        self.links: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.links):
            writer.transport.abort()
        self.links.clear()
        await self.server.wait_closed()

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.links.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.links.discard(writer)
        self.links.discard(up_writer)


@pytest.fixture
def outage_db(scale_services: dict[str, str], pg_template: str) -> Iterator[str]:
    import _pg

    url = _pg.create_database(scale_services["database_url"], template=pg_template)
    yield url
    _pg.drop_database(scale_services["database_url"], url)


@pytest.fixture
async def relay(outage_db: str) -> AsyncIterator[Relay]:
    u = sa.engine.make_url(outage_db)
    r = Relay(u.host or "127.0.0.1", u.port or 5432)
    await r.start()
    yield r
    if r.server is not None and r.server.is_serving():
        await r.stop()


async def test_database_outage_is_a_503_and_the_cloud_recovers(outage_db: str, relay: Relay, tmp_path: Path) -> None:
    from cumulo.runtime import Cloud

    url = sa.engine.make_url(outage_db).set(port=relay.port).render_as_string(hide_password=False)
    conf = conf_mod.load(env={}, state_dir=tmp_path / "state", database=url, local_driver="fake",
                         power_sync_interval=3600.0, port=8080)
    cloud = Cloud(conf)
    await cloud.start()
    try:
        app = cloud.asgi_app()

        def client(role: str) -> httpx.AsyncClient:
            ctx = RequestContext(user_id=uuid.uuid4().hex, project_id=uuid.uuid4().hex, roles=expand_roles([role]))
            return httpx.AsyncClient(transport=httpx.ASGITransport(app=AsCtx(app, ctx)), base_url="http://cumulo.test",
                                     timeout=60)

        member, admin = client("member"), client("admin")
        assert (await member.get("/compute/v2.1/servers")).status_code == 200
        assert (await admin.get("/identity/v3/projects")).status_code == 200

        await relay.stop()
        t0 = time.monotonic()
        resp = await member.get("/compute/v2.1/servers")
        assert resp.status_code == 503, resp.text
        assert resp.json()["serviceUnavailable"]["code"] == 503
        resp = await member.get("/compute/v2.1/flavors/detail")
        assert resp.status_code == 503, resp.text
        resp = await admin.get("/identity/v3/projects")
        assert resp.status_code == 503, resp.text
        assert resp.json()["error"]["code"] == 503
        resp = await member.get("/networking/v2.0/networks")
        assert resp.status_code == 503, resp.text
        assert time.monotonic() - t0 < 60  # failed fast: no request waited out a hang

        await relay.start()  # the database is back, on the same address
        resp = await member.get("/compute/v2.1/servers")
        assert resp.status_code == 200, resp.text
        assert (await admin.get("/identity/v3/projects")).status_code == 200
        assert (await member.get("/networking/v2.0/networks")).status_code == 200
    finally:
        await cloud.stop()
