"""The ASGI app: KServe v2 and TF Serving REST routes over one `ModelService`, and with
`ServerConfig.grpc_port` the KServe v2 gRPC service beside them, in the same process and
event loop (`protocol_grpc`)."""

import contextlib
import gc

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.responses import Response
from starlette.routing import Route

from tfvae.serving import access, protocol_tfserving, protocol_v2
from tfvae.serving.connections import headers_deadline
from tfvae.serving.http import endpoint, json_response
from tfvae.serving.service import ModelService


def create_app(config):
    """Loads every model in `config.export_dir` and returns the Starlette app serving them.

    The app's `state.service` is the `ModelService`; its batchers start with the app's
    lifespan (so serve it with uvicorn, or Starlette's `TestClient` as a context manager).
    """
    service = ModelService(config)

    @endpoint(service, "metrics")
    async def metrics(request):
        content, media_type = service.metrics.exposition()
        return Response(content, media_type=media_type)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await service.start()
        grpc_server = None
        if config.grpc_port is not None:
            from tfvae.serving import protocol_grpc

            grpc_server = protocol_grpc.Server(service, f"{config.host}:{config.grpc_port}")
            await grpc_server.start()
        # A full garbage collection walks every object the process holds and stalls the
        # event loop meanwhile: 258 ms over 498k objects when the server imported
        # TensorFlow, 6 ms over the 38k of the ONNX server now (bench/serve_startup.py;
        # the SavedModel backend still imports it). Freezing what start-up made leaves
        # collections only request garbage to walk.
        gc.freeze()
        if config.on_ready:
            config.on_ready(service.models)
        yield
        if grpc_server is not None:  # in-flight RPCs finish (within the grace) on running batchers
            await grpc_server.stop(config.grace_s)
        await service.stop()
        gc.unfreeze()

    async def unrouted(request, error):
        service.metrics.requests.labels("unrouted", str(error.status_code)).inc()
        message = {
            404: f"no such endpoint: {request.method} {request.url.path}",
            405: f"{request.method} is not allowed on {request.url.path}",
        }.get(error.status_code, error.detail)
        return json_response({"error": message}, error.status_code)

    routes = [*protocol_v2.routes(service), *protocol_tfserving.routes(service), Route("/metrics", metrics)]
    middleware = (
        [Middleware(access.RequireKeys, keys=service.keys, on_refusal=service.count_unauthenticated)]
        if service.keys
        else []
    )
    app = Starlette(
        routes=routes, middleware=middleware, lifespan=lifespan, exception_handlers={HTTPException: unrouted}
    )
    app.state.service = service
    return app


def uvicorn_config(app, config, port):
    """uvicorn's settings for serving `app` as `tfvae serve` does: `config`'s host, TLS,
    connection limit and header deadline, and its grace period for in-flight requests."""
    import uvicorn  # only where a server starts: the model commands never need it

    return uvicorn.Config(
        app,
        host=config.host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=config.grace_s,
        limit_concurrency=config.max_connections,
        http=headers_deadline(config.header_timeout_s),
        ssl_certfile=config.tls_cert,
        ssl_keyfile=config.tls_key,
    )
