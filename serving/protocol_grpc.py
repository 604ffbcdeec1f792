"""The KServe v2 / Open Inference Protocol over gRPC: `inference.GRPCInferenceService`.

The messages and the service's stubs are the ones `tritonclient[grpc]` ships
(`tritonclient.grpc.service_pb2`), so Triton's own clients work unmodified. ModelInfer
takes each input either typed (`contents.fp32_contents`, `int64_contents`, ...) or as
little-endian bytes in `raw_input_contents` (what `tritonclient.grpc` sends), and answers
in `raw_output_contents`, as Triton does. Requests go through the same `ModelService` as
REST: the same models, dynamic batcher, row limit and metrics; a request's errors map to
gRPC status codes (400 -> INVALID_ARGUMENT, 404 -> NOT_FOUND, 413 -> RESOURCE_EXHAUSTED,
503 -> UNAVAILABLE).

Beside it runs the standard health service, `grpc.health.v1.Health` (grpcio-health-checking's
servicer, so `grpc_health_probe`, Kubernetes' gRPC probes and load balancers read it):
the server ("") and `inference.GRPCInferenceService` are SERVING when the server is ready,
each model by its name when its newest version serves; a stop turns every status to
NOT_SERVING before in-flight RPCs finish.
"""

import functools
import logging
import math
import time

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

import tfvae
from tfvae.serving import access, protocol_v2
from tfvae.serving.errors import RequestError
from tfvae.serving.tensors import V2_DATATYPES, check_rows, v2_datatype

logger = logging.getLogger("tfvae.serving")

INFERENCE_SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name  # inference.GRPCInferenceService

_STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}
# The typed field of `InferTensorContents` that holds each v2 datatype.
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}


def rpc(label):
    """Counts and times an RPC in the service's metrics; a RequestError aborts the call with
    its status code, any other fault with INTERNAL (logged)."""

    def decorate(method):
        @functools.wraps(method)
        async def wrapped(self, request, context):
            started, code = time.perf_counter(), grpc.StatusCode.OK
            try:
                return await method(self, request, context)
            except RequestError as error:
                code = _STATUS_CODES.get(error.status, grpc.StatusCode.INVALID_ARGUMENT)
                await context.abort(code, error.message)
            except Exception as error:
                if isinstance(error, grpc.aio.AbortError):
                    raise
                code = grpc.StatusCode.INTERNAL
                logger.exception("internal error in gRPC %s", label)
                await context.abort(code, "internal server error; see the server log")
            finally:
                self.service.metrics.requests.labels(label, code.name).inc()
                self.service.metrics.latency.labels(label).observe(time.perf_counter() - started)

        return wrapped

    return decorate


def _read_input(entry, tensor, raw, max_rows):
    """One `InferInputTensor` as a checked array for the model's `tensor`."""
    name, shape = entry.name, list(entry.shape)
    protocol_v2.check_declared_shape(name, shape, tensor, max_rows)
    expected = v2_datatype(tensor["datatype"])
    if entry.datatype != expected:
        raise RequestError(f"input {name!r} has datatype {entry.datatype!r}; the model takes {expected}")
    count = math.prod(shape)
    if raw is not None:
        dtype = np.dtype(V2_DATATYPES[expected]).newbyteorder("<")
        if len(raw) != count * dtype.itemsize:
            raise RequestError(
                f"input {name!r}: raw_input_contents holds {len(raw)} bytes; shape {shape} of {expected} "
                f"needs {count * dtype.itemsize}"
            )
        array = np.frombuffer(raw, dtype=dtype).reshape(shape)
    else:
        values = getattr(entry.contents, _CONTENTS[expected])
        if len(values) != count:
            field = _CONTENTS[expected]
            raise RequestError(
                f"input {name!r}: contents.{field} holds {len(values)} values; shape {shape} needs {count}"
            )
        array = np.asarray(values, dtype=V2_DATATYPES[expected]).reshape(shape)
    return check_rows(array, tensor, max_rows)


def parse_infer_request(request, model, max_rows):
    """`({input name: array}, [output names])` of a `ModelInferRequest`."""
    tensors = {tensor["name"]: tensor for tensor in model.inputs}
    names = [entry.name for entry in request.inputs]
    if sorted(names) != sorted(tensors):
        raise RequestError(f"inputs {names} do not match the model's inputs {sorted(tensors)}")
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise RequestError(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs: send every input "
            "raw or every input in contents"
        )
    inputs = {
        entry.name: _read_input(entry, tensors[entry.name], raw[index] if raw else None, max_rows)
        for index, entry in enumerate(request.inputs)
    }
    rows = {array.shape[0] for array in inputs.values()}
    if len(rows) > 1:
        raise RequestError(f"inputs disagree on the number of rows: {sorted(rows)}")
    requested = [output.name for output in request.outputs] or list(model.output_names)
    unknown = [name for name in requested if name not in model.output_names]
    if unknown:
        raise RequestError(f"unknown output(s) {unknown}; the model has {model.output_names}")
    return inputs, requested


def format_infer_response(request, model, outputs, requested):
    """A `ModelInferResponse` with each requested output as little-endian FP32 bytes."""
    response = pb.ModelInferResponse(model_name=model.name, model_version=model.version, id=request.id)
    for name in requested:
        array = np.ascontiguousarray(outputs[name], dtype="<f4")
        response.outputs.add(name=name, datatype="FP32", shape=array.shape)
        response.raw_output_contents.append(array.tobytes())
    return response


def _tensor_metadata(tensor):
    entry = protocol_v2.tensor_metadata(tensor)
    return pb.ModelMetadataResponse.TensorMetadata(name=entry["name"], datatype=entry["datatype"], shape=entry["shape"])


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """The v2 gRPC service over a `ModelService`, with Triton's repository index, load and
    unload. Triton's RPCs that tfvae has no use for (shared memory, tracing, logging,
    streaming) answer UNIMPLEMENTED."""

    def __init__(self, service):
        self.service = service

    @rpc("grpc_server_live")
    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    @rpc("grpc_server_ready")
    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.service.readiness()[0])

    @rpc("grpc_server_metadata")
    async def ServerMetadata(self, request, context):
        extensions = ["binary_tensor_data", "model_repository"]
        return pb.ServerMetadataResponse(name="tfvae", version=tfvae.__version__, extensions=extensions)

    @rpc("grpc_model_ready")
    async def ModelReady(self, request, context):
        try:
            refusal = self.service.model_refusal(request.name, request.version or None)
        except RequestError as error:
            if error.status == 404:
                return pb.ModelReadyResponse(ready=False)
            raise
        return pb.ModelReadyResponse(ready=refusal is None)

    @rpc("grpc_model_metadata")
    async def ModelMetadata(self, request, context):
        model = self.service.find(request.name, request.version or None)
        return pb.ModelMetadataResponse(
            name=model.name,
            versions=sorted(self.service.models[model.name], key=int),
            platform="onnxruntime_onnx",
            inputs=[_tensor_metadata(t) for t in model.inputs],
            outputs=[_tensor_metadata(t) for t in model.outputs],
        )

    @rpc("grpc_repository_index")
    async def RepositoryIndex(self, request, context):
        entry = pb.RepositoryIndexResponse.ModelIndex
        return pb.RepositoryIndexResponse(
            models=[
                entry(name=e["name"], version=e.get("version", ""), state=e["state"], reason=e["reason"])
                for e in self.service.repository_index(request.ready)
            ]
        )

    @rpc("grpc_repository_load")
    async def RepositoryModelLoad(self, request, context):
        await self.service.load(request.model_name, dict(request.parameters))
        return pb.RepositoryModelLoadResponse()

    @rpc("grpc_repository_unload")
    async def RepositoryModelUnload(self, request, context):
        await self.service.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()

    @rpc("grpc_model_infer")
    async def ModelInfer(self, request, context):
        model = self.service.find(request.model_name, request.model_version or None)
        inputs, requested = parse_infer_request(request, model, self.service.config.max_rows)
        timeout = request.parameters["timeout"] if "timeout" in request.parameters else None
        timeout_us = protocol_v2.request_timeout_us(
            None if timeout is None else getattr(timeout, timeout.WhichOneof("parameter_choice") or "int64_param")
        )
        outputs = await self.service.run(model, inputs, timeout_us)
        return format_infer_response(request, model, outputs, requested)


class KeyInterceptor(grpc.aio.ServerInterceptor):
    """The same check for gRPC: an RPC without a key of its method's group ends
    UNAUTHENTICATED before it reaches the servicer."""

    def __init__(self, keys, on_refusal):
        self.keys, self.on_refusal = keys, on_refusal

    async def intercept_service(self, continuation, details):
        group = access.grpc_group(details.method)
        authorization = next((v for k, v in details.invocation_metadata or () if k == "authorization"), "")
        message = self.keys.refusal(group, authorization)
        if message is None:
            return await continuation(details)
        self.on_refusal()

        async def refuse(request, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

        return grpc.unary_unary_rpc_method_handler(refuse)


class Health(HealthServicer):
    """The standard health service, its statuses kept to the `ModelService`'s readiness:
    `update` runs at start and after every repository change. Check answers from
    `statuses` (NOT_FOUND for a name never served); Watch streams the library's."""

    def __init__(self, service):
        super().__init__()
        self.service = service
        self.statuses = {}
        service.listeners.append(self.update)

    async def update(self):
        ready = self.service.readiness()[0]
        serving = {"": ready, INFERENCE_SERVICE: ready}
        for name in {*self.service.models, *self.service.refused}:
            serving[name] = self.service.ready and name in self.service.models and name not in self.service.refused
        for name in set(self.statuses) - set(serving):  # a model gone from the repository
            del self.statuses[name]
            await self.set(name, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
        for name, ok in serving.items():
            self.statuses[name] = (
                health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            await self.set(name, self.statuses[name])

    async def shut_down(self):
        """NOT_SERVING for every status, for good."""
        self.statuses = dict.fromkeys(self.statuses, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.enter_graceful_shutdown()

    @rpc("grpc_health_check")
    async def Check(self, request, context):
        if request.service not in self.statuses:
            raise RequestError(
                f"unknown service {request.service!r}; ask for '' (the server), {INFERENCE_SERVICE!r} or a "
                f"model's name: {sorted(self.service.models)}",
                404,
            )
        return health_pb2.HealthCheckResponse(status=self.statuses[request.service])


class Server:
    """The gRPC front end of a `ModelService`: `grpc.aio` server and health service, and
    TF Serving's gRPC services with `ServerConfig.tfserving_grpc`."""

    def __init__(self, service, address):
        self.server = create_server(service, address)
        self.health = Health(service)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        if service.config.tfserving_grpc:
            from tfvae.serving import protocol_tfserving_grpc  # imports TensorFlow: opt-in

            protocol_tfserving_grpc.add_to_server(service, self.server)

    async def start(self):
        await self.health.update()
        await self.server.start()

    async def stop(self, grace_s):
        """NOT_SERVING for every status at once, then in-flight RPCs finish within `grace_s`."""
        await self.health.shut_down()
        await self.server.stop(grace_s)


def create_server(service, address):
    """A `grpc.aio` server for `service` on `address` ("host:port"), not yet started.

    Messages are limited like REST bodies (`ServerConfig.max_body_bytes`); larger ones are
    refused by gRPC itself with RESOURCE_EXHAUSTED. With `ServerConfig.api_keys`, RPCs
    need a key of their group; with `tls_cert` and `tls_key`, the port speaks TLS.
    """
    config = service.config
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", config.max_body_bytes), ("grpc.max_send_message_length", -1)],
        maximum_concurrent_rpcs=config.max_connections,
        interceptors=[KeyInterceptor(service.keys, service.count_unauthenticated)] if service.keys else None,
    )
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(service), server)
    if config.tls_cert:
        with open(config.tls_key, "rb") as key, open(config.tls_cert, "rb") as cert:
            credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen for gRPC on {address}")
    return server
