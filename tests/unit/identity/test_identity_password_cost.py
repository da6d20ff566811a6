"""The cost of new password hashes is a setting (Keystone's password_hash_rounds); stored hashes
name their own cost, so a change of setting never breaks a login."""

from __future__ import annotations

import pytest

from cumulo import conf as conf_mod
from cumulo.identity import passwords


def test_the_defaults_are_argon2_cffis() -> None:
    settings = conf_mod.load(env={})
    assert (settings.password_hash_time_cost, settings.password_hash_memory_kib,
            settings.password_hash_parallelism) == (3, 65536, 4)
    env = {"CUMULO_PASSWORD_HASH_TIME_COST": "1", "CUMULO_PASSWORD_HASH_MEMORY_KIB": "1024",
           "CUMULO_PASSWORD_HASH_PARALLELISM": "1"}
    cheap = conf_mod.load(env=env)
    assert (cheap.password_hash_time_cost, cheap.password_hash_memory_kib, cheap.password_hash_parallelism) == (1, 1024, 1)


async def test_configure_sets_the_cost_of_new_hashes_and_old_ones_still_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(passwords, "_HASHER", passwords._HASHER)  # put back whatever was in force
    passwords.configure(1, 1024, 1)
    old = await passwords.hash_password("first-secret")
    assert old.startswith("$argon2id$") and "m=1024,t=1,p=1" in old
    passwords.configure(2, 2048, 2)
    new = await passwords.hash_password("second-secret")
    assert "m=2048,t=2,p=2" in new
    assert await passwords.verify_password(old, "first-secret")  # made at the old cost: still a login
    assert not await passwords.verify_password(old, "second-secret")
    assert await passwords.verify_password(new, "second-secret")
    assert not await passwords.verify_password(None, "second-secret")  # unknown user: the dummy, at today's cost
    assert "m=2048,t=2,p=2" in passwords._dummy_hash()


@pytest.mark.parametrize("cost", [(0, 1024, 1), (1, 1024, 0), (1, 15, 2)])
def test_a_cost_argon2_cannot_take_is_refused(cost: tuple[int, int, int]) -> None:
    before = passwords._HASHER
    with pytest.raises(ValueError, match="password_hash_"):
        passwords.configure(*cost)
    assert passwords._HASHER is before
