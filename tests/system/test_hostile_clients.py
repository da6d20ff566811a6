"""What a hostile client found (issue 8, section 1, items 3, 4 and 8), on the real `cumulo up`
(uvicorn on loopback), with raw sockets, httpx and the real `openstack` CLI; and the same against
the `cumulo api` process of the scaled-out cloud (tests/system/cluster.py: PostgreSQL, RabbitMQ).

- A chunked body is answered 413 once it passes the limit, while the client is still sending:
  the server does not wait for (and hold) the rest.
- A lone surrogate in a JSON body is a 400 in the family's format, and the connection stays usable;
  so is a POST with no Content-Length and no chunks (an empty body).
- A NUL character: SQLite (embedded) stores it, PostgreSQL (scaled) cannot: a 400 naming it there.
- A token that lost its role stays dead when the role is granted again (`openstack role remove`,
  `openstack role add`); a new token works.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:  # the harness lives in tests/system/conftest.py
    from conftest import CumuloCloud

pytestmark = pytest.mark.system

cumulo_configs = ("embedded", "scaled")  # and on the scaled-out cloud (tests/system/cluster.py)
# The scaled variant keeps the bad bodies against the API process on PostgreSQL.
EMBEDDED_ONLY = pytest.mark.configs("embedded", reason="token revocation through the CLI: the same API path, "
                                    "left out of the scaled variant for time")

cumulo_options = {"fake_hosts": 0}


def _status_line(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n" not in data:
        piece = sock.recv(4096)
        if not piece:
            break
        data += piece
    return data


@pytest.mark.parametrize("path", ["/identity/v3/auth/tokens", "/compute/v2.1/servers", "/image/v2/images",
                                  "/occi/compute/"])
def test_chunked_body_over_the_limit_is_answered_before_it_ends(cumulo: CumuloCloud, path: str) -> None:
    """2 MiB of a body whose end never comes: the server answers 413 after the first MiB, without
    waiting for the rest (before the fix it read until the end of the body, so here: no answer)."""
    host, port = "127.0.0.1", int(cumulo.base_url.rsplit(":", 1)[1])
    token = cumulo.token() if not path.startswith("/identity") else ""
    with socket.create_connection((host, port), timeout=30) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Transfer-Encoding: chunked\r\n" + (f"X-Auth-Token: {token}\r\n" if token else "") + "\r\n"
        )
        sock.sendall(head.encode())
        chunk = b"x" * (64 << 10)
        for _ in range(32):  # 2 MiB, and no terminating chunk
            sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        line = _status_line(sock, timeout=30)
    assert line.startswith(b"HTTP/1.1 413"), line[:200]


def test_lone_surrogate_is_400_and_the_connection_lives(cumulo: CumuloCloud) -> None:
    bad = b'{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "\\ud800", "domain": {"id": "default"}, "password": "x"}}}}}'
    with httpx.Client(base_url=cumulo.base_url, timeout=30) as anon:
        resp = anon.post("/identity/v3/auth/tokens", content=bad, headers={"Content-Type": "application/json"})
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"]["code"] == 400 and "surrogate" in resp.json()["error"]["message"]
        # The same connection answers the next request.
        assert anon.get("/identity/v3").status_code == 200
    with cumulo.client() as admin:
        for url, body in (
            ("/compute/v2.1/os-keypairs", b'{"keypair": {"name": "k\\udfff"}}'),
            ("/image/v2/images", b'{"name": "\\ud800"}'),
        ):
            resp = admin.post(url, content=body, headers={"Content-Type": "application/json"})
            assert resp.status_code == 400, (url, resp.text)
            assert "surrogate" in json.dumps(resp.json()), resp.text
        assert admin.get("/compute/v2.1/os-keypairs").status_code == 200


def test_a_body_without_length_or_chunks_is_400_and_the_connection_lives(cumulo: CumuloCloud) -> None:
    """A POST with neither Content-Length nor Transfer-Encoding has an empty body (RFC 9112 6.3):
    the family's own 400, and the next request on the same socket is answered."""
    host, port = "127.0.0.1", int(cumulo.base_url.rsplit(":", 1)[1])
    with socket.create_connection((host, port), timeout=30) as sock:
        head = (f"POST /compute/v2.1/os-keypairs HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"X-Auth-Token: {cumulo.token()}\r\n\r\n")
        sock.sendall(head.encode())
        first = _status_line(sock, timeout=30)
        assert first.startswith(b"HTTP/1.1 400"), first[:300]
        sock.sendall(f"GET /compute/v2.1/os-keypairs HTTP/1.1\r\nHost: {host}\r\nX-Auth-Token: {cumulo.token()}\r\n"
                     "\r\n".encode())
        rest = first.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in first else b""
        while b"HTTP/1.1 " not in rest:
            piece = sock.recv(4096)
            assert piece, "the server closed the connection"
            rest += piece
    assert b"HTTP/1.1 200" in rest, rest[:300]


def test_a_nul_character_where_postgresql_takes_none(cumulo: CumuloCloud) -> None:
    """A NUL (\\u0000) in an image name: SQLite (embedded) stores it as given; PostgreSQL (the
    scaled-out cloud) cannot hold it, and the API process answers the Image API's 400 naming it,
    never a 500, and creates nothing."""
    name = f"nul-{uuid.uuid4().hex[:8]}"
    with cumulo.client() as admin:
        resp = admin.post("/image/v2/images", content=b'{"name": "%s\\u0000x"}' % name.encode(),
                          headers={"Content-Type": "application/json"})
        if cumulo.config_name == "embedded":
            assert resp.status_code == 201, resp.text
            assert resp.json()["name"] == name + "\x00x"
            assert admin.delete(f"/image/v2/images/{resp.json()['id']}").status_code == 204
        else:
            assert resp.status_code == 400, resp.text
            assert "NUL character" in resp.text and "name" in resp.text, resp.text
        listed = admin.get("/image/v2/images", params={"limit": 1000}).json()["images"]
        assert not [i for i in listed if str(i.get("name", "")).startswith(name)], listed


def _login(cumulo: CumuloCloud, user: str, password: str, project: str) -> str:
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}}}}
    resp = httpx.post(f"{cumulo.auth_url}/auth/tokens", json=body, timeout=30)
    assert resp.status_code == 201, resp.text
    return resp.headers["X-Subject-Token"]


def _works(cumulo: CumuloCloud, token: str) -> bool:
    resp = httpx.get(f"{cumulo.base_url}/compute/v2.1/servers", headers={"X-Auth-Token": token}, timeout=30)
    assert resp.status_code in (200, 401), resp.text
    return resp.status_code == 200


@EMBEDDED_ONLY
def test_token_that_lost_its_role_stays_dead(cumulo: CumuloCloud, osc: Callable[..., Any]) -> None:
    tag = uuid.uuid4().hex[:8]
    project, user, password = f"rv-p-{tag}", f"rv-u-{tag}", f"pw-{uuid.uuid4().hex}"
    osc("project", "create", project)
    try:
        osc("user", "create", "--password", password, "--project", project, user)
        osc("role", "add", "--user", user, "--project", project, "member")
        old = _login(cumulo, user, password, project)
        assert _works(cumulo, old)
        osc("role", "remove", "--user", user, "--project", project, "member")
        assert not _works(cumulo, old)
        osc("role", "add", "--user", user, "--project", project, "member")
        assert not _works(cumulo, old)  # the old token stays dead
        # Validation of the old token by the admin: 404, as Keystone answers.
        resp = httpx.get(f"{cumulo.auth_url}/auth/tokens", timeout=30,
                         headers={"X-Auth-Token": cumulo.token(), "X-Subject-Token": old})
        assert resp.status_code == 404, resp.text
        new = _login(cumulo, user, password, project)
        assert _works(cumulo, new)
        # A password change ends every token of the user, for good.
        osc("user", "set", "--password", password + "2", user)
        assert not _works(cumulo, new)
        assert _works(cumulo, _login(cumulo, user, password + "2", project))
    finally:
        cumulo.osc_run("user", "delete", user)
        cumulo.osc_run("project", "delete", project)
