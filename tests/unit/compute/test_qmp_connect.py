"""The QMP client's connect paths over a loopback unix socket (no QEMU): Qmp.connect and FdQmp.open
read the greeting and leave negotiation mode; a socket nobody listens on, or a peer that never
greets, is QmpClosed naming what was reached for (QMP, or the guest agent for Qga.connect)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from cumulo.compute.drivers.qemu import qga, qmp


async def _serve(path: Path, *, greet: bool) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if greet:
            writer.write(b'{"QMP": {"version": {}, "capabilities": []}}\n')
        while line := await reader.readline():
            msg = json.loads(line)
            writer.write(json.dumps({"return": {}, "id": msg["id"]}).encode() + b"\n")
            await writer.drain()
        writer.close()

    return await asyncio.start_unix_server(handle, path=str(path))


@pytest.mark.parametrize("opener", ["connect", "fd"])
async def test_connect_reads_the_greeting_and_negotiates(tmp_path: Path, opener: str) -> None:
    sock = tmp_path / "qmp.sock"
    server = await _serve(sock, greet=True)
    try:
        conn = await (qmp.Qmp.connect(sock, 5.0) if opener == "connect" else qmp.FdQmp.open(sock, 5.0))
        assert await conn.execute("query-status") == {}
        await conn.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_a_peer_that_never_greets_is_closed(tmp_path: Path) -> None:
    sock = tmp_path / "qmp.sock"
    server = await _serve(sock, greet=False)
    try:
        with pytest.raises(qmp.QmpClosed, match="did not greet"):
            await qmp.FdQmp.open(sock, 0.3)
    finally:
        server.close()
        await server.wait_closed()


async def test_nobody_listening_names_what_was_reached_for(tmp_path: Path) -> None:
    with pytest.raises(qmp.QmpClosed, match="cannot connect to QMP at"):
        await qmp.Qmp.connect(tmp_path / "none.sock", 1.0)
    with pytest.raises(qmp.QmpClosed, match="cannot connect to the guest agent at"):
        await qga.Qga.connect(tmp_path / "none.sock", 1.0)
