"""The HTTP plumbing every REST protocol shares: JSON answers, bodies (compressed either
way), error mapping."""

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
            response = await compressed(request, response)
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
    if encoding not in _WINDOW_BITS:
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
    if _WINDOW_BITS[encoding] is None:
        return bytes(body)
    return _decompressed(bytes(body), encoding, config.max_body_bytes)


# zlib's window bits: 16 + MAX_WBITS reads and writes a gzip member, MAX_WBITS the zlib
# format that HTTP's "deflate" names.
_WINDOW_BITS = {"identity": None, "gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
# Bodies below this fit one TCP segment (1460 bytes of payload) whether compressed or not.
MIN_COMPRESSED_BYTES = 1400
# zlib's fastest level. On a 64 × 784 float32 v2 answer (533 kB of JSON) level 1 wrote
# 248 kB in 7 ms, zlib's default 6 wrote 226 kB in 43 ms and Starlette's GZipMiddleware's 9
# 223 kB in 179 ms: past level 1, compressing costs more time than the bytes it saves take
# on any link faster than a few Mbit/s. (GZipMiddleware is not used: it writes gzip only,
# and tritonclient's response_compression_algorithm also asks for deflate, as Triton answers.)
COMPRESSION_LEVEL = 1


async def compressed(request, response):
    """`response` with its body gzip- or deflate-compressed where the request's
    Accept-Encoding asks for either (gzip where both weigh the same) and the body is at
    least `MIN_COMPRESSED_BYTES`; as it is otherwise. Compression runs in a thread
    (zlib lets go of the GIL), so a large answer does not stall the event loop."""
    if len(response.body) < MIN_COMPRESSED_BYTES:
        return response
    response.headers.append("vary", "Accept-Encoding")
    coding = accepted_coding(request.headers.get("accept-encoding", ""))
    if coding is None:
        return response
    response.body = await asyncio.to_thread(_compress, response.body, coding)
    response.headers["content-encoding"] = coding
    response.headers["content-length"] = str(len(response.body))
    return response


def _compress(body, coding):
    compressor = zlib.compressobj(COMPRESSION_LEVEL, zlib.DEFLATED, _WINDOW_BITS[coding])
    return compressor.compress(body) + compressor.flush()


def accepted_coding(header):
    """ "gzip", "deflate" or None: the compression an Accept-Encoding header accepts with
    the higher weight (RFC 9110 12.5.3: `q=0` refuses a coding, `*` stands for those not
    named; a weight that is not a number counts as 0)."""
    weights = {}
    for item in header.split(","):
        name, *parameters = item.split(";")
        weight = 1.0
        for parameter in parameters:
            key, _, value = parameter.partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[name.strip().lower()] = weight
    wildcard = weights.get("*", 0.0)
    best = max(("gzip", "deflate"), key=lambda coding: weights.get(coding, wildcard))  # gzip on a tie
    return best if weights.get(best, wildcard) > 0 else None


def _decompressed(body, encoding, limit):
    decompressor = zlib.decompressobj(_WINDOW_BITS[encoding])
    try:
        data = decompressor.decompress(body, limit + 1)
    except zlib.error as error:
        raise RequestError(f"the body is not valid {encoding} data ({error})") from None
    if len(data) > limit:
        raise RequestError(f"the decompressed body is over this server's {limit}-byte limit", 413)
    if not decompressor.eof:
        raise RequestError(f"the {encoding} body ends before its compressed data do")
    return data
