"""rpc.ComputeAPI: one typed method per agent message, and each sends what the agent's endpoint takes."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from cumulo.compute.agent.manager import ComputeHost, ComputeManager
from cumulo.compute.rpc import AGENT_METHODS, ComputeAPI

CALLS = {"get_console_output", "get_diagnostics", "attach_interface", "detach_interface", "exec_in_instance",
         "sample_instances"}
CALLS |= {"cleanup_migration_source"}  # cold migration (compute/agent/migrate.py)
CALLS |= {"live_migration_source", "pre_live_migration", "live_migration", "post_live_migration_at_destination",
          "rollback_live_migration_at_destination", "post_live_migration_at_source",
          "rollback_live_migration_at_source"}  # live migration
MANY = {"sample_instances"}  # messages about many servers: instance_uuids, answered by the host


class RecordingBus:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str, dict[str, Any]]] = []

    async def cast(self, topic: str, method: str, **kwargs: Any) -> None:
        self.sent.append(("cast", topic, method, kwargs))

    async def call(self, topic: str, method: str, *, timeout: float = 60.0, **kwargs: Any) -> Any:
        self.sent.append(("call", topic, method, kwargs))
        return {} if method == "get_diagnostics" else [] if method in MANY else ""


def _public(cls: type) -> set[str]:
    return {n for n, f in inspect.getmembers(cls, inspect.iscoroutinefunction) if not n.startswith("_")}


def test_one_method_per_agent_message() -> None:
    assert _public(ComputeAPI) == set(AGENT_METHODS)
    assert set(AGENT_METHODS) <= _public(ComputeManager) and set(AGENT_METHODS) <= _public(ComputeHost)


@pytest.mark.parametrize("method", sorted(set(AGENT_METHODS) - MANY))
async def test_each_method_sends_its_message_with_the_endpoint_arguments(method: str) -> None:
    bus = RecordingBus()
    api = ComputeAPI(bus)  # type: ignore[arg-type]
    sig = inspect.signature(getattr(api, method))
    samples: dict[str, Any] = {"node": "n1", "reboot_type": "HARD", "image_ref": "img", "image_id": "img",
                               "new_flavor": {"flavorid": "1"}, "backup_type": "daily", "rotation": 2, "length": 3,
                               "port_id": "port-1", "bdm_uuid": "bdm-1", "volume_id": "vol-1",
                               "new_size_bytes": 2 << 30, "argv": ["/bin/true"], "env": {"A": "b"},
                               "stdin_b64": "eA==", "exec_timeout": 5.0, "output_limit": 10}
    samples.update(dest_host="host-2", dest_node="host-2", dest_address="198.18.0.3", migration_uuid="mig-1",
                   fault=None)  # cold migration
    samples.update(source={"record": {}}, target={"host": "127.0.0.1"}, migration_uuid="mig-1",
                   resume=True)  # live migration
    samples.update(task_state="powering-off", since="2026-01-01T00:00:00")  # the sweep's settle_instance
    kwargs = {n: samples[n] for n, p in sig.parameters.items()
              if p.kind is p.KEYWORD_ONLY and n not in ("request_id", "timeout") and n in samples}
    await getattr(api, method)("host-1", "uuid-1", request_id="req-1", **kwargs)
    [(kind, topic, name, sent)] = bus.sent
    assert (kind, topic, name) == ("call" if method in CALLS else "cast", "compute.host-1", method)
    assert sent == {"instance_uuid": "uuid-1", "request_id": "req-1", **kwargs}
    endpoint = inspect.signature(getattr(ComputeManager, method)).parameters
    assert set(sent) <= set(endpoint), f"{method} sends {set(sent) - set(endpoint)} the agent does not take"
    required = {n for n, p in endpoint.items() if n != "self" and p.default is p.empty}
    assert required <= set(sent)


async def test_sample_instances_sends_the_uuids_to_the_host() -> None:
    bus = RecordingBus()
    assert await ComputeAPI(bus).sample_instances("host-1", ["u1", "u2"], request_id="req-1") == []  # type: ignore[arg-type]
    assert bus.sent == [("call", "compute.host-1", "sample_instances",
                         {"instance_uuids": ["u1", "u2"], "request_id": "req-1"})]
    for cls in (ComputeManager, ComputeHost):
        params = inspect.signature(cls.sample_instances).parameters
        assert {"instance_uuids", "request_id"} <= set(params)
