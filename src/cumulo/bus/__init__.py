"""Message bus: `cast` (fire and forget) and `call` (request/reply) to named topics.

Messages are JSON-serialisable envelopes {"v": 1, "method": str, "args": {...}} so that an AMQP
transport can replace the in-process one without touching callers. Topics: "conductor",
"scheduler", "compute.<host>".

An endpoint is any object; a message's `method` names an async method of it, called with `args` as
keyword arguments. Methods starting with "_" are never dispatched.

The contract is in base (Bus, ENVELOPE_VERSION, compute_topic), the in-process transport in
inproc, the choice of transport in transports.
"""
