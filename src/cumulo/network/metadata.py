"""The metadata service at http://169.254.169.254/, one listener per tenant network, as Neutron's
metadata proxy with Nova's metadata API behind it, in one process.

Each network's namespace holds a socket listening on 169.254.169.254:80 (netplane/metadata.py
makes it inside the namespace); this module serves it on the cloud's event loop. A request is
identified by the listener's network and the TCP peer's address: (network id, source IP) -> the
port with that fixed IP on that network (ip_allocations is unique per network) -> its device_id,
when the port belongs to a server (device_owner `compute:*`). Anything else is a 404: nothing is
ever served from another instance, a router or DHCP port, or an unknown address. Anti-spoofing
(security groups, ports with port security on) keeps a server from posing as another's address.

What an instance's documents hold comes from a `Documents` callable (instance uuid, its NICs ->
dict or None) that the runtime builds from compute (the config drive's renderers), so the metadata
service and the config drive say the same. The NICs are the instance's ports as the network agent
describes them to compute (NicSpec dicts, `agent/state.nic_fields`), from which compute renders
network_data.json as for the drive. The documents' keys: `uuid`, `meta_data`, `network_data`,
`user_data` (bytes or None), `vendor_data`, and for the EC2 paths `ec2_id`, `hostname`,
`availability_zone`, `instance_type`, `image_id`, `reservation_id`, `launch_index`,
`security_groups`.

Paths (GET or HEAD; Nova's metadata API):
    /                                         the EC2 versions, then `openstack`
    /openstack[/]                             the OpenStack versions, then `latest`
    /openstack/<version>[/]                   the files of that version
    /openstack/<version>/meta_data.json|network_data.json|vendor_data.json|vendor_data2.json|user_data
    /<ec2 version>/[meta-data/...|user-data]  the EC2 tree (instance-id, hostname, local-ipv4,
                                              public-ipv4, public-keys/..., placement/...)
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import sqlalchemy as sa

from cumulo.db import Database
from cumulo.netplane import metadata as plane
from cumulo.netplane import netns
from cumulo.network.agent.state import DHCP_OWNER, _subnet, nic_fields, with_metadata_routes
from cumulo.network.l3_ports import ROUTER_INTERFACE
from cumulo.network.models import floating_ips, ip_allocations, networks, ports, subnets

LOG = logging.getLogger(__name__)

Documents = Callable[[str, list[dict[str, Any]]], Awaitable[dict[str, Any] | None]]

OPENSTACK_VERSIONS = ("2012-08-10", "2013-04-04", "2013-10-17", "2015-10-15", "2016-06-30", "2016-10-06",
                      "2017-02-22", "2018-08-27", "2020-10-14")
EC2_VERSIONS = ("1.0", "2007-01-19", "2007-03-01", "2007-08-29", "2007-10-10", "2007-12-15", "2008-02-01",
                "2008-09-01", "2009-04-04")
OPENSTACK_FILES = ("meta_data.json", "network_data.json", "vendor_data.json", "vendor_data2.json")
MAX_HEAD = 8192
READ_TIMEOUT = 10.0

Response = tuple[int, str, bytes]
_TEXT = "text/plain; charset=UTF-8"
_JSON = "application/json"
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


def _not_found() -> Response:
    return 404, _TEXT, b"404 Not Found\n\nThe resource could not be found.\n"


def _listing(items: list[str]) -> Response:
    return 200, _TEXT, "\n".join(items).encode()


def _json(doc: Any) -> Response:
    return 200, _JSON, json.dumps(doc, sort_keys=True).encode()


def _openstack(docs: dict[str, Any], parts: list[str]) -> Response:
    if not parts:
        return _listing([*OPENSTACK_VERSIONS, "latest"])
    version, rest = parts[0], parts[1:]
    if version != "latest" and version not in OPENSTACK_VERSIONS:
        return _not_found()
    user_data = docs.get("user_data")
    if not rest:
        return _listing([*OPENSTACK_FILES, *(["user_data"] if user_data is not None else [])])
    if len(rest) != 1:
        return _not_found()
    name = rest[0]
    if name == "meta_data.json":
        return _json(docs.get("meta_data") or {})
    if name == "network_data.json":
        return _json(docs.get("network_data") or {"links": [], "networks": [], "services": []})
    if name in ("vendor_data.json", "vendor_data2.json"):
        return _json(docs.get("vendor_data") or {})
    if name == "user_data" and user_data is not None:
        return 200, "application/octet-stream", bytes(user_data)
    return _not_found()


def _ec2_tree(docs: dict[str, Any]) -> dict[str, Any]:
    """The EC2 meta-data tree: a dict is a directory, a str a leaf."""
    meta = docs.get("meta_data") or {}
    keys = meta.get("public_keys") if isinstance(meta.get("public_keys"), dict) else {}
    hostname = str(docs.get("hostname") or meta.get("hostname") or "")
    tree: dict[str, Any] = {
        "ami-id": str(docs.get("image_id") or ""),
        "ami-launch-index": str(docs.get("launch_index") or 0),
        "ami-manifest-path": "FIXME",
        "hostname": hostname,
        "instance-action": "none",
        "instance-id": str(docs.get("ec2_id") or ""),
        "instance-type": str(docs.get("instance_type") or ""),
        "local-hostname": hostname,
        "local-ipv4": str(docs.get("local_ipv4") or ""),
        "placement": {"availability-zone": str(docs.get("availability_zone") or meta.get("availability_zone") or "")},
        "public-hostname": hostname,
        "public-ipv4": str(docs.get("public_ipv4") or ""),
        "reservation-id": str(docs.get("reservation_id") or ""),
        "security-groups": "\n".join(str(g) for g in docs.get("security_groups") or []),
    }
    if keys:
        tree["public-keys"] = {f"{i}={name}": {"openssh-key": str(data)}
                               for i, (name, data) in enumerate(sorted(keys.items()))}
    return tree


def _ec2(docs: dict[str, Any], parts: list[str]) -> Response:
    if not parts:
        items = ["meta-data/"]
        if docs.get("user_data") is not None:
            items.append("user-data")
        return _listing(items)
    if parts[0] == "user-data" and len(parts) == 1:
        user_data = docs.get("user_data")
        return (200, "application/octet-stream", bytes(user_data)) if user_data is not None else _not_found()
    if parts[0] != "meta-data":
        return _not_found()
    node: Any = _ec2_tree(docs)
    for part in parts[1:]:
        if not isinstance(node, dict):
            return _not_found()
        if part.isdigit() and node and all("=" in k for k in node):  # public-keys/0
            part = next((k for k in node if k.split("=", 1)[0] == part), part)
        if part not in node:
            return _not_found()
        node = node[part]
    if isinstance(node, dict):
        if parts[-1] == "public-keys":
            return _listing(sorted(node))
        return _listing(sorted(f"{k}/" if isinstance(v, dict) else k for k, v in node.items()))
    return 200, _TEXT, str(node).encode()


def route(docs: dict[str, Any], path: str) -> Response:
    """The response for `path` (no query) of an identified instance's documents."""
    parts = [p for p in path.split("/") if p]
    if ".." in parts or "." in parts:
        return _not_found()
    if not parts:
        return _listing([*EC2_VERSIONS, "latest", "openstack"])
    if parts[0] == "openstack":
        return _openstack(docs, parts[1:])
    if parts[0] == "latest" or parts[0] in EC2_VERSIONS:
        return _ec2(docs, parts[1:])
    return _not_found()


async def instance_at(db: Database, network_id: str, ip: str) -> tuple[str, str, str | None] | None:
    """(instance uuid, port id, floating IP or None) of the server port with fixed IP `ip` on
    network `network_id`; None when no server's port has it."""
    try:
        addr = str(ipaddress.ip_address(ip))
    except ValueError:
        return None
    q = (sa.select(ports.c.id, ports.c.device_id, ports.c.device_owner)
         .select_from(ip_allocations.join(ports, ports.c.id == ip_allocations.c.port_id))
         .where(ip_allocations.c.network_id == network_id, ip_allocations.c.ip_address == addr,
                ports.c.network_id == network_id))
    async with db.read() as conn:
        row = (await conn.execute(q)).first()
        if row is None or not str(row.device_owner or "").startswith("compute:") or not row.device_id:
            return None
        fip = (await conn.execute(sa.select(floating_ips.c.floating_ip_address).where(
            floating_ips.c.port_id == row.id, floating_ips.c.fixed_ip_address == addr).limit(1))).first()
    return str(row.device_id), str(row.id), (str(fip[0]) if fip else None)


async def instance_nics(db: Database, instance_uuid: str) -> list[dict[str, Any]]:
    """The instance's ports as NicSpec dicts (what plug_ports returns), oldest port first."""
    async with db.read() as conn:
        port_rows = list(await conn.execute(
            sa.select(ports).where(ports.c.device_id == instance_uuid, ports.c.device_owner.like("compute:%"))
            .order_by(ports.c.created_at, ports.c.id)))
        if not port_rows:
            return []
        net_ids = sorted({p.network_id for p in port_rows})
        # the networks' DHCP and router ports tell which subnets are isolated (their metadata route)
        infra = list(await conn.execute(sa.select(ports).where(
            ports.c.network_id.in_(net_ids), ports.c.device_owner.in_([DHCP_OWNER, ROUTER_INTERFACE]))))
        ids = [p.id for p in [*port_rows, *infra]]
        ips: dict[str, list[tuple[str, str]]] = {i: [] for i in ids}
        for a in await conn.execute(sa.select(ip_allocations).where(ip_allocations.c.port_id.in_(ids))
                                    .order_by(ip_allocations.c.id)):
            ips[a.port_id].append((a.subnet_id, a.ip_address))
        subnet_of = with_metadata_routes({r.id: _subnet(r) for r in await conn.execute(
            sa.select(subnets).where(subnets.c.network_id.in_(net_ids)))}, infra, ips, port_rows[0].binding_host_id)
        mtu = {r.id: int(r.mtu or 1500) for r in await conn.execute(
            sa.select(networks.c.id, networks.c.mtu).where(networks.c.id.in_(net_ids)))}
    out = []
    for p in port_rows:
        nic = nic_fields(p, ips[p.id], subnet_of, mtu.get(p.network_id, 1500))
        out.append({k: v for k, v in nic.items() if not k.endswith("_")})
    return out


class MetadataService:
    """The metadata listeners of this host's networks, served on the running event loop."""

    def __init__(self, db: Database, documents: Documents) -> None:
        self.db = db
        self.documents = documents
        self._servers: dict[str, tuple[asyncio.Server, tuple[int, int] | None]] = {}
        self._lock = asyncio.Lock()

    async def respond(self, network_id: str, ip: str, path: str) -> Response:
        """The response to a GET of `path` from `ip` on network `network_id`."""
        found = await instance_at(self.db, network_id, ip)
        if found is None:
            return _not_found()
        uuid, _port, fip = found
        docs = await self.documents(uuid, await instance_nics(self.db, uuid))
        if docs is None or str(docs.get("uuid", uuid)) != uuid:
            return _not_found()
        docs = {**docs, "local_ipv4": str(ipaddress.ip_address(ip)), "public_ipv4": fip or ""}
        return route(docs, path)

    async def serve(self, network_id: str) -> None:
        """Make the network's namespace answer on 169.254.169.254:80 (idempotent: a live listener
        of the same namespace is kept; one of a namespace since recreated is replaced). A failure
        is logged, not raised: the agent's sync goes on, and its next run tries again."""
        ns = netns.network_ns(network_id)
        async with self._lock:
            current = self._servers.get(network_id)
            ident = plane.identity(ns)
            if current is not None and current[0].is_serving() and current[1] == ident:
                return
            if current is not None:
                await self._close(current[0])
                self._servers.pop(network_id, None)
            try:
                sock = await plane.ensure(ns)
            except Exception:  # the network works without it; the agent's next sync tries again
                LOG.exception("metadata service for network %s: cannot listen in %s", network_id, ns)
                return
            try:
                server = await asyncio.start_server(partial(self._handle, network_id), sock=sock)
            except BaseException:
                sock.close()
                raise
            self._servers[network_id] = (server, plane.identity(ns))

    async def stop(self, network_id: str) -> None:
        """Close the network's listener (before its namespace is deleted: the socket holds it)."""
        async with self._lock:
            current = self._servers.pop(network_id, None)
        if current is not None:
            await self._close(current[0])

    def serving(self) -> list[str]:
        return sorted(self._servers)

    async def close(self) -> None:
        async with self._lock:
            servers = list(self._servers.values())
            self._servers.clear()
        for server, _ in servers:
            await self._close(server)

    @staticmethod
    async def _close(server: asyncio.Server) -> None:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)

    async def _handle(self, network_id: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            peer = writer.get_extra_info("peername")
            ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
            status, ctype, body, head = 400, _TEXT, b"400 Bad Request\n", False
            try:
                raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
                raw = b""
            if raw and len(raw) <= MAX_HEAD:
                line = raw.split(b"\r\n", 1)[0].decode("latin-1")
                fields = line.split(" ")
                if len(fields) == 3 and fields[2].startswith("HTTP/"):
                    method, target = fields[0], fields[1]
                    path = target.split("?", 1)[0]
                    if method not in ("GET", "HEAD"):
                        status, ctype, body = 405, _TEXT, b"405 Method Not Allowed\n"
                    elif not path.startswith("/"):
                        status, ctype, body = 400, _TEXT, b"400 Bad Request\n"
                    else:
                        head = method == "HEAD"
                        try:
                            status, ctype, body = await self.respond(network_id, ip, path)
                        except Exception:
                            LOG.exception("metadata request %s from %s on %s failed", path, ip, network_id)
                            status, ctype, body = _not_found()
            reason = _REASONS.get(status, "Error")
            out = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                   "Connection: close\r\n\r\n").encode() + (b"" if head else body)
            writer.write(out)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.drain(), READ_TIMEOUT)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
