"""The TF Serving REST API: model status, `/metadata` (the signatures), and `:predict` in
row ("instances") and columnar ("inputs") format.

As TF Serving does: with one output the answer is `{"predictions": [per instance]}` or
`{"outputs": batched}`; with several, each instance (or `outputs`) is a dict by name.
Beside it, tfvae's own verb on the same paths: `:generate` (`{"n", "seed"?, "labels"?}`)
draws z from the exported prior and answers `{"samples", "z", "seed"}`.
"""

import re

import numpy as np
import orjson
from starlette.responses import Response
from starlette.routing import Route

from tfvae.serving.errors import RequestError
from tfvae.serving.http import endpoint, json_response, read_body
from tfvae.serving.tensors import as_numbers, check_rows, load_json_object

_TARGET = re.compile(
    r"^(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?(?P<metadata>/metadata)?(?::(?P<verb>[a-z]+))?$"
)
# TensorFlow's DataType names (tensorflow/core/framework/types.proto) of the manifests' dtypes.
TF_DATATYPES = {"float32": "DT_FLOAT", "float64": "DT_DOUBLE", "int32": "DT_INT32", "int64": "DT_INT64"}
PREDICT_METHOD = "tensorflow/serving/predict"


def _tensor_info(signature, tensor):
    dims = [-1 if d == "batch" else d for d in tensor["shape"]]
    return {
        "dtype": TF_DATATYPES[tensor["datatype"]],
        "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in dims], "unknown_rank": False},
        "name": f"{signature}_{tensor['name']}:0",
    }


def signature_def_map(model):
    """A model version's signatures as TF Serving's `SignatureDefMap`, in protobuf's JSON
    (int64 sizes as strings): what TF Serving's REST metadata answers, and what its gRPC
    GetModelMetadata packs (`protocol_tfserving_grpc` parses this same dict)."""
    outputs = {t["name"]: t for t in model.outputs}
    return {
        "signature_def": {
            signature: {
                "inputs": {t["name"]: _tensor_info(signature, t) for t in model.inputs},
                "outputs": {name: _tensor_info(signature, outputs[name]) for name in names},
                "method_name": PREDICT_METHOD,
            }
            for signature, names in model.signatures.items()
        }
    }


def _as_array(data, tensor, max_rows):
    array = as_numbers(data, f"input {tensor['name']!r} must be numbers, one row per instance")
    return check_rows(array, tensor, max_rows)


def parse_predict_request(body, model, max_rows):
    """Returns `(format, {input name: array}, output names)`; format is "row" or "columnar"."""
    request = load_json_object(body)
    signature = request.get("signature_name", "serving_default")
    if not isinstance(signature, str) or signature not in model.signatures:
        raise RequestError(f"unknown signature_name {signature!r}; the model has {sorted(model.signatures)}")
    has_rows, has_columns = "instances" in request, "inputs" in request
    if has_rows == has_columns:
        raise RequestError('the request needs exactly one of "instances" (row format) or "inputs" (columnar)')
    data = request["instances" if has_rows else "inputs"]
    tensors = {t["name"]: t for t in model.inputs}
    if isinstance(data, dict) if has_columns else (isinstance(data, list) and data and isinstance(data[0], dict)):
        data = data if has_columns else _columns_from_instances(data)
        if sorted(data) != sorted(tensors):
            raise RequestError(f"inputs {sorted(data)} do not match the model's inputs {sorted(tensors)}")
    elif len(tensors) == 1:
        data = {next(iter(tensors)): data}
    else:
        raise RequestError(f"the model has several inputs {sorted(tensors)}: name them")
    if has_rows and not isinstance(request["instances"], list):
        raise RequestError('"instances" must be a list, one entry per instance')
    inputs = {name: _as_array(value, tensors[name], max_rows) for name, value in data.items()}
    return ("row" if has_rows else "columnar"), inputs, model.signatures[signature]


def _columns_from_instances(instances):
    if not all(isinstance(i, dict) for i in instances):
        raise RequestError("every instance must have the same form (all objects or all lists)")
    names = set(instances[0])
    if any(set(i) != names for i in instances):
        raise RequestError("every instance must name the same inputs")
    return {name: [i[name] for i in instances] for name in names}


def format_predict_response(form, outputs, names):
    outputs = {name: np.asarray(outputs[name], dtype=np.float32) for name in names}
    if form == "columnar":
        value = outputs[names[0]] if len(names) == 1 else outputs
        return orjson.dumps({"outputs": value}, option=orjson.OPT_SERIALIZE_NUMPY)
    if len(names) == 1:
        return orjson.dumps({"predictions": outputs[names[0]]}, option=orjson.OPT_SERIALIZE_NUMPY)
    rows = len(next(iter(outputs.values())))
    predictions = [{name: outputs[name][i] for name in names} for i in range(rows)]
    return orjson.dumps({"predictions": predictions}, option=orjson.OPT_SERIALIZE_NUMPY)


def model_status(versions):
    return {
        "model_version_status": [
            {"version": v, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            for v in sorted(versions, key=int, reverse=True)
        ]
    }


def _target(request):
    """`(name, version or None, metadata, verb or None)` of
    `/v1/models/NAME[/versions/V][/metadata][:VERB]`."""
    match = _TARGET.match(request.path_params["target"])
    if not match:
        raise RequestError(f"cannot parse /v1/models/{request.path_params['target']}", 404)
    return match["name"], match["version"], bool(match["metadata"]), match["verb"]


def routes(service):
    """The TF Serving REST routes (model status, `:predict`) and `:generate` over `service`."""

    @endpoint(service, "v1_model_status")
    async def status(request):
        name, version, metadata, verb = _target(request)
        if verb:
            raise RequestError(f"unknown endpoint :{verb} for GET; use GET /v1/models/{name}", 404)
        model = service.find(name, version)
        if metadata:
            spec = {"name": model.name, "signature_name": "", "version": model.version}
            return json_response({"model_spec": spec, "metadata": {"signature_def": signature_def_map(model)}})
        return json_response(model_status([model.version] if version else service.models[name]))

    @endpoint(service, "v1_predict")
    async def post(request):
        name, version, metadata, verb = _target(request)
        if metadata:
            raise RequestError(f"POST to /metadata; GET /v1/models/{name}/metadata reads it", 405)
        model = service.find(name, version)
        body = await read_body(request, service.config)
        if verb == "predict":
            form, inputs, names = parse_predict_request(body, model, service.config.max_rows)
            outputs = await service.run(model, inputs)
            return Response(format_predict_response(form, outputs, names), media_type="application/json")
        if verb == "generate":
            inputs, seed = service.generate_inputs(model, load_json_object(body))
            outputs = await service.run(model, inputs)
            samples = outputs[model.manifest["parts"]["decoder"]["signatures"]["serving_default"][0]]  # mean, or x
            return json_response({"samples": samples, "z": inputs["z"], "seed": seed})
        raise RequestError(f"unknown verb :{verb}; use :predict or :generate", 404)

    return [
        Route("/v1/models/{target:path}", status, methods=["GET"]),
        Route("/v1/models/{target:path}", post, methods=["POST"]),
    ]
