"""The control plane's instruments, process-wide and created unregistered: a cloud's registry
(endpoint.build_registry) registers them. Label values are bounded: route templates, never raw
paths; bus topics (one per worker and host); a handful of outcomes."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# Latency of API requests by family, method, route template and status (http.RouteMetrics).
REQUEST_LATENCY = Histogram(
    "cumulo_http_request_duration_seconds",
    "Time to answer an API request, by API family, method, route template and status code",
    ["family", "method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=None,
)

# Messages put on the bus, by topic, method and kind (cast or call); handler failures by topic.
BUS_MESSAGES = Counter(
    "cumulo_bus_messages", "Messages sent on the bus, by topic, method and kind (cast, call)",
    ["topic", "method", "kind"], registry=None,
)
BUS_FAILURES = Counter(
    "cumulo_bus_handler_failures", "Bus messages whose handler raised, by topic and method",
    ["topic", "method"], registry=None,
)

# The scheduler's answers: one "selected" per instance placed, one "no_valid_host" per refusal.
SCHEDULER_DECISIONS = Counter(
    "cumulo_scheduler_decisions", "Scheduling decisions by outcome (selected, no_valid_host)",
    ["outcome"], registry=None,
)

ALL = (REQUEST_LATENCY, BUS_MESSAGES, BUS_FAILURES, SCHEDULER_DECISIONS)


def bus_message(topic: str, method: str, kind: str) -> None:
    BUS_MESSAGES.labels(topic, method, kind).inc()


def bus_failure(topic: str, method: str) -> None:
    BUS_FAILURES.labels(topic, method).inc()


def scheduled(outcome: str, n: int = 1) -> None:
    SCHEDULER_DECISIONS.labels(outcome).inc(n)
