"""A server's security groups, on the network service's groups (Nova with Neutron).

The groups are the project's Neutron security groups, found by name (Nova's lookup; "default" is
made on first use as Neutron does). A server's groups are its ports' groups: server create puts the
requested ones on the ports it makes, addSecurityGroup / removeSecurityGroup change every port of the
server, and the names are cached in instances.security_groups (what the server views show). Nova
answers 404 for an unknown group, 400 for removing a group the server does not have, and 400 on
create for an unknown name. Without a network service only "default" exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.compute import netports
from cumulo.compute.models import instances
from cumulo.context import RequestContext
from cumulo.db import Database, utcnow

DEFAULT = "default"
_SYSTEM = RequestContext.system()


class SecurityGroupService:
    def __init__(self, db: Database, network: Any = None) -> None:
        self.db = db
        self.network = network  # the NetworkService (NetworkPorts + GroupDirectory), or None

    async def groups(self, project: str) -> list[dict[str, Any]]:
        """The project's Neutron groups ([] without a network service)."""
        if self.network is None:
            return []
        return list(await self.network.list_groups(_SYSTEM, project_id=project))

    async def by_name(self, project: str, names: Sequence[str]) -> dict[str, dict[str, Any]]:
        """name → the project's group of that name (a name used twice is 409, as Nova's NoUniqueMatch)."""
        found: dict[str, dict[str, Any]] = {}
        groups = await self.groups(project)
        for name in names:
            matches = [g for g in groups if g["name"] == name or g["id"] == name]
            if len(matches) > 1:
                raise errors.Conflict(f"Multiple security groups found matching '{name}'. Use an ID to be more specific.")
            if matches:
                found[name] = matches[0]
        return found

    async def check_known(self, project: str, names: list[str]) -> None:
        """A server is created with groups the project has, else 400 (Nova: SecurityGroupNotFound)."""
        if self.network is None:
            unknown = [n for n in names if n != DEFAULT]
        elif names == [DEFAULT]:  # every create that names no group: one read (the id), not the groups
            # with their rules and tags. A project has one "default" (Neutron refuses a second),
            # made on first use here as by the listing.
            unknown = [] if await self.network.ensure_default(_SYSTEM, project) else names
        else:
            known = await self.by_name(project, names)
            unknown = [n for n in names if n not in known]
        if unknown:
            raise errors.Invalid(f"Security group {unknown[0]} not found.")

    async def apply_on_create(self, project: str, names: list[str], ports: Sequence[dict[str, Any]]) -> None:
        """Put the requested groups on the ports a create made (the network service gave them "default")."""
        if self.network is None or not ports or names == [DEFAULT]:
            return
        ids = [g["id"] for g in (await self.by_name(project, names)).values()]
        for port in ports:
            await self.network.update_port(_SYSTEM, port["id"], {"security_groups": ids})

    async def add(self, row: dict[str, Any], name: str) -> None:
        """Add a group to a server (each of its ports); one it already has changes nothing."""
        group = (await self.by_name(row["project_id"], [name])).get(name)
        if group is None and not (self.network is None and name == DEFAULT):
            raise errors.NotFound(f"Security group {name} not found.")
        await self._change(row, group, add=True)

    async def remove(self, row: dict[str, Any], name: str) -> None:
        group = (await self.by_name(row["project_id"], [name])).get(name)
        if group is None and not (self.network is None and name == DEFAULT):
            raise errors.NotFound(f"Security group {name} not found.")
        if group is not None and self.network is not None:
            on_ports = {g for p in await self.network.ports_of_device(row["uuid"]) for g in p.get("security_groups") or []}
            if group["id"] not in on_ports:
                raise errors.Invalid(f"Security group {name} not assigned to the instance {row['uuid']}")
        elif name not in (row["security_groups"] or []):
            raise errors.Invalid(f"Security group {name} not assigned to the instance {row['uuid']}")
        await self._change(row, group, add=False)

    async def _change(self, row: dict[str, Any], group: dict[str, Any] | None, *, add: bool) -> None:
        if self.network is not None and group is not None:
            for port in await self.network.ports_of_device(row["uuid"]):
                current = list(port.get("security_groups") or [])
                wanted = ([*current, group["id"]] if group["id"] not in current else current) if add else \
                    [g for g in current if g != group["id"]]
                if wanted != current:
                    await self.network.update_port(_SYSTEM, port["id"], {"security_groups": wanted})
        await self.refresh(row["uuid"], row["project_id"], fallback=(group or {}).get("name", DEFAULT), add=add)

    async def server_groups(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        """The Neutron groups on the server's ports (the recorded names without a network service or port)."""
        if self.network is None:
            return []
        ids = {g for p in await self.network.ports_of_device(row["uuid"]) for g in p.get("security_groups") or []}
        return [g for g in await self.groups(row["project_id"]) if g["id"] in ids]

    async def refresh(self, uuid: str, project: str, *, fallback: str = DEFAULT, add: bool = True) -> None:
        """instances.security_groups from the ports' groups (a server without ports keeps a list of
        names, changed by `fallback`)."""
        names: list[str] | None = None
        if self.network is not None and netports.port_ids_of(await self._row(uuid)):
            names = sorted({g["name"] for g in await self.server_groups({"uuid": uuid, "project_id": project})})
        async with self.db.write() as conn:
            current = (await conn.execute(sa.select(instances.c.security_groups).where(
                instances.c.uuid == uuid, instances.c.deleted.is_(False)))).scalar_one_or_none()
            if names is None:
                groups = list(current or [])
                names = ([*groups, fallback] if fallback not in groups else groups) if add else \
                    [g for g in groups if g != fallback]
            await conn.execute(sa.update(instances).where(instances.c.uuid == uuid, instances.c.deleted.is_(False))
                               .values(security_groups=names, updated_at=utcnow()))

    async def _row(self, uuid: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(instances.c.system_metadata).where(instances.c.uuid == uuid))).first()
        return {"system_metadata": row[0] if row else {}}
