"""Keypairs: real generation and import, fingerprints, shapes by version, names, quota, isolation."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from resources_app import Harness, check, ctx, make_harness, nova

from cumulo.compute.service import keypairs as service
from cumulo.errors import NotFound

ADMIN = ctx("admin-proj", "admin", user="admin-user")
ALICE = ctx("proj-a", "member", user="alice")
BOB = ctx("proj-b", "member", user="bob")
READER = ctx("proj-a", "reader", user="alice")


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async with make_harness(tmp_path) as h:
        yield h


def md5_fingerprint(public_key: str) -> str:
    """Independent of the code under test: MD5 of the base64 blob, colon separated."""
    digest = hashlib.md5(base64.b64decode(public_key.split()[1])).hexdigest()  # noqa: S324
    return ":".join(digest[i : i + 2] for i in range(0, 32, 2))


def openssh_public(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> str:
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return pub.decode() + " someone@example\n"


def self_signed_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


async def test_generate_rsa_at_21(harness: Harness) -> None:
    r = await harness.call(ALICE, "POST", "/os-keypairs", "2.1", json={"keypair": {"name": "gen"}})
    assert r.status_code == 200
    check(r.json(), nova.schema("keypair_generate", "2.1"))
    kp = r.json()["keypair"]
    private = serialization.load_pem_private_key(kp["private_key"].encode(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey) and private.key_size == 2048
    assert kp["private_key"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    # The public key is the private key's, and the fingerprint is its MD5.
    assert kp["public_key"].split()[:2] == openssh_public(private).split()[:2]
    assert kp["fingerprint"] == md5_fingerprint(kp["public_key"])
    assert kp["user_id"] == "alice"


async def test_generate_ed25519_extension(harness: Harness) -> None:
    r = await harness.call(ALICE, "POST", "/os-keypairs", "2.2", json={"keypair": {"name": "ed", "key_algorithm": "ed25519"}})
    assert r.status_code == 201
    check(r.json(), nova.schema("keypair_generate", "2.2"))
    kp = r.json()["keypair"]
    private = serialization.load_ssh_private_key(kp["private_key"].encode(), password=None)
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    assert kp["public_key"].startswith("ssh-ed25519 ") and kp["type"] == "ssh"
    assert kp["public_key"].split()[1] == openssh_public(private).split()[1]
    assert kp["fingerprint"] == md5_fingerprint(kp["public_key"])
    # The extension applies to generation only.
    both = await harness.call(ALICE, "POST", "/os-keypairs", "2.2",
                              json={"keypair": {"name": "x", "key_algorithm": "rsa", "public_key": kp["public_key"]}})
    assert both.status_code == 400
    bad = await harness.call(ALICE, "POST", "/os-keypairs", json={"keypair": {"name": "x", "key_algorithm": "dsa"}})
    assert bad.status_code == 400


@pytest.mark.parametrize(
    "make_key",
    [
        lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        lambda: ed25519.Ed25519PrivateKey.generate(),
        lambda: ec.generate_private_key(ec.SECP384R1()),
    ],
    ids=["rsa", "ed25519", "ecdsa"],
)
@pytest.mark.parametrize("version", ["2.1", "2.10", "2.79"])
async def test_import_keys(harness: Harness, make_key: object, version: str) -> None:
    public = openssh_public(make_key())  # type: ignore[operator]
    r = await harness.call(ALICE, "POST", "/os-keypairs", version, json={"keypair": {"name": "imp", "public_key": public}})
    assert r.status_code == (200 if version == "2.1" else 201), r.text
    check(r.json(), nova.schema("keypair_import", version))
    assert r.json()["keypair"]["fingerprint"] == md5_fingerprint(public)
    assert r.json()["keypair"]["public_key"] == public
    shown = await harness.call(ALICE, "GET", "/os-keypairs/imp", version)
    check(shown.json(), nova.schema("keypair", version))
    assert shown.json()["keypair"]["fingerprint"] == md5_fingerprint(public)
    listed = await harness.call(ALICE, "GET", "/os-keypairs", version)
    check(listed.json(), nova.schema("keypairs", version))
    assert [k["keypair"]["name"] for k in listed.json()["keypairs"]] == ["imp"]
    deleted = await harness.call(ALICE, "DELETE", "/os-keypairs/imp", version)
    assert deleted.status_code == (202 if version == "2.1" else 204)
    assert (await harness.call(ALICE, "GET", "/os-keypairs/imp", version)).status_code == 404


@pytest.mark.parametrize(
    "public_key",
    [
        "not a key",
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC1HTrHCbb9NawNLSV8N6tSa8i637 broken",
        "ssh-rsa !!!notbase64!!!",
        "",
    ],
)
async def test_import_rejects_invalid_keys(harness: Harness, public_key: str) -> None:
    r = await harness.call(ALICE, "POST", "/os-keypairs", json={"keypair": {"name": "bad", "public_key": public_key}})
    assert r.status_code == 400
    assert r.json()["badRequest"]["message"].startswith("Keypair data is invalid")


async def test_import_rejects_dsa_keys(harness: Harness) -> None:
    # A well-formed ssh-dss line: DSA is not among the accepted types (RSA, ed25519, ECDSA).
    blob = b"".join(len(p).to_bytes(4, "big") + p for p in (b"ssh-dss", b"\x01" * 129, b"\x02" * 21, b"\x03" * 128, b"\x04" * 128))
    public = "ssh-dss " + base64.b64encode(blob).decode() + " old@key"
    r = await harness.call(ALICE, "POST", "/os-keypairs", json={"keypair": {"name": "dsa", "public_key": public}})
    assert r.status_code == 400 and r.json()["badRequest"]["message"].startswith("Keypair data is invalid")


async def test_x509_import_and_generation(harness: Harness) -> None:
    pem = self_signed_pem()
    r = await harness.call(ALICE, "POST", "/os-keypairs", "2.2", json={"keypair": {"name": "cert", "type": "x509", "public_key": pem}})
    assert r.status_code == 201
    cert = x509.load_pem_x509_certificate(pem.encode())
    expected = ":".join(f"{b:02x}" for b in cert.fingerprint(hashes.SHA1()))  # noqa: S303
    assert r.json()["keypair"]["fingerprint"] == expected and r.json()["keypair"]["type"] == "x509"
    # An x509 type is not accepted before 2.2.
    assert (await harness.call(ALICE, "POST", "/os-keypairs", "2.1", json={"keypair": {"name": "c2", "type": "x509", "public_key": pem}})).status_code == 400
    gen = await harness.call(ALICE, "POST", "/os-keypairs", "2.2", json={"keypair": {"name": "gencert", "type": "x509"}})
    assert gen.status_code == 201
    key, gcert, _ = pkcs12.load_key_and_certificates(base64.b64decode(gen.json()["keypair"]["private_key"]), None)
    assert key is not None and gcert is not None
    assert gcert.public_bytes(serialization.Encoding.PEM).decode() == gen.json()["keypair"]["public_key"]
    bad = await harness.call(ALICE, "POST", "/os-keypairs", "2.2", json={"keypair": {"name": "c3", "type": "x509", "public_key": "nope"}})
    assert bad.status_code == 400


@pytest.mark.parametrize("name", ["x" * 256, "", "bad!name", " lead", "trail ", "ümlaut", "a/b"])
async def test_name_rules(harness: Harness, name: str) -> None:
    r = await harness.call(ALICE, "POST", "/os-keypairs", json={"keypair": {"name": name, "public_key": openssh_public(ed25519.Ed25519PrivateKey.generate())}})
    assert r.status_code == 400, name


async def test_body_rules(harness: Harness) -> None:
    pub = openssh_public(ed25519.Ed25519PrivateKey.generate())
    ok_name = "ok_name-1 with space"
    assert (await harness.call(ALICE, "POST", "/os-keypairs", json={"keypair": {"name": ok_name, "public_key": pub}})).status_code == 200
    dup = await harness.call(ALICE, "POST", "/os-keypairs", json={"keypair": {"name": ok_name, "public_key": pub}})
    assert dup.status_code == 409 and dup.json()["conflictingRequest"]["message"] == f"Key pair '{ok_name}' already exists."
    for body in ({"keypair": {"public_key": pub}}, {"keypair": {"name": "n", "extra": 1}}, {"name": "n"}, {"keypair": {"name": "n", "user_id": "x"}}):
        assert (await harness.call(ALICE, "POST", "/os-keypairs", "2.9", json=body)).status_code == 400, body
    # The same name is fine for another user.
    assert (await harness.call(BOB, "POST", "/os-keypairs", json={"keypair": {"name": ok_name, "public_key": pub}})).status_code == 200


async def test_quota(harness: Harness) -> None:
    r = await harness.call(ADMIN, "PUT", "/os-quota-sets/proj-a", json={"quota_set": {"key_pairs": 2}})
    assert r.status_code == 200
    for i in range(2):
        pub = openssh_public(ed25519.Ed25519PrivateKey.generate())
        assert (await harness.call(ALICE, "POST", "/os-keypairs", json={"keypair": {"name": f"k{i}", "public_key": pub}})).status_code == 200
    over = await harness.call(ALICE, "POST", "/os-keypairs", json={"keypair": {"name": "k3"}})
    assert over.status_code == 403 and over.json()["forbidden"]["message"] == "Quota exceeded, too many key pairs."


async def test_isolation_and_admin_user_id(harness: Harness) -> None:
    pub = openssh_public(ed25519.Ed25519PrivateKey.generate())
    await harness.call(ALICE, "POST", "/os-keypairs", json={"keypair": {"name": "mine", "public_key": pub}})
    assert (await harness.call(BOB, "GET", "/os-keypairs/mine")).status_code == 404
    assert (await harness.call(BOB, "DELETE", "/os-keypairs/mine")).status_code == 404
    assert (await harness.call(BOB, "GET", "/os-keypairs")).json() == {"keypairs": []}
    # Before 2.10 user_id is ignored; from 2.10 only admins may name another user.
    assert (await harness.call(BOB, "GET", "/os-keypairs?user_id=alice", "2.9")).json() == {"keypairs": []}
    assert (await harness.call(BOB, "GET", "/os-keypairs?user_id=alice", "2.10")).status_code == 403
    assert (await harness.call(ALICE, "GET", "/os-keypairs?user_id=alice", "2.10")).status_code == 200
    as_admin = await harness.call(ADMIN, "GET", "/os-keypairs?user_id=alice", "2.10")
    assert [k["keypair"]["name"] for k in as_admin.json()["keypairs"]] == ["mine"]
    shown = await harness.call(ADMIN, "GET", "/os-keypairs/mine?user_id=alice", "2.10")
    assert shown.status_code == 200 and shown.json()["keypair"]["user_id"] == "alice"
    made = await harness.call(ADMIN, "POST", "/os-keypairs", "2.10", json={"keypair": {"name": "forbob", "public_key": pub, "user_id": "bob"}})
    assert made.status_code == 201 and made.json()["keypair"]["user_id"] == "bob"
    assert (await harness.call(BOB, "GET", "/os-keypairs/forbob")).status_code == 200
    assert (await harness.call(BOB, "POST", "/os-keypairs", "2.10", json={"keypair": {"name": "z", "public_key": pub, "user_id": "alice"}})).status_code == 403
    assert (await harness.call(ADMIN, "DELETE", "/os-keypairs/mine?user_id=alice", "2.10")).status_code == 204
    assert (await harness.call(ALICE, "GET", "/os-keypairs/mine")).status_code == 404


async def test_reader_lists_but_cannot_change(harness: Harness) -> None:
    assert (await harness.call(READER, "GET", "/os-keypairs")).status_code == 200
    r = await harness.call(READER, "POST", "/os-keypairs", json={"keypair": {"name": "r"}})
    assert r.status_code == 403 and set(r.json()) == {"forbidden"}
    assert (await harness.call(READER, "DELETE", "/os-keypairs/r")).status_code == 403


async def test_pagination_235(harness: Harness) -> None:
    pub = openssh_public(ed25519.Ed25519PrivateKey.generate())
    for name in ("c", "a", "b"):
        await harness.call(ALICE, "POST", "/os-keypairs", json={"keypair": {"name": name, "public_key": pub}})
    page = await harness.call(ALICE, "GET", "/os-keypairs?limit=2", "2.35")
    check(page.json(), nova.schema("keypairs", "2.35"))
    assert [k["keypair"]["name"] for k in page.json()["keypairs"]] == ["a", "b"]
    assert page.json()["keypairs_links"][0]["href"] == "http://cumulo.test/v2.1/os-keypairs?limit=2&marker=b"
    rest = await harness.call(ALICE, "GET", "/os-keypairs?limit=2&marker=b", "2.35")
    assert [k["keypair"]["name"] for k in rest.json()["keypairs"]] == ["c"] and "keypairs_links" not in rest.json()
    assert (await harness.call(ALICE, "GET", "/os-keypairs?marker=zzz", "2.35")).status_code == 400
    # Before 2.35 limit is not a parameter: all come back.
    assert len((await harness.call(ALICE, "GET", "/os-keypairs?limit=1", "2.34")).json()["keypairs"]) == 3
    assert (await harness.call(ALICE, "GET", "/os-keypairs?bogus=1", "2.75")).status_code == 400


async def test_get_keypair_service(harness: Harness) -> None:
    pub = openssh_public(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    await harness.call(ALICE, "POST", "/os-keypairs", json={"keypair": {"name": "svc", "public_key": pub}})
    async with harness.db.read() as conn:
        kp = await service.get_keypair(conn, "alice", "svc")
        assert kp["public_key"] == pub and kp["type"] == "ssh" and kp["fingerprint"] == md5_fingerprint(pub)
        with pytest.raises(NotFound):
            await service.get_keypair(conn, "bob", "svc")
