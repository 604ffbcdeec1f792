"""Prometheus metrics: requests by endpoint and status, latency, batch sizes."""

import prometheus_client


class Metrics:
    """One registry per app, so several apps (tests) never share counters."""

    def __init__(self):
        self.registry = prometheus_client.CollectorRegistry()
        self.requests = prometheus_client.Counter(
            "tfvae_requests",
            "HTTP requests by endpoint and status code.",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = prometheus_client.Histogram(
            "tfvae_request_latency_seconds",
            "Time from request to response, by endpoint.",
            ["endpoint"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
        )
        self.batch_size = prometheus_client.Histogram(
            "tfvae_batch_size",
            "Rows per model run after dynamic batching.",
            ["model"],
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
        )

        self.refused = prometheus_client.Counter(
            "tfvae_overload_refusals",
            "Requests refused because the model's batch queue was full.",
            ["model"],
            registry=self.registry,
        )
        self.queued_rows = prometheus_client.Gauge(
            "tfvae_queued_rows",
            "Rows waiting in a model's batch queue.",
            ["model"],
            registry=self.registry,
        )

    def exposition(self):
        return prometheus_client.generate_latest(self.registry), prometheus_client.CONTENT_TYPE_LATEST
