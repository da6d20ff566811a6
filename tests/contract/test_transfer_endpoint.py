"""The destination agent's transfer endpoint with a real server on loopback and the real client
(compute.transfer, issue 14): sparse files and upper dirs arrive whole and atomically, tokens are
checked (401 without, 403 wrong or expired), bounds and hostile tars are refused with nothing
left, connection errors are retried, a migration is discarded."""

from __future__ import annotations

import dataclasses
import io
import os
import tarfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _asgi_ctx import temp_database

from cumulo import conf as conf_mod
from cumulo.compute.transfer import PURPOSE, SECRET, TOKEN_HEADER, client, incoming_dir, subject
from cumulo.compute.transfer.server import TransferServer
from cumulo.db import Database
from cumulo.hosts.secrets import secret, sign

ROOT = os.geteuid() == 0
BOUND = 4 << 20


@dataclasses.dataclass
class Dest:
    db: Database
    server: TransferServer
    state: Path

    async def target(self, mid: str | None = None, **kw: Any) -> client.Target:
        return await client.target(self.db, mid or str(uuid.uuid4()), "host-b", "127.0.0.1", self.server.port, **kw)

    def incoming(self, t: client.Target) -> Path:
        return incoming_dir(self.state, t.migration_uuid)


@pytest.fixture
async def dest(tmp_path: Path) -> AsyncIterator[Dest]:
    conf = dataclasses.replace(conf_mod.load(env={}, state_dir=tmp_path / "b"), transfer_max_bytes=BOUND,
                               transfer_max_entries=50)
    async with temp_database(conf) as db:
        server = TransferServer(db, conf, "host-b", address="127.0.0.1", port=0)
        await server.start()
        try:
            yield Dest(db, server, conf.state_dir)
        finally:
            await server.stop()


def _listing(where: Path) -> list[str]:
    return sorted(os.listdir(where)) if where.exists() else []


async def test_sparse_file_arrives_whole_sparse_and_atomically(dest: Dest, tmp_path: Path) -> None:
    src = tmp_path / "disk.raw"
    head, tail = os.urandom(100_000), os.urandom(70_000)
    with open(src, "wb") as fh:
        fh.write(head)
        fh.seek(3 << 20)
        fh.write(tail)
        fh.truncate(BOUND)
    t = await dest.target()
    sent = await client.send_file(t, "disk", src)
    assert sent < 1 << 20  # the holes did not travel
    got = dest.incoming(t) / "disk"
    assert got.read_bytes() == src.read_bytes()
    assert os.stat(got).st_blocks * 512 < 1 << 20  # and are holes on arrival
    assert _listing(dest.incoming(t)) == ["disk"]  # no temp file left
    await client.send_file(t, "disk", src)  # a retried PUT replaces it
    assert _listing(dest.incoming(t)) == ["disk"]
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    await client.send_file(t, "empty", empty)
    assert (dest.incoming(t) / "empty").read_bytes() == b""


async def test_plain_body_is_taken_and_zero_blocks_become_holes(dest: Dest) -> None:
    t = await dest.target()
    data = b"a" * 5000 + bytes(2 << 20) + b"z"
    async with httpx.AsyncClient() as http:
        r = await http.put(f"{t.base_url}/v1/migrations/{t.migration_uuid}/files/root.img", content=data,
                           headers={TOKEN_HEADER: t.token, "Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text
    got = dest.incoming(t) / "root.img"
    assert got.read_bytes() == data
    assert os.stat(got).st_blocks * 512 < 1 << 20


@pytest.mark.skipif(not ROOT, reason="an upper dir keeps owners and whiteouts: root")
async def test_tree_round_trip_and_discard(dest: Dest, tmp_path: Path) -> None:
    src = tmp_path / "upper"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "hostname").write_text("web-1\n")
    os.chown(src / "etc" / "hostname", 33, 33)
    os.symlink("/etc/hostname", src / "link")
    os.mknod(src / "etc" / "gone", 0o20000 | 0o600, os.makedev(0, 0))
    os.chmod(src, 0o755)
    (src / "suid").write_bytes(b"#!/bin/sh\n")
    os.chmod(src / "suid", 0o6755)
    t = await dest.target()
    await client.send(t, "upper", src)
    up = dest.incoming(t) / "upper"
    assert (up / "etc" / "hostname").read_text() == "web-1\n"
    assert os.stat(up / "etc" / "hostname").st_uid == 33
    assert os.readlink(up / "link") == "/etc/hostname"
    assert os.lstat(up / "etc" / "gone").st_rdev == os.makedev(0, 0)
    assert os.stat(up / "suid").st_mode & 0o7777 == 0o755  # setuid/setgid not kept
    assert os.stat(up).st_mode & 0o7777 == 0o755  # the root's own mode (the container's "/")
    assert _listing(dest.incoming(t)) == ["upper"]
    await client.send_tree(t, "upper", src)  # again: replaced whole
    assert _listing(dest.incoming(t)) == ["upper"]
    await client.discard(t)
    assert not dest.incoming(t).exists()


def _tar_bytes(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data) if data is not None else 0
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, **kw: Any) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    for k, v in kw.items():
        setattr(info, k, v)
    return info


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (_tar_bytes((_member("null", tarfile.CHRTYPE, devmajor=1, devminor=3), None)), 400, "device node"),
        (_tar_bytes((_member("p", tarfile.FIFOTYPE), None)), 400, "FIFO"),
        (_tar_bytes((_member("../../../../etc/cron.d/x"), b"x")), 400, "'..'"),
        (_tar_bytes((_member("/etc/cron.d/x"), b"x")), 400, "absolute"),
        (_tar_bytes((_member("o", tarfile.SYMTYPE, linkname="/etc"), None), (_member("o/cron.d"), b"x")), 400,
         "below the symlink"),
        (_tar_bytes((_member("h", tarfile.LNKTYPE, linkname="../../etc/passwd"), None)), 400, "'..'"),
        (_tar_bytes(*((_member(f"f{i}"), b"") for i in range(51))), 413, "more than 50 entries"),
        (b"not a tar at all" * 100, 400, "tar"),
    ],
)
async def test_hostile_tars_are_refused_and_leave_nothing(dest: Dest, body: bytes, status: int, says: str) -> None:
    t = await dest.target()
    async with httpx.AsyncClient() as http:
        r = await http.put(f"{t.base_url}/v1/migrations/{t.migration_uuid}/trees/upper", content=body,
                           headers={TOKEN_HEADER: t.token, "Content-Type": "application/x-tar"})
    assert r.status_code == status, r.text
    assert says in r.json()["error"]["message"]
    assert _listing(dest.incoming(t)) == []
    assert not Path("/etc/cron.d/x").exists()


async def test_tokens(dest: Dest, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"data")
    mid = str(uuid.uuid4())
    good = await dest.target(mid)
    key = await secret(dest.db, SECRET)
    wrong = {
        "another destination": sign(key, PURPOSE, subject(mid, "host-c")),
        "another migration": sign(key, PURPOSE, subject(str(uuid.uuid4()), "host-b")),
        "another purpose": sign(key, "image", subject(mid, "host-b")),
        "another key": sign(os.urandom(32), PURPOSE, subject(mid, "host-b")),
        "expired": sign(key, PURPOSE, subject(mid, "host-b"), 60, now=time.time() - 120),
        "garbage": "12.zz",
    }
    for why, token in wrong.items():
        with pytest.raises(client.TransferError) as exc:
            await client.send_file(dataclasses.replace(good, token=token), "f", src)
        assert exc.value.status == 403, why
        with pytest.raises(client.TransferError) as exc:
            await client.discard(dataclasses.replace(good, token=token))
        assert exc.value.status == 403, why
    async with httpx.AsyncClient() as http:
        r = await http.put(f"{good.base_url}/v1/migrations/{mid}/files/f", content=b"x")
        assert r.status_code == 401
        r = await http.put(f"{good.base_url}/v1/migrations/not-a-uuid/files/f", content=b"x",
                           headers={TOKEN_HEADER: good.token})
        assert r.status_code == 400
        r = await http.put(f"{good.base_url}/v1/migrations/{mid}/files/.hidden", content=b"x",
                           headers={TOKEN_HEADER: good.token, "Content-Type": "application/octet-stream"})
        assert r.status_code == 400
    assert _listing(dest.incoming(good)) == []
    await client.send_file(good, "f", src)
    assert (dest.incoming(good) / "f").read_bytes() == b"data"


async def test_bounds(dest: Dest, tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(os.urandom(BOUND + 1))
    t = await dest.target()
    with pytest.raises(client.TransferError) as exc:
        await client.send_file(t, "big", big)
    assert exc.value.status == 413
    sparse_big = tmp_path / "sparse-big"
    with open(sparse_big, "wb") as fh:
        fh.truncate(BOUND * 100)  # no data at all, but a size over the bound
    with pytest.raises(client.TransferError) as exc:
        await client.send_file(t, "sparse-big", sparse_big)
    assert exc.value.status == 413

    async def stream() -> AsyncIterator[bytes]:  # no Content-Length to give it away up front
        for _ in range(5):
            yield os.urandom(1 << 20)

    async with httpx.AsyncClient() as http:
        r = await http.put(f"{t.base_url}/v1/migrations/{t.migration_uuid}/files/x", content=stream(),
                           headers={TOKEN_HEADER: t.token, "Content-Type": "application/octet-stream"})
        assert r.status_code == 413
        tree = tmp_path / "tree"
        tree.mkdir()
        (tree / "blob").write_bytes(os.urandom(BOUND))
        with pytest.raises(client.TransferError) as exc:
            await client.send_tree(t, "tree", tree)
        assert exc.value.status == 413
    assert _listing(dest.incoming(t)) == []


class FlakyOnce(httpx.AsyncBaseTransport):
    """A real HTTP transport whose first request fails as a refused connection would."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.calls == 1:
            raise httpx.ConnectError("connection refused (test)", request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_connection_errors_are_retried(dest: Dest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "BACKOFF", 0.01)
    src = tmp_path / "f"
    src.write_bytes(os.urandom(300_000))
    flaky = FlakyOnce()
    t = dataclasses.replace(await dest.target(), transport=flaky)
    await client.send_file(t, "f", src)
    assert flaky.calls == 2
    assert (dest.incoming(t) / "f").read_bytes() == src.read_bytes()
    dead = dataclasses.replace(await dest.target(), base_url="http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(client.TransferError, match="failed"):
        await client.send_file(dead, "f", src)


async def test_http_sender_as_the_cold_migrations_file_sender(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cumulo.compute.agent.migrate_files import incoming_dir as agent_incoming
    from cumulo.compute.drivers.base import MigrationFile
    from cumulo.compute.transfer.sender import HttpSender
    from cumulo.errors import DriverError

    monkeypatch.setattr(client, "BACKOFF", 0.01)
    conf = conf_mod.load(env={}, state_dir=tmp_path / "b")
    async with temp_database(conf) as db:
        server = TransferServer(db, conf, "host-b", address="127.0.0.1", port=0,
                                incoming=lambda mid: agent_incoming(conf.state_dir, "host-b", mid))
        await server.start()
        try:
            disk = tmp_path / "disk.img"
            disk.write_bytes(os.urandom(10_000))
            upper = tmp_path / "upper"
            (upper / "etc").mkdir(parents=True)
            (upper / "etc" / "motd").write_text("hi")
            mid = str(uuid.uuid4())
            files = [MigrationFile("disk", str(disk)), MigrationFile("upper", str(upper), tree=True)]
            sender = HttpSender(db, server.port)
            got = agent_incoming(conf.state_dir, "host-b", mid)
            (got / "stale").parent.mkdir(parents=True)
            (got / "stale").write_text("from an earlier try")
            await sender.send(migration_uuid=mid, dest_host="host-b", address="127.0.0.1", files=files)
            assert _listing(got) == ["disk", "upper"]  # the earlier try's file went first
            assert (got / "disk").read_bytes() == disk.read_bytes()
            assert (got / "upper" / "etc" / "motd").read_text() == "hi"
            with pytest.raises(DriverError, match="no underlay address"):
                await sender.send(migration_uuid=mid, dest_host="host-b", address=None, files=files)
            with pytest.raises(DriverError, match=r"to host-c failed: .*\(403\)"):  # a token for another host
                await sender.send(migration_uuid=mid, dest_host="host-c", address="127.0.0.1", files=files)
            missing = [MigrationFile("disk", str(tmp_path / "nothing"))]
            with pytest.raises(DriverError, match="nothing"):
                await sender.send(migration_uuid=mid, dest_host="host-b", address="127.0.0.1", files=missing)
            assert not got.exists()  # discarded on the failure
        finally:
            await server.stop()


async def test_received_files_are_private_whatever_the_umask(dest: Dest, tmp_path: Path) -> None:
    """A tenant's disk on the destination is 0600 in a 0700 dir even under a lax umask (022)."""
    src = tmp_path / "disk.raw"
    src.write_bytes(os.urandom(10_000))
    old = os.umask(0o022)
    try:
        t = await dest.target()
        await client.send_file(t, "disk", src)
    finally:
        os.umask(old)
    assert os.stat(dest.incoming(t) / "disk").st_mode & 0o777 == 0o600
    assert os.stat(dest.incoming(t)).st_mode & 0o777 == 0o700


async def test_non_ascii_digits_in_headers_are_4xx_not_500(dest: Dest) -> None:
    """Headers arrive as latin-1: b"\\xb2" is "²", which str.isdigit() takes and int() refuses."""
    good = await dest.target()
    url = f"{good.base_url}/v1/migrations/{good.migration_uuid}/files/f"
    mac = good.token.partition(".")[2]
    async with httpx.AsyncClient() as http:
        r = await http.put(url, content=b"x", headers={TOKEN_HEADER: b"\xb2." + mac.encode(),
                                                       "Content-Type": "application/octet-stream"})
        assert r.status_code == 403, r.text
        r = await http.put(url, content=b"", headers={TOKEN_HEADER: good.token, "X-Cumulo-File-Size": b"\xb2",
                                                      "Content-Type": "application/x-cumulo-extents"})
        assert r.status_code == 400, r.text
