"""Keystone's OS-EC2 credentials: an access/secret pair for a user on one project.

Keystone shows the secret again on GET (it is what a client signs requests with, and what a
signature check needs), so it cannot be hashed: it is encrypted at rest with Fernet (AES-128-CBC
plus HMAC-SHA256), as Keystone encrypts its credential blobs. The key is a file in the state dir
(`identity-credential.key`, mode 0600), made on first use. With several API processes, each needs
the same key file. Losing it makes the stored secrets unreadable (the credentials then answer 500
with a clear log line, never the ciphertext).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken

from cumulo import errors
from cumulo.db import Database
from cumulo.identity.models import ec2_credentials, projects, role_assignments

LOG = logging.getLogger(__name__)
KEY_FILE = "identity-credential.key"
# Bounds a user's list (and the table) the way Keystone's credential quota does.
USER_LIMIT = 100


def _load_or_make_key(path: Path) -> bytes:
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = Fernet.generate_key()
    tmp = path.with_name(path.name + f".{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    try:
        os.link(tmp, path)  # atomic and never replaces a key another process wrote first
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_bytes().strip()


class EC2Credentials:
    def __init__(self, db: Database, state_dir: Path) -> None:
        self.db = db
        self.key_path = state_dir / KEY_FILE
        self._fernet: Fernet | None = None
        self._lock = asyncio.Lock()

    async def _cipher(self) -> Fernet:
        if self._fernet is None:
            async with self._lock:
                if self._fernet is None:
                    self._fernet = Fernet(await asyncio.to_thread(_load_or_make_key, self.key_path))
        return self._fernet

    async def create(self, user_id: str, project_id: str) -> dict[str, Any]:
        access, secret = secrets.token_hex(16), secrets.token_hex(16)  # Keystone: uuid4 hex each
        encrypted = (await self._cipher()).encrypt(secret.encode()).decode()
        async with self.db.write() as conn:
            if await conn.scalar(sa.select(projects.c.id).where(projects.c.id == project_id)) is None:
                raise errors.NotFound(f"Could not find project: {project_id}.")
            held = await conn.scalar(
                sa.select(sa.func.count()).where(
                    role_assignments.c.user_id == user_id, role_assignments.c.project_id == project_id
                )
            )
            if not held:
                raise errors.Forbidden(
                    f"You are not authorized to perform the requested action: user {user_id} has no role"
                    f" on project {project_id}."
                )
            count = await conn.scalar(sa.select(sa.func.count()).where(ec2_credentials.c.user_id == user_id))
            if int(count or 0) >= USER_LIMIT:
                raise errors.Forbidden(f"The user already has the maximum of {USER_LIMIT} EC2 credentials.")
            await conn.execute(
                ec2_credentials.insert().values(
                    access=access, user_id=user_id, project_id=project_id, secret_encrypted=encrypted
                )
            )
        return {"access": access, "user_id": user_id, "project_id": project_id, "secret": secret}

    async def for_user(self, user_id: str) -> list[dict[str, Any]]:
        query = (
            sa.select(ec2_credentials)
            .where(ec2_credentials.c.user_id == user_id)
            .order_by(ec2_credentials.c.created_at, ec2_credentials.c.access)
        )
        async with self.db.read() as conn:
            rows = list(await conn.execute(query))
        return [await self._plain(r) for r in rows]

    async def get(self, user_id: str, access: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(ec2_credentials).where(ec2_credentials.c.access == access))).first()
        if row is None or row.user_id != user_id:
            raise errors.NotFound("EC2 access key not found.")
        return await self._plain(row)

    async def delete(self, user_id: str, access: str) -> None:
        async with self.db.write() as conn:
            res = await conn.execute(
                ec2_credentials.delete().where(
                    ec2_credentials.c.access == access, ec2_credentials.c.user_id == user_id
                )
            )
        if res.rowcount == 0:
            raise errors.NotFound("EC2 access key not found.")

    async def _plain(self, row: Any) -> dict[str, Any]:
        try:
            secret = (await self._cipher()).decrypt(row.secret_encrypted.encode()).decode()
        except InvalidToken:
            LOG.error("EC2 credential %s: cannot decrypt its secret with %s (key replaced?)", row.access, self.key_path)
            raise errors.CumuloError("The EC2 credential's secret cannot be read.") from None
        return {"access": row.access, "user_id": row.user_id, "project_id": row.project_id, "secret": secret}
