"""Choosing a transport by URL (the `transport` setting): "inproc" or "amqp://..." (RabbitMQ)."""

from __future__ import annotations

from cumulo.bus.base import Bus
from cumulo.bus.inproc import InprocBus


def make_bus(transport: str) -> Bus:
    if transport == "inproc":
        return InprocBus()
    if transport.startswith(("amqp://", "amqps://")):
        from cumulo.bus.amqp import AmqpBus  # aio-pika only where a broker is used

        return AmqpBus(transport)
    scheme = transport.partition("://")[0] if "://" in transport else transport[:16]
    # the scheme only: a mistyped URL (ampq://user:PASSWORD@...) must not put its password in a log
    raise ValueError(f"unsupported transport {scheme!r}; use 'inproc' or an amqp:// URL")
