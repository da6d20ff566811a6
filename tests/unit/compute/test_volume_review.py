"""Findings of the issue-11 review on Nova's volume side: each test failed before its fix."""

from __future__ import annotations

from typing import Any

import pytest
from servers_support import (  # noqa: F401  (settings is a fixture override)
    API,
    World,
    fault_of,
    make_world,
    mv,
    settings,
)


@pytest.fixture
async def world(cloud: Any, as_ctx: Any) -> World:
    return await make_world(cloud, as_ctx)


async def test_os_volumes_create_with_a_size_of_thousands_of_digits_is_a_400(world: World) -> None:
    resp = await world.member.post(f"{API}/os-volumes", json={"volume": {"size": "1" * 5000}}, headers=mv("2.35"))
    assert resp.status_code == 400 and fault_of(resp)[0] == "badRequest"
