"""The HTTP plumbing every REST protocol shares: JSON answers, bodies, error mapping."""

import asyncio
import functools
import logging
import time
import zlib

import orjson
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from tfvae.serving.errors import RequestError

logger = logging.getLogger("tfvae.serving")


def json_response(value, status=200):
    """`value` as a JSON response (NumPy arrays as lists)."""
    return Response(orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY), status, media_type="application/json")


def endpoint(service, label):
    """Counts, times and guards a handler: client errors become 4xx, faults 500 (logged).

    Args:
      service: the `ModelService` whose metrics count the request.
      label: the endpoint's name in the metrics.
    """

    def decorate(handler):
        @functools.wraps(handler)
        async def wrapped(request):
            started = time.perf_counter()
            try:
                response = await handler(request)
            except RequestError as error:
                response = json_response({"error": error.message}, error.status)
                if error.retry_after_s is not None:
                    response.headers["retry-after"] = str(error.retry_after_s)
            except ClientDisconnect:
                logger.info("client left during %s %s", request.method, request.url.path)
                response = json_response({"error": "client disconnected"}, 499)
            except Exception:
                logger.exception("internal error in %s %s", request.method, request.url.path)
                response = json_response({"error": "internal server error; see the server log"}, 500)
            service.metrics.requests.labels(label, str(response.status_code)).inc()
            service.metrics.latency.labels(label).observe(time.perf_counter() - started)
            return response

        return wrapped

    return decorate


async def read_body(request, config):
    """The request's body, within `config.max_body_bytes` (413) and `config.body_timeout_s` (408).

    Its Content-Type is not read, as TF Serving and Triton do not read it: their documented
    `curl -d '{"instances": ...}'` sends application/x-www-form-urlencoded, and a browser's
    `fetch` with a string body text/plain. The body is parsed as JSON (or as the binary
    tensor extension where its header says so), and a body that is neither gets a 400.

    A body sent with `Content-Encoding: gzip` or `deflate` (zlib), as tritonclient's
    `request_compression_algorithm` sends it and Triton reads it, is decompressed, its
    decompressed size held to the same limit (a small bomb cannot fill memory)."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in _DECOMPRESSORS:
        raise RequestError(
            f"unsupported Content-Encoding {encoding!r}; send the body as it is, or gzip or deflate it", 415
        )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > config.max_body_bytes:
        raise RequestError(f"body of {declared} bytes is over this server's {config.max_body_bytes}-byte limit", 413)
    body = bytearray()
    try:
        async with asyncio.timeout(config.body_timeout_s):
            async for chunk in request.stream():
                body.extend(chunk)
                if len(body) > config.max_body_bytes:
                    raise RequestError(f"body is over this server's {config.max_body_bytes}-byte limit", 413)
    except TimeoutError:
        raise RequestError(f"the body did not arrive within {config.body_timeout_s:g} s", 408) from None
    if _DECOMPRESSORS[encoding] is None:
        return bytes(body)
    return _decompressed(bytes(body), encoding, config.max_body_bytes)


# zlib's window bits: 16 + MAX_WBITS reads a gzip member, MAX_WBITS the zlib format that
# HTTP's "deflate" names.
_DECOMPRESSORS = {"identity": None, "gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def _decompressed(body, encoding, limit):
    decompressor = zlib.decompressobj(_DECOMPRESSORS[encoding])
    try:
        data = decompressor.decompress(body, limit + 1)
    except zlib.error as error:
        raise RequestError(f"the body is not valid {encoding} data ({error})") from None
    if len(data) > limit:
        raise RequestError(f"the decompressed body is over this server's {limit}-byte limit", 413)
    if not decompressor.eof:
        raise RequestError(f"the {encoding} body ends before its compressed data do")
    return data
