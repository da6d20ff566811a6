"""Task rows (`paas_tasks`): the lease that lets exactly one engine run a task, and the final status.

An engine is named `<host>:<pid>:<random>:<kernel>` (`make_owner`; `<kernel>` names the running
kernel and pid namespace, so that a pid is only ever judged where it means something: two machines,
or two containers, may share a host name). It takes a task with one compare-and-swap
(`take_lease`): the task is QUEUED or RUNNING and unowned, owned by this very engine, past its
lease, or owned by a dead engine of this host (a pid of this kernel and pid namespace that no
longer runs, or an engine of this process that stopped); another machine's engine only by its
lease. It renews the lease (`heartbeat`) while it runs the task; a
heartbeat that finds the lease gone means another engine took over, and the runner stops.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
import secrets
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.context import RequestContext, expand_roles
from cumulo.db import Database, utcnow
from cumulo.paas.engine.base import TaskStatus
from cumulo.paas.models import paas_tasks

T = paas_tasks.c
ACTIVE = (TaskStatus.QUEUED.value, TaskStatus.RUNNING.value)
# The engines of this process that run (their owner names): any other `<host>:<this pid>:...`
# owner is an engine of this process that stopped or was cancelled.
LIVE_OWNERS: set[str] = set()


class LeaseLost(Exception):
    """This engine no longer holds the task: another one took it over and goes on."""


@functools.cache
def kernel_id() -> str:
    """This kernel's boot and this process's pid namespace, hashed (12 hex digits): pids compare
    only between processes with the same one."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    try:
        pid_ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pid_ns = ""
    return hashlib.sha256(f"{boot}|{pid_ns}".encode()).hexdigest()[:12]


def make_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}:{kernel_id()}"


def owner_is_dead(owner: str | None) -> bool:
    """Whether `owner` is an engine of THIS host that no longer runs (None: nobody owns it)."""
    if not owner:
        return True
    host, _, rest = owner.partition(":")
    pid_text, _, rest = rest.partition(":")
    _, _, kernel = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False  # another host's engine: only its lease tells
    if kernel and kernel != kernel_id():
        return False  # the same host name on another machine (or pid namespace): only its lease tells
    pid = int(pid_text)
    if pid == os.getpid():
        return owner not in LIVE_OWNERS
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def task_ctx(task: Mapping[str, Any]) -> RequestContext:
    """The caller's context rebuilt from the task row (no token: the engine acts for the caller
    with the roles it had when it asked)."""
    return RequestContext(
        user_id=task["user_id"], project_id=task["project_id"], roles=expand_roles(list(task.get("roles") or [])),
        domain_id=task.get("domain_id") or "default",
        **({"request_id": task["request_id"]} if task.get("request_id") else {}),
    )


async def insert_task(conn: AsyncConnection, ctx: RequestContext, *, kind: str, description: str,
                      instance_id: str | None, instance_name: str | None, tier: str | None = None,
                      params: Mapping[str, Any] | None = None, callback: str | None = None,
                      result_href: str | None = None) -> int:
    result = await conn.execute(sa.insert(paas_tasks).values(
        project_id=ctx.project_id or "", user_id=ctx.user_id or "", domain_id=ctx.domain_id or "default",
        roles=sorted(ctx.roles), request_id=ctx.request_id, kind=kind, status=TaskStatus.QUEUED.value,
        description=description, env_instance_id=instance_id, env_instance_name=instance_name, tier=tier,
        params=dict(params or {}), callback=callback, result_href=result_href, start_time=utcnow(),
    ))
    pk = result.inserted_primary_key
    assert pk is not None
    return int(pk[0])


async def get(db: Database, task_id: int) -> dict[str, Any] | None:
    async with db.read() as conn:
        row = (await conn.execute(sa.select(paas_tasks).where(T.id == task_id))).mappings().first()
    return dict(row) if row else None


async def take_lease(db: Database, task_id: int, owner: str, lease: float) -> dict[str, Any] | None:
    """The task row if this engine now holds it (status RUNNING), else None (final, or another
    live engine holds it)."""
    row = await get(db, task_id)
    if row is None or row["status"] not in ACTIVE:
        return None
    now = utcnow()
    current = row["owner"]
    if current and current != owner and row["lease_until"] is not None and row["lease_until"] >= now \
            and not owner_is_dead(current):
        return None
    holder = T.owner.is_(None) if current is None else T.owner == current
    # the lease as read too: a holder's heartbeat between the read and this write keeps its task
    held_until = T.lease_until.is_(None) if row["lease_until"] is None else T.lease_until == row["lease_until"]
    async with db.write() as conn:
        done = await conn.execute(
            sa.update(paas_tasks).where(T.id == task_id, T.status.in_(ACTIVE), holder, held_until)
            .values(owner=owner, lease_until=now + dt.timedelta(seconds=lease), status=TaskStatus.RUNNING.value)
        )
    if not done.rowcount:
        return None  # lost the race to another engine
    return await get(db, task_id)


async def heartbeat(db: Database, task_id: int, owner: str, lease: float) -> bool:
    """Renew the lease; False when this engine no longer holds the task."""
    async with db.write() as conn:
        done = await conn.execute(
            sa.update(paas_tasks).where(T.id == task_id, T.owner == owner, T.status == TaskStatus.RUNNING.value)
            .values(lease_until=utcnow() + dt.timedelta(seconds=lease))
        )
    return bool(done.rowcount)


async def set_error(db: Database, task_id: int, owner: str, error: Mapping[str, Any]) -> bool:
    """Record the error while the task still runs (its rollback)."""
    async with db.write() as conn:
        done = await conn.execute(
            sa.update(paas_tasks).where(T.id == task_id, T.owner == owner).values(error=dict(error))
        )
    return bool(done.rowcount)


async def recoverable(db: Database) -> list[dict[str, Any]]:
    """Tasks QUEUED or RUNNING that no live engine holds: unowned, past their lease, or owned by
    a dead engine of this host."""
    now = utcnow()
    async with db.read() as conn:
        rows = (await conn.execute(sa.select(paas_tasks).where(T.status.in_(ACTIVE)).order_by(T.id))).mappings().all()
    return [dict(r) for r in rows
            if r["owner"] is None or r["lease_until"] is None or r["lease_until"] < now or owner_is_dead(r["owner"])]


async def undelivered_callbacks(db: Database) -> list[dict[str, Any]]:
    """Final tasks with a callback never tried (an engine stopped between the final write and the
    POST)."""
    async with db.read() as conn:
        rows = (await conn.execute(sa.select(paas_tasks).where(
            T.status.not_in(ACTIVE), T.callback.is_not(None), T.callback_state.is_(None)).order_by(T.id).limit(100)
        )).mappings().all()
    return [dict(r) for r in rows]


async def active_on_instance(conn: AsyncConnection, instance_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(
        sa.select(T.id, T.kind, T.status).where(T.env_instance_id == instance_id, T.status.in_(ACTIVE)).order_by(T.id)
    )).mappings().first()
    return dict(row) if row else None
