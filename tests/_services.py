"""scripts/services.py (the run's private PostgreSQL and RabbitMQ) loaded as a module for a given
RabbitMQ node port: the module reads its ports from the environment at import, so a node other
than the run's (a test's private one, another run's) needs its own copy of the module."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts" / "services.py"


def services_for(amqp_port: int) -> ModuleType:
    """scripts/services.py as seen by the node on `amqp_port` (its node name and epmd port follow)."""
    saved = os.environ.get("CUMULO_TEST_AMQP_PORT")
    os.environ["CUMULO_TEST_AMQP_PORT"] = str(amqp_port)
    try:
        spec = importlib.util.spec_from_file_location(f"cumulo_test_services_{amqp_port}", SCRIPTS)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        if saved is None:
            os.environ.pop("CUMULO_TEST_AMQP_PORT", None)
        else:
            os.environ["CUMULO_TEST_AMQP_PORT"] = saved
