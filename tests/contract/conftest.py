"""Fixtures the contract tests share: `lab`, the data plane's lab (_netplane_lab.Lab), removed after
each test; a module that needs another kind of lab (the DHCP and router tests) defines its own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from _netplane_lab import Lab


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    lab = Lab()
    try:
        yield lab
    finally:
        await lab.cleanup()
