"""Volume transfers (/os-volume-transfer, and /volume-transfers from 3.55): one project hands an
available volume to another, which accepts it with the transfer's id and its one-time auth key.

A transfer puts the volume in `awaiting-transfer` until it is accepted (the volume, and with it
its snapshots unless `no_snapshots` (3.55), moves to the accepting project and user, within that
project's quota) or deleted (the volume is available again). Only a hash of the auth key is kept
(salted SHA-256); the key is shown once, in the create answer. The transfer's fields live in the
volume's admin metadata under `transfer_*` keys: a volume has at most one open transfer, and an
accepted or deleted transfer leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.db import new_uuid, utcnow
from cumulo.volume import records, states
from cumulo.volume.base import authorize, check_uuid, owns, wants_all_tenants
from cumulo.volume.models import snapshots, volume_admin_metadata, volumes
from cumulo.volume.quotas import VolumeQuotas

KEYS = ("transfer_id", "transfer_name", "transfer_salt", "transfer_hash", "transfer_created_at",
        "transfer_no_snapshots")
AUTH_KEY_LENGTH = 16  # Cinder's volume_transfer_key_length


def _hash(salt: str, key: str) -> str:
    return hashlib.sha256(f"{salt}{key}".encode()).hexdigest()


class VolumeTransfers(VolumeQuotas):
    """Create, list, show, delete and accept volume transfers."""

    async def _transfer_rows(self, conn: AsyncConnection, volume_ids: list[str] | None = None) -> list[dict[str, Any]]:
        """Every open transfer (of `volume_ids`), with its volume's project."""
        q = (sa.select(volume_admin_metadata.c.volume_id, volume_admin_metadata.c.key, volume_admin_metadata.c.value)
             .where(volume_admin_metadata.c.key.in_(KEYS)))
        if volume_ids is not None:
            q = q.where(volume_admin_metadata.c.volume_id.in_(volume_ids))
        found: dict[str, dict[str, str]] = {}
        for vid, key, value in await conn.execute(q):
            found.setdefault(vid, {})[key] = value
        if not found:
            return []
        projects = dict((await conn.execute(sa.select(volumes.c.id, volumes.c.project_id)
                                            .where(volumes.c.id.in_(list(found))))).all())
        out = []
        for vid, kv in found.items():
            if "transfer_id" not in kv or vid not in projects:
                continue
            out.append({"id": kv["transfer_id"], "volume_id": vid, "name": kv.get("transfer_name") or None,
                        "created_at": kv.get("transfer_created_at"), "source_project_id": projects[vid],
                        "no_snapshots": kv.get("transfer_no_snapshots") == "True",
                        "salt": kv.get("transfer_salt", ""), "hash": kv.get("transfer_hash", "")})
        return sorted(out, key=lambda t: (t["created_at"] or "", t["id"]))

    async def _transfer(self, conn: AsyncConnection, transfer_id: str) -> dict[str, Any]:
        if not isinstance(transfer_id, str) or len(transfer_id) > 64:
            raise errors.NotFound(f"Transfer {str(transfer_id)[:64]} could not be found.")
        vid = await conn.scalar(sa.select(volume_admin_metadata.c.volume_id).where(
            volume_admin_metadata.c.key == "transfer_id", volume_admin_metadata.c.value == transfer_id))
        found = await self._transfer_rows(conn, [vid]) if vid is not None else []
        if not found:
            raise errors.NotFound(f"Transfer {transfer_id} could not be found.")
        return found[0]

    @staticmethod
    async def _drop(conn: AsyncConnection, volume_id: str) -> None:
        await conn.execute(volume_admin_metadata.delete().where(
            volume_admin_metadata.c.volume_id == volume_id, volume_admin_metadata.c.key.in_(KEYS)))

    async def create_transfer(self, ctx: RequestContext, body: Any, *, no_snapshots_allowed: bool) -> dict[str, Any]:
        """The new transfer, with its auth key (shown this once)."""
        authorize(ctx, "volume:update")
        t = records.unwrap(body, "transfer")
        volume_id = check_uuid(t.get("volume_id"), "volume_id")
        name = records.text(t.get("name"), "name")
        no_snapshots = False
        if no_snapshots_allowed and "no_snapshots" in t:
            no_snapshots = records.boolean(t["no_snapshots"], "no_snapshots")
        key = secrets.token_urlsafe(AUTH_KEY_LENGTH)[:AUTH_KEY_LENGTH]
        salt = secrets.token_hex(8)
        transfer_id = new_uuid()
        now = records_now()
        async with self.db.write() as conn:
            row = await self.volume_row(conn, ctx, volume_id)
            if row.status != states.AVAILABLE:
                raise errors.Invalid(f"Invalid volume: Status of volume must be available, but current status is: {row.status}.")
            if not no_snapshots:
                bad = await conn.scalar(sa.select(snapshots.c.id).where(
                    snapshots.c.volume_id == row.id, snapshots.c.status != states.AVAILABLE))
                if bad is not None:
                    raise errors.Invalid("Invalid volume: Volume's snapshots must be available to transfer it.")
            await states.transition(conn, volumes, row.id, {states.AVAILABLE}, {"status": states.AWAITING_TRANSFER})
            await records.write_kv(conn, volume_admin_metadata, "volume_id", row.id, {
                "transfer_id": transfer_id, "transfer_name": name or "", "transfer_salt": salt,
                "transfer_hash": _hash(salt, key), "transfer_created_at": now,
                "transfer_no_snapshots": str(no_snapshots)}, replace=False)
            transfer = (await self._transfer_rows(conn, [row.id]))[0]
        return {**transfer, "auth_key": key}

    async def list_transfers(self, ctx: RequestContext, params: dict[str, str]) -> list[dict[str, Any]]:
        """The caller's project's open transfers (the admin's with all_tenants)."""
        authorize(ctx, "volume:get")
        all_tenants = wants_all_tenants(ctx, params)
        async with self.db.read() as conn:
            found = await self._transfer_rows(conn)
        return [t for t in found if all_tenants or t["source_project_id"] == ctx.project_id]

    async def get_transfer(self, ctx: RequestContext, transfer_id: str) -> dict[str, Any]:
        authorize(ctx, "volume:get")
        async with self.db.read() as conn:
            transfer = await self._transfer(conn, transfer_id)
        if not owns(ctx, transfer["source_project_id"]):
            raise errors.NotFound(f"Transfer {transfer_id} could not be found.")
        return transfer

    async def delete_transfer(self, ctx: RequestContext, transfer_id: str) -> None:
        """The volume is available again."""
        authorize(ctx, "volume:update")
        async with self.db.write() as conn:
            transfer = await self._transfer(conn, transfer_id)
            if not owns(ctx, transfer["source_project_id"]):
                raise errors.NotFound(f"Transfer {transfer_id} could not be found.")
            await self._drop(conn, transfer["volume_id"])
            await states.transition(conn, volumes, transfer["volume_id"], {states.AWAITING_TRANSFER},
                                    {"status": states.AVAILABLE})

    async def accept_transfer(self, ctx: RequestContext, transfer_id: str, body: Any) -> dict[str, Any]:
        """Move the volume (and its snapshots unless no_snapshots) to the caller's project."""
        authorize(ctx, "volume:create")
        a = records.unwrap(body, "accept")
        key = a.get("auth_key")
        if not isinstance(key, str) or not key:
            raise errors.Invalid("Invalid input received: auth_key must be given to accept a transfer.")
        project, user = ctx.project_id or "", ctx.user_id
        async with self.db.write() as conn:
            transfer = await self._transfer(conn, transfer_id)
            if not hmac.compare_digest(_hash(transfer["salt"], key), transfer["hash"]):
                raise errors.Invalid(f"Invalid auth key: Attempt to transfer {transfer_id} with invalid auth key.")
            vol = (await conn.execute(sa.select(volumes).where(volumes.c.id == transfer["volume_id"]))).one()
            snaps = [] if transfer["no_snapshots"] else list((await conn.execute(
                sa.select(snapshots.c.id, snapshots.c.size).where(snapshots.c.volume_id == vol.id))).all())
            adding = {"volumes": 1, "gigabytes": vol.size + sum(s.size for s in snaps)}
            if snaps:
                adding["snapshots"] = len(snaps)
            if vol.project_id != project:
                await self.check_quota(conn, project, **adding)
            await states.transition(conn, volumes, vol.id, {states.AWAITING_TRANSFER},
                                    {"status": states.AVAILABLE, "project_id": project, "user_id": user})
            if snaps:
                await conn.execute(snapshots.update().where(snapshots.c.id.in_([s.id for s in snaps]))
                                   .values(project_id=project, user_id=user, updated_at=utcnow()))
            await self._drop(conn, vol.id)
        return transfer


def records_now() -> str:
    """A transfer's created_at as stored (ISO 8601, Cinder's rendering)."""
    return utcnow().strftime("%Y-%m-%dT%H:%M:%S.%f")
