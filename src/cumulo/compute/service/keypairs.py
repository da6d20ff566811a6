"""Key pairs: generation (RSA like Nova, or ed25519), import with real parsing, fingerprints, storage.

Keypairs belong to a user. SSH fingerprints are the MD5 of the key blob in colon hex (as Nova and
`ssh-keygen -E md5` print them); x509 fingerprints are the SHA1 of the certificate.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
from typing import Any

import sqlalchemy as sa
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo.compute.models import key_pairs
from cumulo.compute.service.quotas import QuotaEngine
from cumulo.conf import Settings
from cumulo.db import Database, utcnow
from cumulo.errors import Conflict, Invalid, NotFound

KEY_TYPES = ("ssh", "x509")
# Cumulo extension: which algorithm a generated SSH key uses (Nova always generates RSA 2048).
ALGORITHMS = ("rsa", "ed25519")
RSA_BITS = 2048
# OpenSSH public key types accepted for import.
SSH_KEY_TYPES = ("ssh-rsa", "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521")
GENERATED_COMMENT = "Generated-by-Cumulo"


def _colon_hex(digest: str) -> str:
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def ssh_fingerprint(public_key: str) -> str:
    """MD5 fingerprint of an OpenSSH RSA, ed25519 or ECDSA public key; Invalid if it does not parse."""
    try:
        # Only the accepted types reach the parser (cryptography warns about, and will drop, DSA).
        if public_key.strip().split(None, 1)[0] not in SSH_KEY_TYPES:
            raise ValueError("unsupported key type")
        key = serialization.load_ssh_public_key(public_key.strip().encode("utf-8"))
        if not isinstance(key, rsa.RSAPublicKey | ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
            raise ValueError("unsupported key type")
        blob = base64.b64decode(public_key.strip().split()[1], validate=True)
    except (ValueError, IndexError, TypeError, binascii.Error, UnicodeError, UnsupportedAlgorithm):
        raise Invalid("Keypair data is invalid: failed to generate fingerprint") from None
    return _colon_hex(hashlib.md5(blob, usedforsecurity=False).hexdigest())


def x509_fingerprint(pem: str) -> str:
    """SHA1 fingerprint of a PEM certificate; Invalid if it does not parse."""
    try:
        cert = x509.load_pem_x509_certificate(pem.encode("utf-8"))
    except (ValueError, TypeError, UnicodeError, UnsupportedAlgorithm) as exc:
        raise Invalid(f"Keypair data is invalid: failed to generate X509 fingerprint. Error message: {exc}") from None
    # SHA1 because that is the fingerprint Nova defines for x509 keypairs.
    return _colon_hex(cert.fingerprint(hashes.SHA1()).hex())


def generate_ssh(algorithm: str = "rsa") -> tuple[str, str, str]:
    """(private key, public key, fingerprint). RSA keys are PEM like Nova's; ed25519 uses OpenSSH format."""
    if algorithm == "ed25519":
        ed = ed25519.Ed25519PrivateKey.generate()
        private = ed.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        public = ed.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    # Trailing newline as Nova's samples show, so the text is a valid authorized_keys line.
    public_text = f"{public.decode()} {GENERATED_COMMENT}\n"
    return private.decode(), public_text, ssh_fingerprint(public_text)


def generate_x509(user_id: str) -> tuple[str, str, str]:
    """A self-signed client certificate for the user: (base64 PKCS#12 bundle, PEM certificate, fingerprint)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user_id)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    bundle = pkcs12.serialize_key_and_certificates(None, key, cert, None, serialization.NoEncryption())
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return base64.b64encode(bundle).decode("ascii"), pem, x509_fingerprint(pem)


def _row_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "user_id": row["user_id"],
        "project_id": row["project_id"],
        "fingerprint": row["fingerprint"],
        "public_key": row["public_key"],
        "type": row["type"],
        "created_at": row["created_at"],
    }


def not_found(user_id: str, name: str) -> NotFound:
    return NotFound(f"Keypair {name} not found for user {user_id}")


async def get_keypair(conn: AsyncConnection, user_id: str, name: str) -> dict[str, Any]:
    """The user's keypair by name (keys: id, name, user_id, project_id, fingerprint, public_key, type, created_at)."""
    row = (
        await conn.execute(sa.select(key_pairs).where(key_pairs.c.user_id == user_id, key_pairs.c.name == name))
    ).mappings().first()
    if row is None:
        raise not_found(user_id, name)
    return _row_dict(row)


async def list_keypairs(conn: AsyncConnection, user_id: str, limit: int | None = None, marker: str | None = None) -> list[dict[str, Any]]:
    """The user's keypairs by name; a marker is the name of the last one seen."""
    q = sa.select(key_pairs).where(key_pairs.c.user_id == user_id)
    if marker is not None:
        exists = await conn.execute(
            sa.select(key_pairs.c.id).where(key_pairs.c.user_id == user_id, key_pairs.c.name == marker)
        )
        if exists.first() is None:
            raise Invalid(f"Marker {marker} could not be found.")
        q = q.where(key_pairs.c.name > marker)
    q = q.order_by(key_pairs.c.name, key_pairs.c.id)
    if limit is not None:
        q = q.limit(limit)
    return [_row_dict(r) for r in (await conn.execute(q)).mappings()]


async def create_keypair(
    db: Database,
    quotas: QuotaEngine,
    *,
    user_id: str,
    project_id: str,
    name: str,
    key_type: str = "ssh",
    public_key: str | None = None,
    algorithm: str | None = None,
) -> dict[str, Any]:
    """Import `public_key`, or generate one (then the result carries `private_key`).

    The quota check and the insert share one transaction, so parallel creates cannot exceed the quota.
    """
    private_key: str | None = None
    if public_key is not None:
        fingerprint = ssh_fingerprint(public_key) if key_type == "ssh" else x509_fingerprint(public_key)
    elif key_type == "x509":
        # Key generation is CPU work: keep it off the event loop and outside the write lock.
        private_key, public_key, fingerprint = await asyncio.to_thread(generate_x509, user_id)
    else:
        private_key, public_key, fingerprint = await asyncio.to_thread(generate_ssh, algorithm or "rsa")
    async with db.write() as conn:
        await quotas.check_key_pairs(conn, project_id, user_id)
        dup = await conn.execute(
            sa.select(key_pairs.c.id).where(key_pairs.c.user_id == user_id, key_pairs.c.name == name)
        )
        if dup.first() is not None:
            raise Conflict(f"Key pair '{name}' already exists.")
        try:
            await conn.execute(
                sa.insert(key_pairs).values(
                    name=name, user_id=user_id, project_id=project_id, fingerprint=fingerprint,
                    public_key=public_key, type=key_type, created_at=utcnow(),
                )
            )
        except IntegrityError:
            # Lost a race with a concurrent create of the same name (databases with parallel writers).
            raise Conflict(f"Key pair '{name}' already exists.") from None
        out = await get_keypair(conn, user_id, name)
    if private_key is not None:
        out["private_key"] = private_key
    return out


async def delete_keypair(conn: AsyncConnection, user_id: str, name: str) -> None:
    res = await conn.execute(sa.delete(key_pairs).where(key_pairs.c.user_id == user_id, key_pairs.c.name == name))
    if not res.rowcount:
        raise not_found(user_id, name)


class KeypairService:
    """What the keypair API asks for, one transaction per call."""

    def __init__(self, db: Database, conf: Settings) -> None:
        self.db = db
        self.quotas = QuotaEngine(conf)

    async def list_keypairs(self, user_id: str, limit: int | None = None, marker: str | None = None) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            return await list_keypairs(conn, user_id, limit, marker)

    async def get(self, user_id: str, name: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            return await get_keypair(conn, user_id, name)

    async def create(
        self, *, user_id: str, project_id: str, name: str, key_type: str, public_key: str | None, algorithm: str | None
    ) -> dict[str, Any]:
        return await create_keypair(
            self.db, self.quotas, user_id=user_id, project_id=project_id, name=name,
            key_type=key_type, public_key=public_key, algorithm=algorithm,
        )

    async def delete(self, user_id: str, name: str) -> None:
        async with self.db.write() as conn:
            await delete_keypair(conn, user_id, name)
