"""Message bus: `cast` (fire and forget) and `call` (request/reply) to named topics.

Messages are JSON-serialisable envelopes {"v": <version>, "method": str, "args": {...}}, so the
RabbitMQ transport (amqp) and the in-process one (inproc) are interchangeable for callers.
Topics: "conductor", "scheduler", "compute.<host>", "network.<host>", "volume.<host>", "paas";
`fanout` reaches every consumer of a topic.

An endpoint is any object; a message's `method` names an async method of it, called with `args` as
keyword arguments. Methods starting with "_" are never dispatched.

The contract is in base (Bus, ENVELOPE_VERSION, compute_topic, BusUnavailable, RemoteError,
versions), what both transports do alike with a message in dispatch (the version rule, errors by
class name), the transports in inproc and amqp, the choice by URL in transports.
"""
