"""Turning request data into checked arrays for a model's inputs.

The policy on non-finite values: NaN and Inf are refused (400). The exported decoders
and encoders are plain MLP/conv nets whose outputs would be NaN too, and a generator
has no meaning at z = NaN.
"""

import math

import numpy as np
import orjson

from tfvae.serving.errors import RequestError

# KServe v2 datatype names and the NumPy dtypes they denote.
V2_DATATYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
V2_NAMES = {np.dtype(dtype).name: name for name, dtype in V2_DATATYPES.items()}


def is_int(value):
    """Whether a JSON value is an integer (JSON's true and false are not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def v2_datatype(numpy_name):
    """The v2 datatype name of a manifest dtype ("float32" -> "FP32")."""
    return V2_NAMES[numpy_name]


def check_shape(name, shape, tensor, max_rows):
    """Checks a shape (a sequence of ints) against the model's tensor entry and the row limit."""
    expected = tuple(tensor["shape"][1:])
    if len(shape) != len(expected) + 1 or tuple(shape[1:]) != expected:
        raise RequestError(
            f"input {name!r} has shape {list(shape)}; expected [rows, {', '.join(str(d) for d in expected)}]"
        )
    if shape[0] == 0:
        raise RequestError(f"input {name!r} has no rows")
    if shape[0] > max_rows:
        raise RequestError(
            f"input {name!r} has {shape[0]} rows; this server takes at most {max_rows} per request", status=413
        )


def check_rows(array, tensor, max_rows):
    """Checks an input array against the model's tensor entry; returns it in the tensor's dtype.

    Args:
      array: the request's values, already shaped.
      tensor: manifest entry `{"name", "datatype", "shape": ["batch", ...]}`; an integer
        input (class labels) may carry `"classes"`, the number of valid ids.
      max_rows: the per-request row limit.
    """
    name = tensor["name"]
    check_shape(name, array.shape, tensor, max_rows)
    if np.dtype(tensor["datatype"]).kind in "iu":
        return check_class_ids(array, name, tensor.get("classes")).astype(tensor["datatype"])
    array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        raise RequestError(f"input {name!r} contains NaN or Inf; the model takes finite values only")
    return array


def check_class_ids(values, name, classes):
    """Integer class ids in [0, classes): the graph's one-hot would silently zero (or wrap) others."""
    values = np.asarray(values)
    integral = values.dtype.kind in "iu" or (
        values.dtype.kind == "f" and np.isfinite(values).all() and (values == np.round(values)).all()
    )
    if not integral:
        raise RequestError(f"{name!r} must hold integer class ids")
    if classes is not None and values.size and (values.min() < 0 or values.max() >= classes):
        raise RequestError(
            f"{name!r} holds class ids in [{values.min():g}, {values.max():g}]; "
            f"this model has classes 0 to {classes - 1}"
        )
    return values.astype(np.int64)


def array_from_json(data, shape, name):
    """A NumPy array from a JSON list (flat or nested) and the declared shape."""
    array = as_numbers(data, f"input {name!r} data must be numbers (a flat or nested list)")
    if array.size != math.prod(shape):
        raise RequestError(f"input {name!r} has {array.size} values but shape {list(shape)} needs {math.prod(shape)}")
    return array.reshape(shape)


def as_numbers(data, message):
    """`data` (JSON numbers in nested lists) as a float64 array, or a 400 with `message`."""
    if not isinstance(data, list):
        raise RequestError(message)
    try:
        # Inferred, not cast: a cast would turn "1.5" and true into numbers. Ragged
        # nesting and integers past 64 bits infer as objects.
        array = np.asarray(data)
    except (TypeError, ValueError):  # ragged nesting on some NumPy versions
        raise RequestError(message) from None
    if array.dtype.kind not in "iuf":
        raise RequestError(message)
    return array.astype(np.float64, copy=False)


def load_json_object(text):
    """The request's JSON object, or a 400 naming what is wrong with it."""
    try:
        request = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise RequestError(f"malformed JSON: {error}") from None
    if not isinstance(request, dict):
        raise RequestError("the request must be a JSON object")
    return request
