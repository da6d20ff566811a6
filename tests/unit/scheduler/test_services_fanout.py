"""The API's `services_changed` fanout over RabbitMQ (issue 14, HOP): the scheduler answers from its
cached services, and a host the admin disabled through the API is never answered once the API has
answered, because the fanout is confirmed (routed to every scheduler) before `update_service`
returns, and a select sent after it queues behind it."""

from __future__ import annotations

import uuid

from sched_rig import Hosts

from cumulo.bus.amqp import AmqpBus
from cumulo.compute.service.hosts import HostService
from cumulo.conf import Settings
from cumulo.db import Database
from cumulo.placement.inventory import MEMORY_MB
from cumulo.placement.service import Placement
from cumulo.scheduler.manager import SchedulerManager


class FanoutNotice:
    """SchedulerAPI.services_changed's fanout, to a topic of this test's own."""

    def __init__(self, bus: AmqpBus, topic: str) -> None:
        self.bus, self.topic = bus, topic

    async def services_changed(self) -> None:
        await self.bus.fanout(self.topic, "services_changed")


async def test_a_host_disabled_through_the_api_is_never_answered_after_over_rabbitmq(
    db: Database, sched_conf: Settings, placement: Placement, hosts: Hosts, scale_services: dict[str, str]
) -> None:
    names = ["fan-a", "fan-b"]
    for name in names:
        await hosts.add(name)
    conf = sched_conf.replace(extra={**sched_conf.extra, "host_cache_min_hosts": 0, "host_cache_seconds": 3600.0})
    sched = SchedulerManager(db, conf, placement)
    topic = f"sched-{uuid.uuid4().hex[:8]}"
    url = scale_services["transport_url"]
    server, api, conductor = AmqpBus(url), AmqpBus(url), AmqpBus(url)
    server.serve(topic, sched)
    await server.start()
    await server.ready()
    await api.start()
    await conductor.start()
    spec = {"resources": {MEMORY_MB: 1024}}
    try:
        first = (await conductor.call(topic, "select_destinations", request_spec=spec, num_instances=1))[0]
        other = next(n for n in names if n != first["host"])  # the RAM weigher's next choice
        admin = HostService(db, conf, placement, FanoutNotice(api, topic))
        found = await admin.find_service_id(other, "nova-compute")
        assert found is not None
        await admin.update_service(found, {"disabled": True})
        for _ in range(3):
            dest = (await conductor.call(topic, "select_destinations", request_spec=spec, num_instances=1))[0]
            assert dest["host"] == first["host"] and dest["alternates"] == []
        # The change was read: by the full read the message started, or by a recheck before it was in.
        assert sched.cache.reloads == 2 or sched.cache.rechecks >= 1
    finally:
        for bus in (conductor, api, server):
            await bus.stop()
        await sched.stop()
