"""The security group names a server records (instances.security_groups), for server create and the
addSecurityGroup / removeSecurityGroup actions.

Until the network service exists (issue 10) a project has one security group, "default" (as Neutron
makes for every project), plus any name a server of it already carries. Nova with Neutron answers
404 for an unknown group and 400 for a group that exists but is not on the server (remove).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.compute.models import instances
from cumulo.db import Database, utcnow

DEFAULT = "default"


class SecurityGroupService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def unknown(self, project: str, names: list[str]) -> list[str]:
        """The names the project has no group by: not "default" nor carried by a server of it."""
        wanted = [n for n in names if n != DEFAULT]
        if not wanted:
            return []
        async with self.db.read() as conn:
            rows = await conn.execute(sa.select(instances.c.security_groups).where(instances.c.project_id == project,
                                                                                 instances.c.deleted.is_(False)))
            carried = {g for (groups,) in rows for g in (groups or [])}
        return [n for n in wanted if n not in carried]

    async def known(self, project: str, name: str) -> bool:
        return not await self.unknown(project, [name])

    async def check_known(self, project: str, names: list[str]) -> None:
        """A server is created with groups the project has, else 400 (Nova: SecurityGroupNotFound)."""
        unknown = await self.unknown(project, names)
        if unknown:
            raise errors.Invalid(f"Security group {unknown[0]} not found.")

    async def add(self, row: dict[str, Any], name: str) -> None:
        """Add a group to a server; one it already has changes nothing, as Neutron's port update."""
        if name not in (row["security_groups"] or []):
            if not await self.known(row["project_id"], name):
                raise errors.NotFound(f"Security group {name} not found.")
            await self._change(row, lambda groups: groups if name in groups else [*groups, name])

    async def remove(self, row: dict[str, Any], name: str) -> None:
        if name not in (row["security_groups"] or []):
            if await self.known(row["project_id"], name):
                raise errors.Invalid(f"Security group {name} not assigned to the instance {row['uuid']}")
            raise errors.NotFound(f"Security group {name} not found.")
        await self._change(row, lambda groups: [g for g in groups if g != name])

    async def _change(self, row: dict[str, Any], change: Callable[[list[str]], list[str]]) -> None:
        """Compare-and-swap on updated_at, retried when a concurrent update won."""
        for _ in range(5):
            new = change(list(row["security_groups"] or []))
            async with self.db.write() as conn:
                res = await conn.execute(
                    sa.update(instances)
                    .where(instances.c.uuid == row["uuid"], instances.c.deleted.is_(False), instances.c.updated_at == row["updated_at"])
                    .values(security_groups=new, updated_at=utcnow())
                )
                if res.rowcount:
                    return
                fresh = (await conn.execute(sa.select(instances).where(instances.c.uuid == row["uuid"],
                                                                       instances.c.deleted.is_(False)))).mappings().first()
            if fresh is None:
                raise errors.NotFound(f"Instance {row['uuid']} could not be found.")
            row = dict(fresh)
        raise errors.Conflict("The server's security groups changed concurrently; try again.")
