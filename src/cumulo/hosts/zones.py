"""The zone an aggregate gives a compute host: its "availability_zone" metadata key (Nova's rule)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.hosts.models import aggregate_hosts, aggregate_metadata

AZ_KEY = "availability_zone"


async def zone_of_host(conn: AsyncConnection, host: str) -> str | None:
    """The zone an aggregate gives this compute host, or None (the default zone then)."""
    q = (
        sa.select(aggregate_metadata.c.value)
        .select_from(aggregate_metadata.join(aggregate_hosts, aggregate_hosts.c.aggregate_id == aggregate_metadata.c.aggregate_id))
        .where(aggregate_hosts.c.host == host, aggregate_metadata.c.key == AZ_KEY)
        .order_by(aggregate_metadata.c.aggregate_id)
        .limit(1)
    )
    return (await conn.execute(q)).scalar()
