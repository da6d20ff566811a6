"""RabbitMQ for the bus tests: scripts/services.py loaded for a given node port (its node name and
epmd port follow from it), a private vhost on the run's broker, and a private node of its own
(for the outage test: stopping the run's shared broker would break every other worker's tests)."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from _services import services_for


def with_vhost(url: str, vhost: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(vhost, safe=""), parts.query, parts.fragment))


class Vhost:
    """A vhost of its own on the run's broker (everything a test module declares goes with it)."""

    def __init__(self, services: dict[str, str]) -> None:
        self.dir = Path(services["dir"])
        url = services["transport_url"]
        port = urlsplit(url).port
        assert port is not None
        self.ctl = services_for(port)
        self.name = f"cumulo-bus-{secrets.token_hex(4)}"
        self.url = with_vhost(url, self.name)
        self.user = urlsplit(url).username or "cumulo"

    def __enter__(self) -> Vhost:
        self.ctl.rabbitmqctl(self.dir, "add_vhost", self.name)
        self.ctl.rabbitmqctl(self.dir, "set_permissions", "-p", self.name, self.user, ".*", ".*", ".*")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.ctl.rabbitmqctl(self.dir, "delete_vhost", self.name)


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class PrivateNode:
    """A RabbitMQ node of the test's own (its port, epmd, dir), stopped and removed at exit."""

    def __init__(self) -> None:
        for _ in range(50):
            port = 40000 + secrets.randbelow(9000)
            if all(_free(p) for p in (port, port + 1, port + 2)):
                break
        else:
            raise RuntimeError("no free port for a private RabbitMQ node")
        self.ctl = services_for(port)
        self.root = Path(f"/tmp/cumulo-bus-node-{port}-{os.getpid()}")
        self.url = ""

    def __enter__(self) -> PrivateNode:
        self.root.mkdir(mode=0o711)
        try:
            self.url = self.ctl.start_rabbitmq(self.root, secrets.token_urlsafe(12))
        except BaseException:
            self.ctl.stop(self.root)
            raise
        return self

    def rabbitmqctl(self, *args: str) -> Any:
        return self.ctl.rabbitmqctl(self.root, *args)

    def __exit__(self, *exc: Any) -> None:
        self.ctl.stop(self.root)
