"""What every protocol serves: the loaded models, their batchers, readiness and metrics.

The REST routes (`protocol_v2.routes`, `protocol_tfserving.routes`) parse a request in
their protocol's format, then ask a `ModelService` for the model (`find`), run it
through the model's dynamic batcher (`run`), or turn a `:generate` request into the
generator's inputs (`generate_inputs`). Nothing here knows HTTP.
"""

import asyncio
import dataclasses
import logging
import secrets
import time

import numpy as np

from tfvae.serving import access
from tfvae.serving.batching import BatcherClosed, DynamicBatcher, QueueTimeout
from tfvae.serving.errors import RequestError
from tfvae.serving.metrics import Metrics, TritonMetrics
from tfvae.serving.repository import RepositoryError, every_version, latest, load_repository
from tfvae.serving.tensors import check_class_ids, is_int

logger = logging.getLogger("tfvae.serving")


@dataclasses.dataclass
class ServerConfig:
    """How `tfvae serve` runs; the defaults suit one machine.

    Args:
      export_dir: the model repository written by `tfvae export`.
      backend: "onnx" (ONNX Runtime) or "savedmodel".
      max_batch_size: most rows per model run after dynamic batching.
      batch_delay_ms: how long a request waits for others to share its run.
      max_body_bytes: largest request body.
      max_rows: most rows (instances, or samples for :generate) per request.
      threads: ONNX Runtime intra-op threads per model (default: all cores, and one for a
        generator that draws pixel by pixel: `tfvae.serving.backends.OnnxBackend`).
      ready_when: "all": /v2/health/ready answers 200 only when every model in the
        repository serves its newest version; "any": when one model serves.
      header_timeout_s: a connection must send each request's headers within this
        (else it is closed): `tfvae.serving.connections.headers_deadline`.
      body_timeout_s: the whole body must arrive within this (else 408), so a client
        trickling bytes cannot hold a request open.
      max_connections: connections and requests served at once; more get 503 (REST) or
        RESOURCE_EXHAUSTED (gRPC).
      host: the address both protocols listen on.
      grpc_port: also serve KServe v2 over gRPC on this port (None: REST only).
      tfserving_grpc: on the gRPC port, also TF Serving's PredictionService (Predict,
        GetModelMetadata) and ModelService (GetModelStatus). Their messages need
        TensorFlow's protos, so this imports TensorFlow (`protocol_tfserving_grpc`).
      grace_s: on SIGTERM, how long in-flight requests may take to finish.
      max_queue_rows: rows a model's batch queue holds (at least `max_rows`); a request
        that would pass it is refused at once (REST 503 with Retry-After, gRPC
        UNAVAILABLE) instead of waiting: overload becomes a refusal, not latency.
      poll_seconds: look at the repository this often and serve what changed (None:
        never): new versions are loaded, checked and swapped in, a broken one is refused
        with a log line while the others serve on, a removed one is unloaded once its
        queued requests have run.
      latest_versions: serve the newest N servable versions of each model (None: all).
      api_keys: `{group: (key, ...)}` (`tfvae.serving.access`): requests to a group with
        keys must carry one, on REST and gRPC (None: every endpoint open).
      tls_cert, tls_key: PEM files of the server's certificate (chain) and private key:
        both protocols then speak TLS (None: plain text).
    """

    export_dir: str
    backend: str = "onnx"
    max_batch_size: int = 256
    batch_delay_ms: float = 1.0
    max_body_bytes: int = 4 * 1024 * 1024
    max_rows: int = 4096
    threads: int = None
    ready_when: str = "all"
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_connections: int = 1000
    host: str = "127.0.0.1"
    grpc_port: int = None
    tfserving_grpc: bool = False
    grace_s: float = 30.0
    max_queue_rows: int = 8192
    poll_seconds: float = None
    latest_versions: int = None
    api_keys: dict = None
    tls_cert: str = None
    tls_key: str = None
    on_ready: object = None  # called with the loaded models once the server takes requests


class ModelService:
    """The models of one repository and what serving them needs, for every protocol.

    Args:
      config: a `ServerConfig`; its repository is loaded (and checked) here.

    Attributes:
      models: `{name: {version: LoadedModel}}`, the versions that passed their checks.
      refused: `{name: reason}` for models whose newest version was refused.
      metrics: the Prometheus registry the protocols count into.
      ready: True between `start` and `stop`.
      unloaded: names unloaded through the repository API (`unload`), until `load`.
      listeners: coroutine functions awaited after `start` and every `refresh`.
    """

    def __init__(self, config):
        self.config = config
        repository = load_repository(config.export_dir, config.backend, config.threads, latest=config.latest_versions)
        self.models, self.refused = repository.models, repository.refused
        self._poller = None
        self.metrics = Metrics()
        self.metrics.registry.register(TritonMetrics(lambda: [m for m in self.loaded() if m.batcher is not None]))
        self.keys = access.Keys(config.api_keys) if config.api_keys else None
        self.ready = False
        # Requests past their body and checks, waiting on or inside a model run.
        self.in_flight = 0
        # Not served, even when a poll sees them, until loaded again.
        self.unloaded = set()
        # The gRPC health service's statuses follow the served set through these.
        self.listeners = []

    def count_unauthenticated(self):
        """Counts a request refused for its missing or wrong API key (REST or gRPC)."""
        self.metrics.requests.labels("unauthenticated", "401").inc()

    def find(self, name, version=None):
        """The served model `name` at `version` (a string; None: its newest)."""
        if name not in self.models and name in self.refused:
            raise RequestError(f"model {name!r} is not served: {self.refused[name]}", 503)
        if name not in self.models:
            raise RequestError(f"unknown model {name!r}; this server has {sorted(self.models)}", 404)
        if version is None:
            return latest(self.models[name])
        if version not in self.models[name]:
            raise RequestError(
                f"model {name!r} has no version {version!r}; it has {sorted(self.models[name], key=int)}", 404
            )
        return self.models[name][version]

    def readiness(self):
        """`(ready, refused)`: whether the server takes requests under `config.ready_when`,
        and the refused models that keep it from being ready (empty when none do)."""
        if self.ready and self.config.ready_when == "all" and self.refused:
            return False, self.refused
        return self.ready, {}

    async def run(self, model, inputs, timeout_us=None):
        """`model`'s outputs for `inputs` (`{name: [rows, ...]}`), batched with others.

        `timeout_us` is the request's own limit (v2 `parameters.timeout`, in microseconds,
        as Triton reads it) on waiting for its batch: past it the request is refused with
        503, as Triton refuses it ("Request timeout expired"), instead of running late."""
        rows = len(next(iter(inputs.values())))
        if model.batcher.closed:  # unloaded by a repository poll while this request arrived
            model = self.models.get(model.name, {}).get(model.version)  # the same version, reloaded
            if model is None or model.batcher.closed:  # gone, or the server is stopping
                raise RequestError("the model version was unloaded while this request arrived; retry", 503, 0)
        if model.batcher.queued_rows + rows > self.config.max_queue_rows:
            self.metrics.refused.labels(model.name).inc()
            model.batcher.statistics.failed("REJECTED", 0)
            raise RequestError(
                f"model {model.name!r} is overloaded: {model.batcher.queued_rows} rows wait to run "
                f"(at most {self.config.max_queue_rows}); retry shortly",
                503,
                retry_after_s=1,
            )
        # Counted only once its body is read and checked: the batchers wait for
        # in-flight requests, and a client still uploading must not hold them.
        self.in_flight += 1
        started, failure = time.monotonic(), "OTHER"
        try:
            outputs = await model.batcher.submit(inputs, None if timeout_us is None else timeout_us / 1e6)
            failure = None
        except QueueTimeout as expired:
            failure = "REJECTED"
            raise RequestError(
                f"request timeout expired: it waited {expired.waited_s * 1e6:,.0f} µs for a batch, past its "
                f"parameters.timeout of {timeout_us:,} µs",
                503,
            ) from None
        except BatcherClosed:
            failure = "CANCELED"
            raise
        except Exception:
            failure = "BACKEND"  # the model's run failed
            raise
        finally:
            self.in_flight -= 1
            ns = int((time.monotonic() - started) * 1e9)
            if failure is None:
                model.batcher.statistics.succeeded(ns)
            else:
                model.batcher.statistics.failed(failure, ns)
        for name, array in outputs.items():
            if not np.isfinite(array).all():  # JSON has no NaN or Inf: they would go out as null
                raise RequestError(
                    f"the model's outputs for these inputs are not finite ({name!r}); send "
                    "inputs of a sensible size (z of a VAE is near N(0, I))"
                )
        return outputs

    def generate_inputs(self, model, request):
        """The generator's inputs for a `:generate` request `{"n", "seed"?, "labels"?}`, and
        the seed they were drawn with: the request's, or one drawn here when it sent none,
        so that the answer names a seed that repeats it."""
        if model.part != "decoder":
            raise RequestError(f"model {model.name!r} is an encoder; :generate needs a decoder (generator)")
        # A misspelt field ("seeds") would otherwise fall back to its default unseen.
        unknown = sorted(set(request) - {"n", "seed", "labels"})
        if unknown:
            raise RequestError(
                ':generate takes "n", "seed" and (a conditional model) "labels"; got unknown field(s) '
                + ", ".join(repr(key) for key in unknown)
            )
        n, seed = request.get("n"), request.get("seed")
        max_rows = self.config.max_rows
        if not is_int(n) or not 0 < n <= max_rows:
            raise RequestError(f'"n" must be an integer in [1, {max_rows}]; got {n!r}')
        if seed is None:
            # Below 2^53, so that a JavaScript client reads it back exactly; two unseeded
            # requests in a million share one with odds of about 1 in 18,000.
            seed = secrets.randbelow(2**53)
        elif not is_int(seed) or seed < 0:
            raise RequestError(f'"seed" must be a non-negative integer; got {seed!r}')
        conditional = model.manifest.get("conditional")
        if "labels" in request and not conditional:
            raise RequestError(f'model {model.name!r} is not conditional: leave out "labels"')
        inputs = {"z": draw_latents(model, n, seed)}
        noise = model.manifest.get("decoder_noise")
        if noise:  # a generator that draws x pixel by pixel from uniforms beside z
            rng = np.random.default_rng((seed, 1))  # a stream apart from z's
            inputs["noise"] = rng.uniform(size=(n, *noise["shape"])).astype(np.float32)
        if conditional:
            labels = request.get("labels")
            if not isinstance(labels, list) or len(labels) != n or not all(is_int(y) for y in labels):
                raise RequestError(
                    f'model {model.name!r} is conditional: "labels" must be a list of {n} integer class ids'
                )
            inputs["labels"] = check_class_ids(labels, "labels", model.manifest["num_classes"])
        return inputs, seed

    def loaded(self):
        """Every loaded model, each version once."""
        return every_version(self.models)

    def model_refusal(self, name, version=None):
        """Why model `name` is not ready (its newest version was refused, though an older
        one may serve), or None when it is; `version` asks about that version alone.
        Raises as `find` does for a model or version it does not serve."""
        self.find(name, version)
        return self.refused.get(name) if version is None else None

    def _start_batcher(self, model):
        model.batcher = DynamicBatcher(
            model.backend,
            self.config.max_batch_size,
            self.config.batch_delay_ms / 1000.0,
            on_batch=self.metrics.batch_size.labels(model.name).observe,
            in_flight=lambda: self.in_flight,
        )
        model.batcher.start()
        self.metrics.queued_rows.labels(model.name).set_function(lambda batcher=model.batcher: batcher.queued_rows)

    async def start(self):
        """Starts each model's batcher (and the repository poll); the service is then ready."""
        for model in self.loaded():
            self._start_batcher(model)
        if self.config.poll_seconds:
            self._poller = asyncio.get_running_loop().create_task(self._poll())
        self.ready = True
        await self._changed()

    async def _changed(self):
        for listener in self.listeners:
            await listener()

    async def stop(self):
        """Not ready any more; the poll ends, each batcher finishes its run and stops."""
        self.ready = False
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        for model in self.loaded():
            await model.batcher.stop()

    def repository_index(self, ready_only=False):
        """Triton's repository index: every model version on disk that was looked at, with
        its state: READY (served), UNAVAILABLE with the reason (refused), or UNAVAILABLE
        "unloaded" (through `unload`, until `load`); with `ready_only`, the READY ones."""
        index = [
            {"name": model.name, "version": model.version, "state": "READY", "reason": ""}
            for model in every_version(self.models)
        ]
        index += [{"name": name, "state": "UNAVAILABLE", "reason": reason} for name, reason in self.refused.items()]
        index += [{"name": name, "state": "UNAVAILABLE", "reason": "unloaded"} for name in self.unloaded]
        if ready_only:
            index = [entry for entry in index if entry["state"] == "READY"]
        return sorted(index, key=lambda entry: (entry["name"], int(entry.get("version", 0))))

    async def load(self, name, parameters=None):
        """Triton's repository load: serves model `name` as it is on disk now (the
        repository is read again), undoing an `unload`. Raises a RequestError (400) with
        the reason when it cannot be served, or when `parameters` (Triton's configuration
        overrides) are given: a model's configuration comes from its export."""
        if parameters:
            raise RequestError(
                "load takes no parameters on this server: a model's configuration and files come from its "
                "export; write a new version with `tfvae export` and load (or poll) again"
            )
        self.unloaded.discard(name)
        await self.refresh()
        if name in self.refused:
            raise RequestError(f"failed to load model {name!r}: {self.refused[name]}")
        if name not in self.models:
            raise RequestError(f"no model {name!r} in the repository {self.config.export_dir}")

    async def unload(self, name):
        """Triton's repository unload: stops serving every version of model `name` (queued
        requests run first) until `load`; a repository poll does not bring it back."""
        if name not in self.models and name not in self.refused:
            raise RequestError(f"unknown model {name!r}; this server has {sorted(self.models)}", 404)
        self.unloaded.add(name)
        await self.refresh()

    async def _poll(self):
        while True:
            await asyncio.sleep(self.config.poll_seconds)
            try:
                await self.refresh()
            except Exception:  # noqa: BLE001 - the poll must outlive any one bad look
                logger.exception("repository poll failed; serving what was loaded")

    async def refresh(self):
        """Serves the repository as it is now: versions that appeared are loaded (in a
        worker thread, while requests are served) and swapped in at once, unchanged ones
        are kept as they are, and removed ones are unloaded after their queued requests."""
        config = self.config
        try:
            repository = await asyncio.get_running_loop().run_in_executor(
                None,
                lambda: load_repository(
                    config.export_dir,
                    config.backend,
                    config.threads,
                    loaded=self.models,
                    latest=config.latest_versions,
                    known=self.refused,
                    skip=frozenset(self.unloaded),
                ),
            )
        except RepositoryError as error:
            logger.error("%s; serving the versions loaded before", error)
            return
        kept = {id(model) for model in every_version(repository.models)}
        gone = [model for model in self.loaded() if id(model) not in kept]
        for model in every_version(repository.models):
            if model.batcher is None:
                self._start_batcher(model)
                logger.warning("serving %s version %s", model.name, model.version)
        # One assignment each: a request finds the old set or the new one, never a mix.
        self.models, self.refused = repository.models, repository.refused
        await self._changed()
        for model in gone:
            logger.warning("unloading %s version %s", model.name, model.version)
            await model.batcher.stop(drain_s=config.grace_s)


def draw_latents(model, n, seed):
    """n draws of z from the model's prior: N(0, I), or a mixture exported beside it."""
    prior = model.manifest["prior"]
    if prior is None:
        raise RequestError(f"model {model.name!r} is an autoencoder: it has no prior to sample; :generate needs a VAE")
    if prior["distribution"] == "unsupported":
        raise RequestError(
            f"model {model.name!r} has a prior the server cannot sample; "
            "sample z with tfvae and call :predict or /v2/.../infer"
        )
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, model.manifest["latent_dim"])).astype(np.float32)
    if prior["distribution"] == "standard_normal":
        return noise
    components = model.prior_components  # a gaussian_mixture: checked present at load
    # The mixture is over the last columns of z (all of them for a one-layer VAE; z_L after
    # the lower layers' N(0, I) noise for a hierarchical generator).
    top = components["loc"].shape[1]
    chosen = rng.integers(len(components["loc"]), size=n)  # a uniform mixture
    if "scale" in components:
        drawn = components["loc"][chosen] + components["scale"][chosen] * noise[:, -top:]
    else:
        drawn = components["loc"][chosen] + np.einsum("nij,nj->ni", components["scale_tril"][chosen], noise[:, -top:])
    noise[:, -top:] = drawn
    return noise
