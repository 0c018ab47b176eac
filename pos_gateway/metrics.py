"""Prometheus metrics, one registry per app so tests never share counters."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.transactions = Counter(
            "pos_transactions",
            "Terminal transactions answered, by transport, type and response code",
            ["transport", "type", "response_code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pos_transaction_seconds",
            "Time to answer a terminal transaction",
            ["transport", "type"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.pin_verify = Histogram(
            "pos_pin_verify_seconds",
            "Time of one PIN hash verification, queueing for a thread included",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.shed = Counter(
            "pos_shed",
            "Requests answered 91 at once because too many PIN checks were waiting",
            registry=self.registry,
        )
        self.deadline_exceeded = Counter(
            "pos_deadline_exceeded",
            "Terminal requests answered 91 because POS_REQUEST_DEADLINE_S passed",
            registry=self.registry,
        )
        self.http_errors = Counter(
            "pos_http_errors",
            "Requests refused before a business decision, by HTTP status and error code",
            ["status", "code"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
