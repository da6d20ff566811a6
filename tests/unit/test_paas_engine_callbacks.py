"""Task callbacks: the allowlist at request time (loopback literals and configured hosts; a name's
every address must be allowed), and one POST of the Task JSON when the task ends, exactly once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import paas_engine_util as u
import pytest
from occi_cloud import until

from cumulo import errors
from cumulo.paas.engine import callbacks
from cumulo.paas.engine import finish as fin
from cumulo.paas.engine.base import Plan


def _resolver(table: dict[str, list[str]]) -> Any:
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError("no such name")
        return table[host]

    return resolve


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/cb", "https://127.0.0.1/x?y=1", "http://[::1]:9/cb",
                                 "http://127.3.4.5/"])
def test_loopback_literals_are_allowed(url: str) -> None:
    target = callbacks.check(url, (), resolve=_resolver({}))
    assert target.address in ("127.0.0.1", "::1", "127.3.4.5")


@pytest.mark.parametrize(("url", "why"), [
    ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is not loopback"),
    ("http://10.0.0.1/", "10.0.0.1 is not loopback"),
    ("ftp://127.0.0.1/x", "only http and https"),
    ("file:///etc/passwd", "only http and https"),
    ("http://example.com/", "example.com is not an allowed callback host"),
    ("http://user:pw@127.0.0.1/", "credentials"),
    ("http:///nohost", "names no host"),
    ("http://127.0.0.1:99999/", "not a valid URL"),
    ("http://0.0.0.0/", "0.0.0.0 is not loopback"),
    ("http://[::ffff:169.254.169.254]/", "is not loopback"),
    ("http://[::ffff:127.0.0.1]/", "is not loopback"),
    ("http://2130706433/", "2130706433 is not an allowed callback host"),
    ("http://0x7f.1/", "0x7f.1 is not an allowed callback host"),
    ("http://localhost./", "localhost. is not an allowed callback host"),
    ("http://127.0.0.1:1/\r\nX-Injected: y", "spaces or control characters"),
    ("http://127.0.0.1/a b", "spaces or control characters"),
    ("https://127.0.0.1:0/", "port 0"),
])
def test_refused_callbacks_name_the_problem(url: str, why: str) -> None:
    with pytest.raises(errors.Invalid, match="callback") as info:
        callbacks.check(url, (), resolve=_resolver({}))
    assert why in str(info.value)


def test_a_configured_name_must_resolve_only_to_allowed_addresses() -> None:
    table = {"hooks.example": ["127.0.0.1"], "evil.example": ["127.0.0.1", "169.254.169.254"],
             "office.example": ["10.1.2.3"]}
    assert callbacks.check("http://hooks.example:81/t", ["hooks.example"], resolve=_resolver(table)).address == "127.0.0.1"
    with pytest.raises(errors.Invalid, match="resolves to 169.254.169.254"):
        callbacks.check("http://evil.example/", ["evil.example"], resolve=_resolver(table))
    with pytest.raises(errors.Invalid, match="resolves to 10.1.2.3"):
        callbacks.check("http://office.example/", ["office.example"], resolve=_resolver(table))
    target = callbacks.check("http://office.example/", ["office.example", "10.1.2.3"], resolve=_resolver(table))
    assert (target.address, target.host, target.port, target.path) == ("10.1.2.3", "office.example", 80, "/")
    assert callbacks.check("http://10.9.9.9/", ["10.9.0.0/16"], resolve=_resolver(table)).address == "10.9.9.9"
    with pytest.raises(errors.Invalid, match="does not resolve"):
        callbacks.check("http://gone.example/", ["gone.example"], resolve=_resolver(table))


class Receiver:
    """A loopback HTTP server that records each request (method, path, headers, body)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        lines = head.split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append({"method": method, "path": path, "headers": headers, "body": body})
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async def __aenter__(self) -> Receiver:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def test_the_post_does_not_read_the_answers_body() -> None:
    """A receiver that answers with an endless body: the POST still ends, with its status."""
    seen = asyncio.Event()

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        seen.set()
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 65536
        try:
            while True:
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(endless, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        target = callbacks.check(f"http://127.0.0.1:{port}/cb", (), resolve=_resolver({}))
        state = await asyncio.wait_for(callbacks.post(target, {"id": 1}), 60)
    finally:
        server.close()
        await server.wait_closed()
    assert seen.is_set() and state == "sent 200"


@pytest.fixture
async def svc(cloud: Any) -> AsyncIterator[Any]:
    async with u.own_engines(cloud) as services:
        yield services


async def test_the_task_json_is_posted_once_when_the_task_ends(svc: Any) -> None:
    c = u.ctx()
    engine = u.engine_with(svc, lambda _i: Plan(steps=[u.step("a")]))
    await engine.start()
    try:
        async with Receiver() as rx:
            url = f"http://127.0.0.1:{rx.port}/hook?x=1"
            task = await engine.deploy(c, name="cb1", description="", environment={"name": "e"}, callback=url)
            final = await engine.wait(task["id"])
            await until(lambda: _state(svc, task["id"]), "the callback recorded")
            again = await callbacks.deliver(svc.db, {**final, "callback": url}, {}, ())
    finally:
        await engine.stop()
    assert again is None  # tried once already: never posted twice (e.g. by a resumed engine)
    assert len(rx.requests) == 1
    req = rx.requests[0]
    assert req["method"] == "POST" and req["path"] == "/hook?x=1"
    assert req["headers"]["host"] == f"127.0.0.1:{rx.port}"
    body = json.loads(req["body"])
    assert body["status"] == "SUCCESS" and body["href"].endswith(f"/paas/rest/vdc/{c.project_id}/task/{task['id']}")
    assert body["result"]["href"].endswith(f"/vdc/{c.project_id}/environmentInstance/cb1")
    assert await _state(svc, task["id"]) == "sent 204"


async def test_a_callback_an_engine_stopped_before_is_sent_by_the_next_one(svc: Any,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The final write happened, the POST did not (the engine died in between): the next engine's
    recovery sends it."""
    c = u.ctx()
    engine = u.engine_with(svc, lambda _i: Plan(steps=[u.step("a")]))
    sent = []

    async def no_post(services: Any, row: Any) -> None:
        sent.append(row["id"])

    engine_notify = fin.notify
    monkeypatch.setattr(fin, "notify", no_post)
    await engine.start()
    async with Receiver() as rx:
        task = await engine.deploy(c, name="cb3", description="", environment={"name": "e"},
                                   callback=f"http://127.0.0.1:{rx.port}/late")
        await engine.wait(task["id"])
        await until(lambda: _async_true(sent), "the first engine's (skipped) notify")
        await engine.stop()
        monkeypatch.setattr(fin, "notify", engine_notify)
        assert await _state(svc, task["id"]) is None and rx.requests == []
        second = u.engine_with(svc, lambda _i: Plan())
        await second.start()
        try:
            await until(lambda: _state(svc, task["id"]), "the callback sent by the next engine")
        finally:
            await second.stop()
    assert [r["path"] for r in rx.requests] == ["/late"]
    assert await _state(svc, task["id"]) == "sent 204"


async def _async_true(value: Any) -> bool:
    return bool(value)


async def test_a_refused_callback_fails_the_request_before_anything_is_written(svc: Any) -> None:
    engine = u.engine_with(svc, lambda _i: Plan(steps=[u.step("a")]))
    with pytest.raises(errors.Invalid, match="169.254.169.254"):
        await engine.deploy(u.ctx(), name="cb2", description="", environment={"name": "e"},
                            callback="http://169.254.169.254/")
    from cumulo.paas.engine import tasks

    assert await tasks.recoverable(svc.db) == []


async def _state(svc: Any, task_id: int) -> str | None:
    from cumulo.paas.engine import tasks

    row = await tasks.get(svc.db, task_id)
    assert row is not None
    state = row["callback_state"]
    return None if state in (None, "sending") else str(state)
