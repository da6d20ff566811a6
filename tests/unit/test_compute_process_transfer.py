"""`cumulo compute` with an underlay address runs the host's migration transfer endpoint (issue
14, D5): the host's own agents send with HttpSender, the endpoint listens on underlay_ip:
transfer_port while the process runs (a request without a host token is refused) and is gone
after the stop. Without underlay_ip there is none (one host: the local copy)."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from cumulo import conf as conf_mod
from cumulo.compute.transfer.sender import HttpSender
from cumulo.db import Database
from cumulo.runtime_procs import ComputeProcess


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _process(tmp_path: Path, **settings: object) -> ComputeProcess:
    conf = conf_mod.load(env={}, state_dir=tmp_path / "host", local_driver="fake", host_name="h1",
                         metrics_port=0, external_link=False, **settings)
    conf.state_dir.mkdir(mode=0o700)
    db = Database(conf.database_url)
    await db.create_all()
    await db.dispose()
    return ComputeProcess(conf)


async def test_a_compute_process_on_an_underlay_serves_transfers(tmp_path: Path) -> None:
    port = _free_port()
    proc = await _process(tmp_path, underlay_ip="127.0.0.1", transfer_port=port)
    await proc.start()
    try:
        assert proc.transfer is not None
        assert [isinstance(m.node.transfer, HttpSender) for m in proc.managers] == [True]
        async with httpx.AsyncClient() as client:
            r = await client.delete(f"http://127.0.0.1:{port}/v1/migrations/00000000-0000-0000-0000-000000000001")
        assert r.status_code in (401, 403), r.text
    finally:
        await proc.stop()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


async def test_without_an_underlay_there_is_no_endpoint(tmp_path: Path) -> None:
    proc = await _process(tmp_path)
    await proc.start()
    try:
        assert proc.transfer is None
        assert not any(isinstance(m.node.transfer, HttpSender) for m in proc.managers)
    finally:
        await proc.stop()
