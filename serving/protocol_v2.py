"""The KServe v2 / Open Inference Protocol over HTTP, with the binary tensor data extension.

Request: a JSON object `{"id"?, "parameters"?, "inputs": [{"name", "shape", "datatype",
"data" | "parameters": {"binary_data_size"}}], "outputs"?: [{"name", "parameters":
{"binary_data"}}]}`; with the extension, the header `Inference-Header-Content-Length`
gives the JSON's length and the binary tensors follow it, in input order.
"""

import math

import numpy as np
import orjson
from starlette.responses import Response
from starlette.routing import Route

import tfvae
from tfvae.serving.errors import RequestError
from tfvae.serving.http import endpoint, json_response, read_body
from tfvae.serving.tensors import (
    V2_DATATYPES,
    array_from_json,
    check_rows,
    check_shape,
    is_int,
    load_json_object,
    v2_datatype,
)

HEADER_LENGTH = "inference-header-content-length"


def _split_body(body, header_length):
    if header_length is None:
        return body, b""
    try:
        length = int(header_length)
    except ValueError:
        raise RequestError(f"Inference-Header-Content-Length must be an integer; got {header_length!r}") from None
    if not 0 < length <= len(body):
        raise RequestError(f"Inference-Header-Content-Length {length} is outside the body's {len(body)} bytes")
    return body[:length], body[length:]


def parameters(obj, where):
    """`obj["parameters"]`: a JSON object (empty when absent)."""
    value = obj.get("parameters")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RequestError(f'"parameters" of {where} must be a JSON object; got {value!r}')
    return value


def check_declared_shape(name, shape, tensor, max_rows):
    """The declared shape, checked against the model's before any array is made from it."""
    if not isinstance(shape, list) or not all(is_int(d) and d >= 0 for d in shape):
        raise RequestError(f'input {name!r} needs "shape", a list of non-negative integers; got {shape!r}')
    check_shape(name, shape, tensor, max_rows)


def _read_input(entry, tensor, binary, offset, max_rows):
    name = entry.get("name")
    shape, datatype = entry.get("shape"), entry.get("datatype")
    check_declared_shape(name, shape, tensor, max_rows)
    if datatype != v2_datatype(tensor["datatype"]):
        raise RequestError(
            f"input {name!r} has datatype {datatype!r}; the model takes {v2_datatype(tensor['datatype'])}"
        )
    size = parameters(entry, f"input {name!r}").get("binary_data_size")
    count = math.prod(shape)  # exact (Python ints) and bounded: the shape was checked
    if size is not None:
        dtype = np.dtype(V2_DATATYPES[datatype]).newbyteorder("<")
        if not is_int(size) or size != count * dtype.itemsize or offset + size > len(binary):
            raise RequestError(
                f"input {name!r}: binary_data_size {size!r} does not match shape {shape} "
                f"of {datatype} or the bytes sent"
            )
        array = np.frombuffer(binary, dtype=dtype, count=count, offset=offset).reshape(shape)
        return check_rows(array, tensor, max_rows), offset + size
    if "data" not in entry:
        raise RequestError(f'input {name!r} needs "data" (or binary data with binary_data_size)')
    return check_rows(array_from_json(entry["data"], shape, name), tensor, max_rows), offset


def request_timeout_us(value):
    """A request's `parameters.timeout` (microseconds, as Triton reads it), checked; None
    when absent."""
    if value is None:
        return None
    if not is_int(value) or not 0 < value <= 2**63 - 1:
        raise RequestError(f"parameters.timeout must be a positive integer of microseconds; got {value!r}")
    return int(value)


def parse_infer_request(body, header_length, model, max_rows):
    """Returns `(request json, {input name: array}, [(output name, binary?)])`."""
    text, binary = _split_body(body, header_length)
    request = load_json_object(text)
    entries = request.get("inputs")
    if not isinstance(entries, list) or not entries:
        raise RequestError('the request needs "inputs", a non-empty list of tensors')
    tensors = {tensor["name"]: tensor for tensor in model.inputs}
    if not all(isinstance(entry, dict) for entry in entries):
        raise RequestError('each of "inputs" must be a JSON object {"name", "shape", "datatype", "data"}')
    names = [entry.get("name") for entry in entries]
    if not all(isinstance(name, str) for name in names) or sorted(names) != sorted(tensors):
        raise RequestError(f"inputs {names} do not match the model's inputs {sorted(tensors)}")
    inputs, offset = {}, 0
    for entry in entries:
        inputs[entry["name"]], offset = _read_input(entry, tensors[entry["name"]], binary, offset, max_rows)
    if offset != len(binary):
        raise RequestError(f"{len(binary) - offset} bytes of binary data follow the inputs unused")
    rows = {array.shape[0] for array in inputs.values()}
    if len(rows) > 1:
        raise RequestError(f"inputs disagree on the number of rows: {sorted(rows)}")
    return request, inputs, _requested_outputs(request, model)


def _requested_outputs(request, model):
    default_binary = bool(parameters(request, "the request").get("binary_data_output", False))
    requested = request.get("outputs")
    if requested is None:
        return [(name, default_binary) for name in model.output_names]
    if not isinstance(requested, list) or not all(isinstance(o, dict) and "name" in o for o in requested):
        raise RequestError('"outputs" must be a list of {"name": ...} objects')
    unknown = [o["name"] for o in requested if o["name"] not in model.output_names]
    if unknown:
        raise RequestError(f"unknown output(s) {unknown}; the model has {model.output_names}")
    return [
        (o["name"], bool(parameters(o, f"output {o['name']!r}").get("binary_data", default_binary))) for o in requested
    ]


def format_infer_response(request, model, outputs, requested):
    """Returns `(body bytes, headers)`: JSON, or JSON then binary tensors."""
    entries, chunks = [], []
    for name, binary in requested:
        array = np.ascontiguousarray(outputs[name], dtype=np.float32)
        entry = {"name": name, "datatype": "FP32", "shape": list(array.shape)}
        if binary:
            data = array.astype("<f4", copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(data)}
            chunks.append(data)
        else:
            entry["data"] = array.ravel()
        entries.append(entry)
    response = {"model_name": model.name, "model_version": model.version, "outputs": entries}
    if "id" in request:
        response["id"] = request["id"]
    header = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, {"content-type": "application/json"}
    return header + b"".join(chunks), {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(header)),
    }


def model_metadata(model, versions):
    return {
        "name": model.name,
        "versions": sorted(versions, key=int),
        "platform": "onnxruntime_onnx",
        "inputs": [tensor_metadata(t) for t in model.inputs],
        "outputs": [tensor_metadata(t) for t in model.outputs],
    }


def model_config(model, config):
    """Triton's model configuration (`GET /v2/models/NAME/config`, its JSON form) of a
    served model: what clients and tools that read `max_batch_size` or the tensors' dims
    expect. dims leave out the batch axis, as Triton's do."""

    def tensors(entries):
        return [
            {
                "name": t["name"],
                "data_type": f"TYPE_{v2_datatype(t['datatype'])}",
                "dims": [d for d in t["shape"] if d != "batch"] or [1],
            }
            for t in entries
        ]

    return {
        "name": model.name,
        "platform": "onnxruntime_onnx" if config.backend == "onnx" else "tensorflow_savedmodel",
        "backend": "onnxruntime" if config.backend == "onnx" else "tensorflow",
        "version_policy": (
            {"latest": {"num_versions": config.latest_versions}} if config.latest_versions else {"all": {}}
        ),
        "max_batch_size": config.max_batch_size,
        "input": tensors(model.inputs),
        "output": tensors(model.outputs),
        "dynamic_batching": {"max_queue_delay_microseconds": round(config.batch_delay_ms * 1000)},
    }


def tensor_metadata(tensor):
    return {
        "name": tensor["name"],
        "datatype": v2_datatype(tensor["datatype"]),
        "shape": [-1 if d == "batch" else d for d in tensor["shape"]],
    }


def routes(service):
    """The v2 REST routes (health, server and model metadata, model config and statistics,
    readiness, infer, and Triton's repository index, load and unload) over `service`."""

    @endpoint(service, "v2_health_live")
    async def live(request):
        return json_response({"live": True})

    @endpoint(service, "v2_health_ready")
    async def ready(request):
        ready, refused = service.readiness()
        return json_response({"ready": ready, **({"refused": refused} if refused else {})}, 200 if ready else 503)

    @endpoint(service, "v2_server_metadata")
    async def server_metadata(request):
        extensions = ["binary_tensor_data", "model_repository"]
        return json_response({"name": "tfvae", "version": tfvae.__version__, "extensions": extensions})

    @endpoint(service, "v2_model_metadata")
    async def metadata(request):
        model = service.find(request.path_params["name"], request.path_params.get("version"))
        return json_response(model_metadata(model, service.models[model.name]))

    @endpoint(service, "v2_model_config")
    async def model_configuration(request):
        model = service.find(request.path_params["name"], request.path_params.get("version"))
        return json_response(model_config(model, service.config))

    @endpoint(service, "v2_model_stats")
    async def statistics(request):
        name, version = request.path_params.get("name"), request.path_params.get("version")
        if name is None:
            chosen = [model for versions in service.models.values() for model in versions.values()]
        elif version is None:
            chosen = list(service.models[service.find(name).name].values())
        else:
            chosen = [service.find(name, version)]
        chosen.sort(key=lambda model: (model.name, int(model.version)))
        return json_response(
            {"model_stats": [model.batcher.statistics.as_triton(model.name, model.version) for model in chosen]}
        )

    @endpoint(service, "v2_model_ready")
    async def model_ready(request):
        name = request.path_params["name"]
        refusal = service.model_refusal(name, request.path_params.get("version"))
        if refusal is not None:
            return json_response({"name": name, "ready": False, "error": refusal}, 503)
        return json_response({"name": name, "ready": True})

    async def repository_options(request):
        """The optional JSON object of a repository request (tritonclient sends none)."""
        body = await read_body(request, service.config)
        return load_json_object(body) if body.strip() else {}

    @endpoint(service, "v2_repository_index")
    async def repository_index(request):
        ready_only = (await repository_options(request)).get("ready", False)
        if not isinstance(ready_only, bool):
            raise RequestError(f'"ready" must be true or false; got {ready_only!r}')
        return json_response(service.repository_index(ready_only))

    @endpoint(service, "v2_repository_load")
    async def repository_load(request):
        options = await repository_options(request)
        await service.load(request.path_params["name"], options.get("parameters"))
        return json_response({})

    @endpoint(service, "v2_repository_unload")
    async def repository_unload(request):
        await repository_options(request)
        await service.unload(request.path_params["name"])
        return json_response({})

    @endpoint(service, "v2_infer")
    async def infer(request):
        model = service.find(request.path_params["name"], request.path_params.get("version"))
        body = await read_body(request, service.config)
        parsed, inputs, requested = parse_infer_request(
            body, request.headers.get(HEADER_LENGTH), model, service.config.max_rows
        )
        timeout_us = request_timeout_us(parameters(parsed, "the request").get("timeout"))
        outputs = await service.run(model, inputs, timeout_us)
        content, headers = format_infer_response(parsed, model, outputs, requested)
        return Response(content, headers=headers)

    return [
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2", server_metadata),
        # Before /v2/models/{name}, which "stats" would match as a model's name.
        Route("/v2/models/stats", statistics),
        Route("/v2/models/{name}/stats", statistics),
        Route("/v2/models/{name}/versions/{version}/stats", statistics),
        Route("/v2/models/{name}", metadata),
        Route("/v2/models/{name}/versions/{version}", metadata),
        Route("/v2/models/{name}/config", model_configuration),
        Route("/v2/models/{name}/versions/{version}/config", model_configuration),
        Route("/v2/models/{name}/ready", model_ready),
        Route("/v2/models/{name}/versions/{version}/ready", model_ready),
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", infer, methods=["POST"]),
        # Triton's model repository extension.
        Route("/v2/repository/index", repository_index, methods=["POST"]),
        Route("/v2/repository/models/{name}/load", repository_load, methods=["POST"]),
        Route("/v2/repository/models/{name}/unload", repository_unload, methods=["POST"]),
    ]
