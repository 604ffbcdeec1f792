"""The ASGI app: KServe v2 and TF Serving REST routes over one model repository."""

import asyncio
import contextlib
import dataclasses
import functools
import gc
import logging
import re
import time

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import Route

import tfvae
from tfvae.serving import protocol_tfserving, protocol_v2
from tfvae.serving.batching import DynamicBatcher
from tfvae.serving.errors import RequestError
from tfvae.serving.metrics import Metrics
from tfvae.serving.repository import latest, load_repository
from tfvae.serving.tensors import check_class_ids, load_json_object

logger = logging.getLogger("tfvae.serving")
_ACCEPTED_TYPES = ("application/json", "application/octet-stream")
_V1_TARGET = re.compile(r"^(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?(?::(?P<verb>[a-z]+))?$")


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
      threads: ONNX Runtime intra-op threads per model (default: all cores).
      ready_when: "all": /v2/health/ready answers 200 only when every model in the
        repository serves its newest version; "any": when one model serves.
      header_timeout_s: a connection must send each request's headers within this
        (else it is closed): `tfvae.serving.connections.headers_deadline`.
      body_timeout_s: the whole body must arrive within this (else 408), so a client
        trickling bytes cannot hold a request open.
      max_connections: connections and requests served at once; more get 503.
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
    on_ready: object = None  # called with the loaded models once the server takes requests


def _json(value, status=200):
    return Response(orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY), status, media_type="application/json")


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


def create_app(config):
    """Loads every model in `config.export_dir` and returns the Starlette app serving them."""
    repository = load_repository(config.export_dir, config.backend, config.threads)
    models = repository.models
    metrics = Metrics()
    state = {"ready": False, "in_flight": 0}

    def endpoint(label):
        """Counts, times and guards a handler: client errors become 4xx, faults 500 (logged)."""

        def decorate(handler):
            @functools.wraps(handler)
            async def wrapped(request):
                started = time.perf_counter()
                try:
                    response = await handler(request)
                except RequestError as error:
                    response = _json({"error": error.message}, error.status)
                except ClientDisconnect:
                    logger.info("client left during %s %s", request.method, request.url.path)
                    response = _json({"error": "client disconnected"}, 499)
                except Exception:
                    logger.exception("internal error in %s %s", request.method, request.url.path)
                    response = _json({"error": "internal server error; see the server log"}, 500)
                metrics.requests.labels(label, str(response.status_code)).inc()
                metrics.latency.labels(label).observe(time.perf_counter() - started)
                return response

            return wrapped

        return decorate

    async def run_batched(model, inputs):
        # Counted only once its body is read and checked: the batchers wait for
        # in-flight requests, and a client still uploading must not hold them.
        state["in_flight"] += 1
        try:
            outputs = await model.batcher.submit(inputs)
        finally:
            state["in_flight"] -= 1
        for name, array in outputs.items():
            if not np.isfinite(array).all():  # JSON has no NaN or Inf: they would go out as null
                raise RequestError(
                    f"the model's outputs for these inputs are not finite ({name!r}); send "
                    "inputs of a sensible size (z of a VAE is near N(0, I))"
                )
        return outputs

    def find(name, version=None):
        if name not in models and name in repository.refused:
            raise RequestError(f"model {name!r} is not served: {repository.refused[name]}", 503)
        if name not in models:
            raise RequestError(f"unknown model {name!r}; this server has {sorted(models)}", 404)
        if version is None:
            return latest(models[name])
        if version not in models[name]:
            raise RequestError(
                f"model {name!r} has no version {version!r}; it has {sorted(models[name], key=int)}", 404
            )
        return models[name][version]

    async def read_body(request, allow_binary):
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        accepted = _ACCEPTED_TYPES if allow_binary else _ACCEPTED_TYPES[:1]
        if content_type and content_type not in accepted:
            raise RequestError(f"unsupported content type {content_type!r}; send {' or '.join(accepted)}", 415)
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > config.max_body_bytes:
            raise RequestError(
                f"body of {declared} bytes is over this server's {config.max_body_bytes}-byte limit", 413
            )
        body = bytearray()
        try:
            async with asyncio.timeout(config.body_timeout_s):
                async for chunk in request.stream():
                    body.extend(chunk)
                    if len(body) > config.max_body_bytes:
                        raise RequestError(f"body is over this server's {config.max_body_bytes}-byte limit", 413)
        except TimeoutError:
            raise RequestError(f"the body did not arrive within {config.body_timeout_s:g} s", 408) from None
        return bytes(body)

    @endpoint("v2_health_live")
    async def live(request):
        return _json({"live": True})

    @endpoint("v2_health_ready")
    async def ready(request):
        if state["ready"] and config.ready_when == "all" and repository.refused:
            return _json({"ready": False, "refused": repository.refused}, 503)
        return _json({"ready": state["ready"]}, 200 if state["ready"] else 503)

    @endpoint("v2_server_metadata")
    async def server_metadata(request):
        return _json({"name": "tfvae", "version": tfvae.__version__, "extensions": ["binary_tensor_data"]})

    @endpoint("v2_model_metadata")
    async def model_metadata(request):
        model = find(request.path_params["name"], request.path_params.get("version"))
        return _json(protocol_v2.model_metadata(model, models[model.name]))

    @endpoint("v2_model_ready")
    async def model_ready(request):
        name, version = request.path_params["name"], request.path_params.get("version")
        model = find(name, version)
        if version is None and name in repository.refused:  # serving an older version than its newest
            return _json({"name": name, "ready": False, "error": repository.refused[name]}, 503)
        return _json({"name": model.name, "ready": True})

    @endpoint("v2_infer")
    async def infer(request):
        model = find(request.path_params["name"], request.path_params.get("version"))
        body = await read_body(request, allow_binary=True)
        parsed, inputs, requested = protocol_v2.parse_infer_request(
            body, request.headers.get(protocol_v2.HEADER_LENGTH), model, config.max_rows
        )
        outputs = await run_batched(model, inputs)
        content, headers = protocol_v2.format_infer_response(parsed, model, outputs, requested)
        return Response(content, headers=headers)

    @endpoint("v1_model_status")
    async def v1_status(request):
        name, version, verb = _v1_target(request)
        if verb:
            raise RequestError(f"unknown endpoint :{verb} for GET; use GET /v1/models/{name}", 404)
        model = find(name, version)
        return _json(protocol_tfserving.model_status([model.version] if version else models[name]))

    @endpoint("v1_predict")
    async def v1_post(request):
        name, version, verb = _v1_target(request)
        model = find(name, version)
        body = await read_body(request, allow_binary=False)
        if verb == "predict":
            form, inputs, names = protocol_tfserving.parse_predict_request(body, model, config.max_rows)
            outputs = await run_batched(model, inputs)
            return Response(
                protocol_tfserving.format_predict_response(form, outputs, names), media_type="application/json"
            )
        if verb == "generate":
            return await generate(model, body)
        raise RequestError(f"unknown verb :{verb}; use :predict or :generate", 404)

    async def generate(model, body):
        if model.part != "decoder":
            raise RequestError(f"model {model.name!r} is an encoder; :generate needs a decoder (generator)")
        request = load_json_object(body)
        n, seed = request.get("n"), request.get("seed")
        if not isinstance(n, int) or isinstance(n, bool) or not 0 < n <= config.max_rows:
            raise RequestError(f'"n" must be an integer in [1, {config.max_rows}]; got {n!r}', 400)
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
            raise RequestError(f'"seed" must be a non-negative integer; got {seed!r}')
        conditional = model.manifest.get("conditional")
        if "labels" in request and not conditional:
            raise RequestError(f'model {model.name!r} is not conditional: leave out "labels"')
        inputs = {"z": draw_latents(model, n, seed)}
        if conditional:
            labels = request.get("labels")
            if (
                not isinstance(labels, list)
                or len(labels) != n
                or not all(isinstance(y, int) and not isinstance(y, bool) for y in labels)
            ):
                raise RequestError(
                    f'model {model.name!r} is conditional: "labels" must be a list of {n} integer class ids'
                )
            inputs["labels"] = check_class_ids(labels, "labels", model.manifest["num_classes"])
        outputs = await run_batched(model, inputs)
        return _json({"samples": outputs["mean"], "z": inputs["z"]})

    def _v1_target(request):
        match = _V1_TARGET.match(request.path_params["target"])
        if not match:
            raise RequestError(f"cannot parse /v1/models/{request.path_params['target']}", 404)
        return match["name"], match["version"], match["verb"]

    @endpoint("metrics")
    async def metrics_endpoint(request):
        content, media_type = metrics.exposition()
        return Response(content, media_type=media_type)

    async def startup():
        for versions in models.values():
            for model in versions.values():
                model.batcher = DynamicBatcher(
                    model.backend,
                    config.max_batch_size,
                    config.batch_delay_ms / 1000.0,
                    on_batch=metrics.batch_size.labels(model.name).observe,
                    in_flight=lambda: state["in_flight"],
                )
                model.batcher.start()
        state["ready"] = True

    async def shutdown():
        state["ready"] = False
        for versions in models.values():
            for model in versions.values():
                await model.batcher.stop()

    routes = [
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2", server_metadata),
        Route("/v2/models/{name}", model_metadata),
        Route("/v2/models/{name}/versions/{version}", model_metadata),
        Route("/v2/models/{name}/ready", model_ready),
        Route("/v2/models/{name}/versions/{version}/ready", model_ready),
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", infer, methods=["POST"]),
        Route("/v1/models/{target:path}", v1_status, methods=["GET"]),
        Route("/v1/models/{target:path}", v1_post, methods=["POST"]),
        Route("/metrics", metrics_endpoint),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await startup()
        # The process holds millions of long-lived objects (TensorFlow is imported with
        # tfvae); a full garbage collection walking them stalls the event loop ~200 ms,
        # delaying every in-flight request. Freezing them leaves only request garbage.
        gc.freeze()
        if config.on_ready:
            config.on_ready(models)
        yield
        await shutdown()

    async def http_error(request, error):
        metrics.requests.labels("unrouted", str(error.status_code)).inc()
        message = {
            404: f"no such endpoint: {request.method} {request.url.path}",
            405: f"{request.method} is not allowed on {request.url.path}",
        }.get(error.status_code, error.detail)
        return _json({"error": message}, error.status_code)

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
    app.state.models = models
    return app
