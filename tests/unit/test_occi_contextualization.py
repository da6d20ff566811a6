"""Contextualization attributes of a compute create (both schemes): what reaches the server."""

from __future__ import annotations

import base64

import pytest

from cumulo import errors
from cumulo.occi.backends import contextualization as cz

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBd3mVmyC6gxhnTt2nVkVqSUdMAhFqvOhYnOOjEjn8Aq me@host"


def test_user_data_base64_kept_plain_text_encoded() -> None:
    encoded = base64.b64encode(b"#!/bin/sh\necho hi\n").decode()
    assert cz.parse({"org.openstack.compute.user_data": encoded}).user_data == encoded
    assert cz.parse({"occi.compute.userdata": encoded}).user_data == encoded
    plain = cz.parse({"occi.compute.userdata": "#!/bin/sh\necho hi\n"}).user_data
    assert plain is not None and base64.b64decode(plain) == b"#!/bin/sh\necho hi\n"
    with pytest.raises(errors.Invalid, match="occi.compute.userdata is too long"):
        cz.parse({"occi.compute.userdata": "#" * 50000})  # 66668 bytes once encoded
    with pytest.raises(errors.Invalid, match="both given"):
        cz.parse({"occi.compute.userdata": "a", "org.openstack.compute.user_data": "b"})
    assert cz.parse({}).user_data is None and cz.parse({}).key_data is None


def test_key_is_one_openssh_line() -> None:
    got = cz.parse({"occi.credentials.ssh.publickey": KEY + "\n"})
    assert (got.key_data, got.key_name) == (KEY, cz.DEFAULT_KEY_NAME)
    got = cz.parse({"org.openstack.credentials.publickey.data": KEY, "org.openstack.credentials.publickey.name": "k1"})
    assert (got.key_data, got.key_name) == (KEY, "k1")
    for bad in (KEY + "\nssh-rsa AAAA x", 'command="/bin/sh" ' + KEY, "not a key", "ssh-ed25519 ***", 42):
        with pytest.raises(errors.Invalid, match="occi.credentials.ssh.publickey"):
            cz.parse({"occi.credentials.ssh.publickey": bad})
    with pytest.raises(errors.Invalid, match="publickey.name"):
        cz.parse({"org.openstack.credentials.publickey.data": KEY, "org.openstack.credentials.publickey.name": "a/b"})


def test_key_name_alone_names_an_existing_key_pair() -> None:
    got = cz.parse({"org.openstack.credentials.publickey.name": "mykey"})
    assert (got.key_name, got.key_data) == ("mykey", None)
