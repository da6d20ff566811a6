"""A compute process's transfer wiring (compute.transfer.wiring): only with an underlay address, only
the host's own agents get the HTTP sender, and the endpoint writes where the migration agent reads."""

from __future__ import annotations

import dataclasses
import types
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from _asgi_ctx import temp_database

from cumulo import conf as conf_mod
from cumulo.compute import migration_records
from cumulo.compute.agent.migrate_files import LocalSender
from cumulo.compute.agent.migrate_files import incoming_dir as agent_incoming
from cumulo.compute.models import migrations
from cumulo.compute.transfer import client
from cumulo.compute.transfer.sender import HttpSender
from cumulo.compute.transfer.wiring import start_host_transfers
from cumulo.db import Database


async def _record(db: Database, mid: str, status: str, dest: str = "host-b") -> None:
    async with db.write() as conn:
        await conn.execute(sa.insert(migrations).values(
            uuid=mid, instance_uuid=str(uuid.uuid4()), source_compute="host-a", dest_compute=dest, status=status,
            migration_type=migration_records.MIGRATION, hidden=False))


async def _set_status(db: Database, mid: str, status: str) -> None:
    async with db.write() as conn:
        await conn.execute(sa.update(migrations).where(migrations.c.uuid == mid).values(status=status))


def _manager(host: str, state: Path) -> types.SimpleNamespace:
    return types.SimpleNamespace(node=types.SimpleNamespace(host=host, transfer=LocalSender(state)))


async def test_wiring(tmp_path: Path) -> None:
    conf = conf_mod.load(env={}, state_dir=tmp_path / "b")
    async with temp_database(conf) as db:
        own, fake = _manager("host-b", conf.state_dir), _manager("fake-1", conf.state_dir)
        assert await start_host_transfers(db, conf, "host-b", [own, fake]) is None  # no underlay: nothing
        assert isinstance(own.node.transfer, LocalSender)
        conf = dataclasses.replace(conf, underlay_ip="127.0.0.1", transfer_port=0)
        server = await start_host_transfers(db, conf, "host-b", [own, fake])
        assert server is not None
        try:
            assert isinstance(own.node.transfer, HttpSender) and isinstance(fake.node.transfer, LocalSender)
            assert server.address == "127.0.0.1" and server.port > 0
            src = tmp_path / "disk"
            src.write_bytes(b"disk bytes")
            mid = str(uuid.uuid4())
            await _record(db, mid, migration_records.MIGRATING)
            target = await client.target(db, mid, "host-b", "127.0.0.1", server.port)
            await client.send_file(target, "disk", src)
            assert (agent_incoming(conf.state_dir, "host-b", mid) / "disk").read_bytes() == b"disk bytes"
            # The copy is over: the same (still valid) token, replayed, is refused; a discard is not.
            await _set_status(db, mid, migration_records.POST_MIGRATING)
            with pytest.raises(client.TransferError) as exc:
                await client.send_file(target, "evil", src)
            assert exc.value.status == 403
            await client.discard(target)
            # Copying, but to another host; and a migration with no record at all.
            other = str(uuid.uuid4())
            await _record(db, other, migration_records.MIGRATING, dest="host-c")
            for mig in (other, str(uuid.uuid4())):
                with pytest.raises(client.TransferError) as exc:
                    await client.send_file(await client.target(db, mig, "host-b", "127.0.0.1", server.port), "d", src)
                assert exc.value.status == 403
            assert not agent_incoming(conf.state_dir, "host-b", mid).exists()
        finally:
            await server.stop()
