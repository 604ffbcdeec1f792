"""Prometheus metrics: requests by endpoint and status, latency, batch sizes; and Triton's
own metric names, read from each model version's statistics."""

import prometheus_client
from prometheus_client.core import GaugeMetricFamily, UnknownMetricFamily


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


class TritonMetrics:
    """A collector of Triton's metric names (`nv_inference_*`), read at scrape time from
    each served version's `batching.Statistics`, so dashboards and alerts written for
    Triton work unchanged. The counters are exposed untyped: as Prometheus counters their
    samples would gain a `_total` suffix that Triton's names do not have.

    Args:
      versions: a callable returning the served `ModelVersion`s.
    """

    _COUNTERS = (
        ("nv_inference_request_success", "Number of successful inference requests, all batch sizes"),
        ("nv_inference_count", "Number of inferences performed (rows)"),
        ("nv_inference_exec_count", "Number of model executions performed (batches)"),
        ("nv_inference_request_duration_us", "Cumulative inference request duration in microseconds"),
        ("nv_inference_queue_duration_us", "Cumulative inference queuing duration in microseconds"),
        ("nv_inference_compute_infer_duration_us", "Cumulative compute inference duration in microseconds"),
    )

    def __init__(self, versions):
        self.versions = versions

    def collect(self):
        labels = ["model", "version"]
        families = {name: UnknownMetricFamily(name, text, labels=labels) for name, text in self._COUNTERS}
        failure = UnknownMetricFamily(
            "nv_inference_request_failure",
            "Number of failed inference requests, all batch sizes",
            labels=[*labels, "reason"],
        )
        pending = GaugeMetricFamily(
            "nv_inference_pending_request_count",
            "Instantaneous number of pending requests awaiting execution",
            labels=labels,
        )
        for model in self.versions():
            statistics, key = model.batcher.statistics, [model.name, model.version]
            values = {
                "nv_inference_request_success": statistics.success[0],
                "nv_inference_count": statistics.inference_count,
                "nv_inference_exec_count": statistics.execution_count,
                "nv_inference_request_duration_us": (statistics.success[1] + statistics.fail[1]) // 1000,
                "nv_inference_queue_duration_us": statistics.queue[1] // 1000,
                "nv_inference_compute_infer_duration_us": statistics.compute_infer[1] // 1000,
            }
            for name, value in values.items():
                families[name].add_metric(key, value)
            for reason in ("REJECTED", "CANCELED", "BACKEND", "OTHER"):
                failure.add_metric([*key, reason], statistics.fail_by_reason.get(reason, 0))
            pending.add_metric(key, model.batcher.pending_requests)
        yield from families.values()
        yield failure
        yield pending
