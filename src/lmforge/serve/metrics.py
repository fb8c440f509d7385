"""Prometheus metrics of one server (own registry, so several apps in one process do not clash)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """requests{endpoint,status}, latency{endpoint}, tokens, tokens/s, queue depth, errors{code}."""

    def __init__(self, queue_depth=lambda: 0, in_flight=lambda: 0, waiting=lambda: 0):
        self.registry = r = CollectorRegistry()
        self.requests = Counter("lmforge_requests", "HTTP requests", ["endpoint", "status"], registry=r)
        self.latency = Histogram("lmforge_request_latency_seconds", "Request latency", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.prompt_tokens = Counter("lmforge_prompt_tokens", "Prompt tokens processed", registry=r)
        self.generated = Counter("lmforge_generated_tokens", "Completion tokens generated", registry=r)
        self.tokens_per_s = Histogram("lmforge_generation_tokens_per_second", "Per-request decode speed",
                                      buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000), registry=r)
        self.errors = Counter("lmforge_errors", "Error responses", ["code"], registry=r)
        self.batch_size = Histogram("lmforge_batch_size", "Requests per generation batch",
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        depth = Gauge("lmforge_queue_depth", "Generation jobs waiting for the engine", registry=r)
        depth.set_function(queue_depth)
        flight = Gauge("lmforge_requests_in_flight", "Requests being served", registry=r)
        flight.set_function(in_flight)
        queued = Gauge("lmforge_requests_waiting", "Requests queued for their turn", registry=r)
        queued.set_function(waiting)

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
