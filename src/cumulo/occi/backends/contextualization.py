"""Contextualization of a compute create: user data and an SSH public key, in the two schemes EGI
clients send.

- OCCI 1.2: the user_data mixin (`http://schemas.ogf.org/occi/infrastructure/compute#user_data`,
  attribute occi.compute.userdata) and the ssh_key mixin
  (`http://schemas.ogf.org/occi/infrastructure/credentials#ssh_key`, attribute
  occi.credentials.ssh.publickey).
- ooi / OCCI-OS: `http://schemas.openstack.org/compute/instance#user_data` (attribute
  org.openstack.compute.user_data) and `http://schemas.openstack.org/instance/credentials#public_key`
  (attributes org.openstack.credentials.publickey.name and .data).

User data: OCCI-OS sends it base64-encoded (as Nova's API takes it) and rOCCI clients do the same
for occi.compute.userdata; a value that is not strict base64 is taken as the plain text itself and
encoded here, so a client sending a script as is works too. The instance keeps it base64-encoded,
as Nova does; at most 65535 bytes once encoded (Nova's limit).

SSH key: one OpenSSH public key line ("<type> <base64> [comment]"), never a multi-line value nor
an authorized_keys line with options (it lands in a container's /root/.ssh/authorized_keys). It
goes to the server as its key data without a key pair being made (the create keeps the name:
the OCCI-OS name when given, else "occi-ssh-key"), so a VM's config drive and metadata service
carry it as public_keys and a container gets it in authorized_keys, as with a key pair. An
OCCI-OS name without data names one of the caller's existing key pairs (as ooi does).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from cumulo import errors

USERDATA_ATTRS = ("occi.compute.userdata", "org.openstack.compute.user_data")
KEY_ATTRS = ("occi.credentials.ssh.publickey", "org.openstack.credentials.publickey.data")
KEY_NAME_ATTR = "org.openstack.credentials.publickey.name"
DEFAULT_KEY_NAME = "occi-ssh-key"
MAX_USER_DATA = 65535  # Nova's maxLength of the base64 user_data
MAX_KEY = 16 * 1024
_KEY_LINE = re.compile(
    r"^(ssh-(rsa|dss|ed25519)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)"
    r" [A-Za-z0-9+/]+={0,3}( [^\r\n]*)?$"
)
_KEY_NAME = re.compile(r"^[\w\-. @]{1,255}$")


@dataclass
class Context:
    user_data: str | None = None  # base64
    key_name: str | None = None
    key_data: str | None = None


def _first(attrs: dict[str, Any], names: tuple[str, ...]) -> tuple[str, Any] | None:
    given = [(n, attrs[n]) for n in names if attrs.get(n) not in (None, "")]
    if len(given) > 1 and given[0][1] != given[1][1]:
        raise errors.Invalid(f"{given[0][0]} and {given[1][0]} are both given, with different values")
    return given[0] if given else None


def user_data_of(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise errors.Invalid(f"{name} must be a string")
    try:
        base64.b64decode(value, validate=True)
        encoded = value
    except (binascii.Error, ValueError):
        encoded = base64.b64encode(value.encode()).decode()
    if len(encoded) > MAX_USER_DATA:
        raise errors.Invalid(f"{name} is too long: at most {MAX_USER_DATA} bytes once base64-encoded")
    return encoded


def key_of(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise errors.Invalid(f"{name} must be a string")
    key = value.strip()
    if len(key) > MAX_KEY or not _KEY_LINE.match(key):
        raise errors.Invalid(f"{name} is not an OpenSSH public key line ('<type> <base64> [comment]')")
    return key


def parse(attrs: dict[str, Any]) -> Context:
    """The contextualization a create request's attributes carry (400 naming a bad one)."""
    out = Context()
    ud = _first(attrs, USERDATA_ATTRS)
    if ud is not None:
        out.user_data = user_data_of(*ud)
    key = _first(attrs, KEY_ATTRS)
    name = attrs.get(KEY_NAME_ATTR)
    if name not in (None, ""):
        if not isinstance(name, str) or not _KEY_NAME.match(name):
            raise errors.Invalid(f"{KEY_NAME_ATTR} must be a key pair name (letters, digits, '-', '_', '.', '@', space)")
        out.key_name = name  # alone: the caller's existing key pair of that name (as ooi)
    if key is not None:
        out.key_data = key_of(*key)
        out.key_name = name or DEFAULT_KEY_NAME
    return out
