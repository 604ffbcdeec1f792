"""The server's app in process (Starlette's TestClient): every protocol's answers to bad
input, readiness, generation from each kind of prior, the SavedModel backend, and the
repository's checks. What needs a real process is in test_serving.py."""

import asyncio
import contextlib
import gzip
import json
import logging
import os
import shutil
import threading
import time
import zlib

import grpc
import hypothesis
import hypothesis.strategies as st
import numpy as np
import orjson
import pytest
from helpers import (
    MAX_BODY_MIB,
    MAX_ROWS,
    binary_body,
    free_port,
    latent,
    serve_in_process,
    tiny_vae,
    trained_conditional_and_autoencoder,
    v2_body,
)

import tfvae
from tfvae.serving import ServerConfig, access, http, protocol_grpc
from tfvae.serving.batching import DynamicBatcher, QueueTimeout
from tfvae.serving.repository import RepositoryError, load_repository
from tfvae.serving.service import ModelService

TOLERANCE = 1e-5


def tamper(version_folder):
    """Makes a version's model.onnx differ from its manifest's sha256 (the server refuses it)."""
    with open(os.path.join(version_folder, "model.onnx"), "ab") as f:
        f.write(b"tampered")


def tampered_copy(export_dir, name, source, version):
    """A copy of model `name`'s version `source` as `version`, tampered; returns its folder."""
    folder = os.path.join(export_dir, name, version)
    shutil.copytree(os.path.join(export_dir, name, source), folder)
    tamper(folder)
    return folder


@contextlib.asynccontextmanager
async def grpc_front(export_dir, **config):
    """`(service, front, channel)`: a started `ModelService` of `export_dir` with its gRPC
    front end on loopback, in this event loop, and a channel to it; stopped on exit."""
    service = ModelService(ServerConfig(export_dir, **config))
    await service.start()
    port = free_port()
    front = protocol_grpc.Server(service, f"127.0.0.1:{port}")
    await front.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield service, front, channel
    finally:
        await front.stop(0)
        await service.stop()


@pytest.fixture(scope="module")
def repository(exported_vae):
    return exported_vae


@pytest.fixture(scope="module")
def client(repository):
    limits = dict(max_rows=MAX_ROWS, max_body_bytes=int(MAX_BODY_MIB * 2**20), batch_delay_ms=5)
    with serve_in_process(repository[0], **limits) as running:
        yield running


BAD_REQUESTS = [
    ("malformed JSON", "POST", "/v2/models/gen/infer", b'{"inputs": [', {}, 400, "malformed JSON"),
    ("missing inputs", "POST", "/v2/models/gen/infer", b'{"outputs": []}', {}, 400, 'needs \\"inputs\\"'),
    (
        "missing data",
        "POST",
        "/v2/models/gen/infer",
        b'{"inputs": [{"name": "z", "shape": [1, 4], "datatype": "FP32"}]}',
        {},
        400,
        'needs \\"data\\"',
    ),
    (
        "wrong shape",
        "POST",
        "/v2/models/gen/infer",
        v2_body(np.zeros((2, 5), np.float32)),
        {},
        400,
        "shape [2, 5]; expected [rows, 4]",
    ),
    (
        "data/shape mismatch",
        "POST",
        "/v2/models/gen/infer",
        v2_body(np.zeros((2, 4), np.float32), shape=[3, 4]),
        {},
        400,
        "has 8 values but shape [3, 4] needs 12",
    ),
    (
        "wrong datatype",
        "POST",
        "/v2/models/gen/infer",
        v2_body(np.zeros((1, 4), np.float32), datatype="INT64"),
        {},
        400,
        "datatype 'INT64'; the model takes FP32",
    ),
    (
        "wrong input name",
        "POST",
        "/v2/models/gen/infer",
        v2_body(np.zeros((1, 4), np.float32), name="x"),
        {},
        400,
        "do not match the model's inputs",
    ),
    (
        "strings as data",
        "POST",
        "/v2/models/gen/infer",
        v2_body(np.zeros((1, 4), np.float32), data=["a"] * 4),
        {},
        400,
        "must be numbers",
    ),
    (
        "unknown output",
        "POST",
        "/v2/models/gen/infer",
        orjson.dumps(
            {
                "inputs": [{"name": "z", "shape": [1, 4], "datatype": "FP32", "data": [0] * 4}],
                "outputs": [{"name": "image"}],
            }
        ),
        {},
        400,
        "unknown output(s) ['image']",
    ),
    (
        "unknown model",
        "POST",
        "/v2/models/nope/infer",
        v2_body(np.zeros((1, 4), np.float32)),
        {},
        404,
        "unknown model 'nope'",
    ),
    (
        "unknown version",
        "POST",
        "/v2/models/gen/versions/9/infer",
        v2_body(np.zeros((1, 4), np.float32)),
        {},
        404,
        "has no version '9'",
    ),
    (
        "too many rows",
        "POST",
        "/v2/models/gen/infer",
        v2_body(np.zeros((MAX_ROWS + 1, 4), np.float32)),
        {},
        413,
        f"at most {MAX_ROWS} per request",
    ),
    ("body over limit", "POST", "/v2/models/gen/infer", b" " * int(MAX_BODY_MIB * 2**20 + 1), {}, 413, "byte limit"),
    (
        "binary NaN",
        "POST",
        "/v2/models/gen/infer",
        *binary_body(16, np.full(4, np.nan, "<f4").tobytes()),
        400,
        "contains NaN or Inf",
    ),
    (
        "binary size mismatch",
        "POST",
        "/v2/models/gen/infer",
        *binary_body(12, b"\0" * 12),
        400,
        "binary_data_size 12 does not match",
    ),
    (
        "header length outside body",
        "POST",
        "/v2/models/gen/infer",
        b"{}",
        {"inference-header-content-length": "99"},
        400,
        "outside the body",
    ),
    (
        "JSON NaN literal",
        "POST",
        "/v1/models/gen:predict",
        b'{"instances": [[NaN, 0, 0, 0]]}',
        {},
        400,
        "malformed JSON",
    ),
    (
        "infinite value",
        "POST",
        "/v1/models/gen:predict",
        b'{"instances": [[1e999, 0, 0, 0]]}',
        {},
        400,
        "number is infinity",
    ),
    (
        "a form, not JSON",
        "POST",
        "/v1/models/gen:predict",
        b"instances=1",
        {"content-type": "application/x-www-form-urlencoded"},
        400,
        "malformed JSON",
    ),
    (
        "a gzip bomb",
        "POST",
        "/v1/models/gen:predict",
        gzip.compress(b" " * (int(MAX_BODY_MIB * 2**20) + 1)),
        {"content-encoding": "gzip"},
        413,
        "the decompressed body is over this server's",
    ),
    ("not gzip", "POST", "/v1/models/gen:predict", b"{}", {"content-encoding": "gzip"}, 400, "not valid gzip data"),
    (
        "truncated deflate",
        "POST",
        "/v2/models/gen/infer",
        zlib.compress(v2_body(np.zeros((1, 4), np.float32)))[:-6],
        {"content-encoding": "deflate"},
        400,
        "the deflate body ends before its compressed data do",
    ),
    ("brotli", "POST", "/v1/models/gen:predict", b"{}", {"content-encoding": "br"}, 415, "Content-Encoding 'br'"),
    ("both formats", "POST", "/v1/models/gen:predict", b'{"instances": [], "inputs": []}', {}, 400, "exactly one of"),
    (
        "unknown signature",
        "POST",
        "/v1/models/gen:predict",
        b'{"signature_name": "x", "instances": [[0,0,0,0]]}',
        {},
        400,
        "unknown signature_name 'x'",
    ),
    (
        "parameters not an object",
        "POST",
        "/v2/models/gen/infer",
        b'{"parameters": [1], "inputs": [{"name": "z", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, 0]}]}',
        {},
        400,
        '\\"parameters\\" of the request must be a JSON object',
    ),
    (
        "shape that wraps to 0",
        "POST",
        "/v2/models/gen/infer",
        b'{"inputs": [{"name": "z", "shape": [4294967296, 4294967296], "datatype": "FP32", "data": []}]}',
        {},
        400,
        "has shape [4294967296, 4294967296]; expected [rows, 4]",
    ),
    (
        "boolean in shape",
        "POST",
        "/v2/models/gen/infer",
        b'{"inputs": [{"name": "z", "shape": [true, 4], "datatype": "FP32", "data": [0, 0, 0, 0]}]}',
        {},
        400,
        "a list of non-negative integers",
    ),
    (
        "signature name a list",
        "POST",
        "/v1/models/gen:predict",
        b'{"signature_name": [], "instances": [[0,0,0,0]]}',
        {},
        400,
        "unknown signature_name []",
    ),
    ("unknown verb", "POST", "/v1/models/gen:classify", b'{"instances": [[0,0,0,0]]}', {}, 404, "unknown verb"),
    ("generate bad n", "POST", "/v1/models/gen:generate", b'{"n": 0}', {}, 400, '\\"n\\" must be an integer'),
    (
        "generate too many",
        "POST",
        "/v1/models/gen:generate",
        f'{{"n": {MAX_ROWS + 1}}}'.encode(),
        {},
        400,
        '\\"n\\" must be an integer',
    ),
    ("generate labels", "POST", "/v1/models/gen:generate", b'{"n": 1, "labels": [3]}', {}, 400, "not conditional"),
    (
        "generate misspelt seed",
        "POST",
        "/v1/models/gen:generate",
        b'{"n": 1, "seeds": 3}',
        {},
        400,
        "unknown field(s) 'seeds'",
    ),
    ("generate encoder", "POST", "/v1/models/gen_encoder:generate", b'{"n": 1}', {}, 400, "is an encoder"),
    ("no such route", "GET", "/v3/models", b"", {}, 404, "no such endpoint"),
    ("wrong method", "GET", "/v2/models/gen/infer", b"", {}, 405, "not allowed"),
]


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_input_gets_a_4xx_naming_the_problem_and_the_server_stays_up(client, case):
    _, method, path, body, headers, status, message = case
    response = client.request(method, path, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert message.replace("\\", "") in response.json()["error"]
    assert client.get("/v2/health/live").status_code == 200


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain;charset=UTF-8", None])
def test_json_is_read_whatever_content_type_curl_or_fetch_declares(client, repository, content_type):
    # TF Serving's own example, `curl -d '{"instances": ...}'`, declares a form; fetch() text.
    headers = {} if content_type is None else {"content-type": content_type}
    z = np.zeros((1, 4), np.float32)
    expected = repository[1].decode(z).mean().numpy()
    predicted = client.post("/v1/models/gen:predict", content=b'{"instances": [[0, 0, 0, 0]]}', headers=headers)
    np.testing.assert_allclose(predicted.json()["predictions"], expected, atol=1e-6)
    inferred = client.post("/v2/models/gen/infer", content=v2_body(z), headers=headers)
    mean = next(o for o in inferred.json()["outputs"] if o["name"] == "mean")
    np.testing.assert_allclose(np.reshape(mean["data"], expected.shape), expected, atol=1e-6)
    assert client.post("/v1/models/gen:generate", content=b'{"n": 2}', headers=headers).status_code == 200


@pytest.mark.parametrize(
    "accept, coding",
    [
        ("gzip", "gzip"),
        ("deflate", "deflate"),
        ("deflate, gzip", "gzip"),  # equal weights: gzip
        ("gzip;q=0.5, deflate", "deflate"),
        ("br, *;q=0.1", "gzip"),
        ("gzip;q=0, deflate;q=0", None),
        ("identity", None),
        ("gzip;q=x", None),  # a weight that is no number refuses
    ],
)
def test_accept_encoding_chooses_the_compression_with_the_higher_weight(accept, coding):
    assert http.accepted_coding(accept) == coding


def test_answers_are_compressed_as_the_client_asks(client):
    body = v2_body(latent(20))  # 20 × 64 floats of each output: 35 kB of JSON
    plain = client.post("/v2/models/gen/infer", content=body, headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.headers["vary"] == "Accept-Encoding"
    for accept in ("gzip", "deflate"):
        answer = client.post("/v2/models/gen/infer", content=body, headers={"accept-encoding": accept})
        assert answer.headers["content-encoding"] == accept
        assert int(answer.headers["content-length"]) < len(plain.content) / 2  # the bytes on the wire
        assert answer.content == plain.content  # as httpx decoded them
    # A small answer goes as it is, whatever the client accepts.
    assert "content-encoding" not in client.get("/v2/health/ready", headers={"accept-encoding": "gzip"}).headers
    scraped = client.get("/metrics", headers={"accept-encoding": "gzip"})  # Prometheus scrapes with gzip
    assert scraped.headers["content-encoding"] == "gzip" and b"tfvae_requests_total" in scraped.content


def test_inputs_whose_outputs_overflow_get_a_400_not_null(client, repository):
    signs = np.array(np.meshgrid(*[[-1.0, 1.0]] * 4)).reshape(4, -1).T  # every corner of the cube
    z = next(
        3e38 * s[None].astype(np.float32)
        for s in signs
        if not np.isfinite(repository[1].decode(3e38 * s[None].astype(np.float32)).distribution.logits).all()
    )
    response = client.post("/v1/models/gen:predict", json={"signature_name": "params", "instances": z.tolist()})
    assert response.status_code == 400 and "outputs for these inputs are not finite" in response.json()["error"]


# Values a careless or hostile client might put anywhere in a request.
_JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from([0, 1, 4, -1, 2**32, 2**63, "z", "x", "FP32", "INT64", "BYTES", "mean", "params"]),
)
_JSON = st.recursive(
    _JSON_SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


def _maybe(key, values):
    return st.one_of(st.just({}), values.map(lambda v: {key: v}))


def _merged(*parts):
    return st.tuples(*parts).map(lambda dicts: {k: v for d in dicts for k, v in d.items()})


_SHAPES = st.one_of(
    _JSON, st.lists(st.one_of(st.integers(-2, 8), st.sampled_from([2**32, 2**63 - 1, True])), max_size=3)
)
_V2_INPUT = _merged(
    _maybe("name", st.one_of(st.sampled_from(["z", "x"]), _JSON)),
    _maybe("shape", _SHAPES),
    _maybe("datatype", st.one_of(st.sampled_from(["FP32", "FP64", "INT64", "BOOL", "BYTES"]), _JSON)),
    _maybe("data", st.one_of(_JSON, st.lists(st.floats(-3, 3), max_size=12))),
    _maybe("parameters", st.one_of(_JSON, st.fixed_dictionaries({"binary_data_size": _JSON_SCALARS}))),
)
_V2_BODY = _merged(
    _maybe("id", _JSON),
    _maybe("inputs", st.one_of(_JSON, st.lists(_V2_INPUT, max_size=2))),
    _maybe(
        "outputs", st.one_of(_JSON, st.lists(_merged(_maybe("name", _JSON), _maybe("parameters", _JSON)), max_size=2))
    ),
    _maybe("parameters", _JSON),
)
_PREDICT_BODY = _merged(_maybe("signature_name", _JSON), _maybe("instances", _JSON), _maybe("inputs", _JSON))
_GENERATE_BODY = _merged(_maybe("n", _JSON), _maybe("seed", _JSON), _maybe("labels", _JSON))


def _fuzz(client, path, bodies, header_lengths=st.none()):
    seen = {}

    @hypothesis.settings(
        max_examples=250,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(body=bodies, trailing=st.binary(max_size=24), header_length=header_lengths)
    def send(body, trailing, header_length):
        # The standard library writes integers of any size (orjson stops at 64 bits).
        content = json.dumps(body).encode() + (trailing if header_length is not None else b"")
        headers = {} if header_length is None else {"inference-header-content-length": str(header_length)}
        response = client.post(path, content=content, headers=headers)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code < 500, (body, response.text)
        assert "error" in response.json() or response.status_code == 200

    send()
    print(path, dict(sorted(seen.items())))  # the status histogram (pytest -s shows it)
    return seen


@pytest.mark.parametrize(
    "path, bodies, header_lengths",
    [
        ("/v2/models/gen/infer", _V2_BODY, st.none()),
        ("/v2/models/gen/infer", _V2_BODY, st.integers(-5, 400)),
        ("/v2/models/gen_encoder/infer", _V2_BODY, st.none()),
        ("/v1/models/gen:predict", _PREDICT_BODY, st.none()),
        ("/v1/models/gen:generate", _GENERATE_BODY, st.none()),
    ],
    ids=["v2-json", "v2-binary", "v2-encoder", "predict", "generate"],
)
def test_fuzzed_requests_never_get_a_5xx_and_the_server_stays_correct(client, repository, path, bodies, header_lengths):
    seen = _fuzz(client, path, bodies, header_lengths)
    assert sum(seen.values()) == 250 and any(400 <= status < 500 for status in seen)
    z = latent(2)
    rows = client.post("/v1/models/gen:predict", json={"instances": z.tolist()}).json()
    np.testing.assert_allclose(rows["predictions"], repository[1].decode(z).mean().numpy(), atol=TOLERANCE)


def test_savedmodel_backend_serves_the_same_answers(repository):
    with serve_in_process(repository[0], backend="savedmodel") as client:
        z = latent(4)
        got = client.post("/v1/models/gen:predict", json={"instances": z.tolist()}).json()
        np.testing.assert_allclose(got["predictions"], repository[1].decode(z).mean().numpy(), atol=TOLERANCE)


def test_a_file_that_differs_from_its_manifest_is_not_served(repository, tmp_path):
    import shutil

    copy = str(tmp_path / "repo")
    shutil.copytree(repository[0], copy)
    tamper(os.path.join(copy, "gen", "1"))
    loaded = load_repository(copy)
    assert "gen" not in loaded.models and "gen_encoder" in loaded.models
    assert "model.onnx is missing or differs from its manifest's sha256" in loaded.refused["gen"]
    tamper(os.path.join(copy, "gen_encoder", "1"))
    with pytest.raises(RepositoryError, match="holds no servable model.*differs from its manifest's sha256"):
        load_repository(copy)


def _edited_copy(repository, tmp_path, edit):
    import shutil

    copy = str(tmp_path / "repo")
    shutil.copytree(repository[0], copy)
    for part in ("gen", "gen_encoder"):
        path = os.path.join(copy, part, "1", "manifest.json")
        with open(path) as f:
            manifest = json.load(f)
        with open(path, "w") as f:
            json.dump(edit(manifest), f)
    return copy


@pytest.mark.parametrize(
    "edit, reason",
    [
        (lambda m: {"parts": []}, "manifest.json: the top level: 'name' is a required property"),
        (lambda m: [1, 2], "manifest.json: the top level: [1, 2] is not of type 'object'"),
        (
            lambda m: {**m, "latent_dim": 9},
            "the decoder's input 'z' has shape ['batch', 4], but the manifest's latent_dim",
        ),
        (
            lambda m: {**m, "parts": {**m["parts"], "generator": m["parts"]["decoder"]}},
            "parts: 'generator' is not one of ['decoder', 'encoder']",
        ),
        (lambda m: {**m, "version": 2**70}, "version: 1180591620717411303424 is greater than the maximum"),
        (lambda m: {**m, "prior": "StandardNormalPrior"}, "prior: 'StandardNormalPrior' is not valid under any"),
        (
            lambda m: {**m, "prior": {"distribution": "gaussian_mixture", "file": "prior.npz", "components": 5}},
            "the prior is a mixture in prior.npz, but the decoder has no such file",
        ),
        (
            lambda m: {**m, "decoder_noise": {"distribution": "uniform", "shape": [8, 8, 4]}},
            "the decoder's inputs ['z'] disagree with decoder_noise=",
        ),
        (
            lambda m: {**m, "decoder_noise": {"distribution": "normal", "shape": [4]}},
            "decoder_noise/distribution: 'uniform' was expected",
        ),
    ],
    ids=[
        "empty-parts",
        "a-list",
        "latent-dim-edited",
        "unknown-part",
        "version-past-int64",
        "prior-a-class-name",
        "mixture-without-file",
        "noise-the-decoder-does-not-take",
        "noise-of-an-unknown-distribution",
    ],
)
def test_a_manifest_that_breaks_its_schema_or_its_tensors_is_refused_with_the_reason(
    repository, tmp_path, edit, reason
):
    with pytest.raises(RepositoryError) as error:
        load_repository(_edited_copy(repository, tmp_path, edit))
    assert reason in str(error.value)


def test_readiness_is_per_model_and_the_operator_chooses_all_or_any(repository, tmp_path, caplog):
    copy = _edited_copy(repository, tmp_path, lambda m: m)
    tamper(os.path.join(copy, "gen", "1"))
    for ready_when, status in (("all", 503), ("any", 200)):
        with caplog.at_level(logging.ERROR, "tfvae.serving"), serve_in_process(copy, ready_when=ready_when) as client:
            assert client.get("/v2/health/ready").status_code == status
            assert client.get("/v2/models/gen_encoder/ready").status_code == 200
            gen = client.get("/v2/models/gen/ready")
            assert gen.status_code == 503 and "differs from its manifest's sha256" in gen.json()["error"]
        assert "not serving gen version 1" in caplog.text


def test_generate_refuses_a_prior_the_server_cannot_sample(repository, tmp_path):
    copy = _edited_copy(repository, tmp_path, lambda m: {**m, "prior": {"distribution": "unsupported"}})
    with serve_in_process(copy) as client:
        response = client.post("/v1/models/gen:generate", json={"n": 2})
        assert response.status_code == 400 and "cannot sample" in response.json()["error"]
        predicted = client.post("/v1/models/gen:predict", json={"instances": latent(2).tolist()})
        assert predicted.status_code == 200


@pytest.mark.slow
def test_conditional_generation_and_autoencoders_over_http(digits, tmp_path):
    conditional, autoencoder = trained_conditional_and_autoencoder(digits)
    export_dir = str(tmp_path / "repo")
    tfvae.export(conditional, export_dir, "cgen", parts=("decoder",))
    tfvae.export(autoencoder, export_dir, "ae", parts=("decoder",))
    with serve_in_process(export_dir) as client:
        labels = [0, 3, 9, 3]
        response = client.post("/v1/models/cgen:generate", json={"n": 4, "seed": 5, "labels": labels})
        assert response.status_code == 200, response.text
        body = response.json()
        z = np.asarray(body["z"], np.float32)
        expected = conditional.decode(z, labels=np.asarray(labels)).mean().numpy()
        assert np.max(np.abs(np.asarray(body["samples"]) - expected)) <= TOLERANCE
        infer = client.post(
            "/v2/models/cgen/infer",
            json={
                "inputs": [
                    {"name": "z", "shape": [4, 4], "datatype": "FP32", "data": z.ravel().tolist()},
                    {"name": "labels", "shape": [4], "datatype": "INT64", "data": labels},
                ]
            },
        )
        assert infer.status_code == 200, infer.text
        mean = next(o for o in infer.json()["outputs"] if o["name"] == "mean")
        assert np.max(np.abs(np.asarray(mean["data"]).reshape(4, 64) - expected)) <= TOLERANCE
        for bad, message in [
            ({"n": 2}, "list of 2 integer class ids"),
            ({"n": 2, "labels": [0, 10]}, "classes 0 to 9"),
            ({"n": 2, "labels": [0, 1.5]}, "list of 2 integer class ids"),
        ]:
            response = client.post("/v1/models/cgen:generate", json=bad)
            assert response.status_code == 400 and message in response.json()["error"], response.text
        out_of_range = client.post(
            "/v2/models/cgen/infer",
            json={
                "inputs": [
                    {"name": "z", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, 0]},
                    {"name": "labels", "shape": [1], "datatype": "INT64", "data": [-1]},
                ]
            },
        )
        assert out_of_range.status_code == 400 and "classes 0 to 9" in out_of_range.json()["error"]
        refused = client.post("/v1/models/ae:generate", json={"n": 2})
        assert refused.status_code == 400 and "autoencoder" in refused.json()["error"]


def test_an_unseeded_generation_answers_the_seed_that_draws_it_again(client):
    first, second = (client.post("/v1/models/gen:generate", json={"n": 3}).json() for _ in range(2))
    assert first["seed"] != second["seed"] and first["z"] != second["z"]
    assert all(isinstance(body["seed"], int) and 0 <= body["seed"] < 2**53 for body in (first, second))
    assert client.post("/v1/models/gen:generate", json={"n": 3, "seed": first["seed"]}).json() == first
    seeded = client.post("/v1/models/gen:generate", json={"n": 3, "seed": 7}).json()
    assert seeded["seed"] == 7
    np.testing.assert_array_equal(
        np.float32(seeded["z"]), np.random.default_rng(7).standard_normal((3, 4)).astype(np.float32)
    )


@pytest.mark.slow
@pytest.mark.parametrize("posterior", ["diagonal", "iaf"])
def test_generate_draws_from_an_exported_vamp_prior(digits, tmp_path, posterior):
    """The server samples the VampPrior's mixture from the components exported beside the
    decoder (under an IAF, the mixture of the flow's base Gaussians that the model's prior is)."""
    model = tfvae.VAE(
        (64,), 2, hidden_units=(32,), seed=0, posterior=posterior, prior=tfvae.VampPrior(2, num_components=4)
    )
    model.compile()
    model.fit(digits.train[:512], epochs=2, batch_size=64, verbose=0)
    export_dir = str(tmp_path / "repo")
    tfvae.export(model, export_dir, "vamp", parts=("decoder",))
    with serve_in_process(export_dir) as client:
        bodies = [client.post("/v1/models/vamp:generate", json={"n": 2000, "seed": seed}).json() for seed in (0, 1)]
    z = np.concatenate([np.asarray(body["z"], np.float32) for body in bodies])  # [4000, 2]
    np.testing.assert_allclose(np.asarray(bodies[0]["samples"]), model.decode(z[:2000]).mean().numpy(), atol=TOLERANCE)
    reference = model.prior.sample(20000, seed=3).numpy()
    scale = reference.std(axis=0)
    # 4,000 draws: the means agree to a few standard errors (scale / 63), the spreads to ~5%.
    np.testing.assert_allclose(z.mean(axis=0), reference.mean(axis=0), atol=float(scale.max()) * 0.08)
    np.testing.assert_allclose(z.std(axis=0), scale, rtol=0.08)
    assert not np.allclose(z.std(axis=0), 1.0, atol=0.05)  # not N(0, I) by mistake


def test_a_full_batch_queue_refuses_at_once_with_retry_after_and_serves_the_rest(repository):
    with serve_in_process(repository[0], max_batch_size=1, batch_delay_ms=0, max_rows=2, max_queue_rows=2) as client:
        model = client.app.state.service.find("gen")
        run = model.backend.run

        def slow(inputs):  # a model run of 200 ms: 12 requests at once overflow a queue of 2 rows
            time.sleep(0.2)
            return run(inputs)

        model.backend.run = slow
        z = latent(12, seed=4)
        answers = [None] * 12

        def call(i):
            started = time.perf_counter()
            response = client.post("/v1/models/gen:predict", json={"instances": z[i : i + 1].tolist()})
            answers[i] = (response, time.perf_counter() - started)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        served = [i for i, (response, _) in enumerate(answers) if response.status_code == 200]
        refused = [(response, seconds) for response, seconds in answers if response.status_code == 503]
        assert len(served) + len(refused) == 12 and served and refused
        for response, seconds in refused:  # refused at once, not after waiting in line
            assert response.headers["retry-after"] == "1" and "overloaded" in response.json()["error"]
            assert seconds < 0.2  # a wait in line would take at least one model run
        for i in served:
            expected = repository[1].decode(z[i : i + 1]).mean().numpy()
            np.testing.assert_allclose(answers[i][0].json()["predictions"], expected, atol=TOLERANCE)
        metrics = client.get("/metrics").text
        assert f'tfvae_overload_refusals_total{{model="gen"}} {float(len(refused))}' in metrics
        assert 'tfvae_queued_rows{model="gen"} 0.0' in metrics


def _eventually(condition, seconds=60):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the server did not pick up the repository's change"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_polled_repository_swaps_versions_in_and_out_while_every_request_is_answered(digits, tmp_path, caplog):
    export_dir = str(tmp_path / "repo")
    models = []
    for seed in range(3):
        model = tiny_vae(latent_dim=4, seed=seed)
        model.fit(digits.train[:256], epochs=1, batch_size=64, verbose=0)
        models.append(model)
    tfvae.export(models[0], export_dir, "gen", parts=("decoder",))
    z = latent(2)
    expected = [model.decode(z).mean().numpy() for model in models]

    def answers_like(index):
        got = client.post("/v1/models/gen:predict", json={"instances": z.tolist()}).json()
        return np.allclose(got["predictions"], expected[index], atol=TOLERANCE)

    def versions():
        return client.get("/v2/models/gen").json()["versions"]

    with serve_in_process(export_dir, poll_seconds=0.1, latest_versions=2) as client:
        stop, failures = threading.Event(), []

        def traffic():
            while not stop.is_set():
                response = client.post("/v1/models/gen:predict", json={"instances": z.tolist()})
                if response.status_code != 200:
                    failures.append(response.text)

        sender = threading.Thread(target=traffic)
        sender.start()
        try:
            tfvae.export(models[1], export_dir, "gen", parts=("decoder",))  # version 2 appears
            _eventually(lambda: versions() == ["1", "2"])
            assert answers_like(1)
            tampered_copy(export_dir, "gen", "2", "3")  # a version 3 whose file differs from its manifest
            _eventually(lambda: client.get("/v2/models/gen/ready").status_code == 503)
            assert "differs from its manifest's sha256" in client.get("/v2/models/gen/ready").json()["error"]
            assert versions() == ["1", "2"] and answers_like(1)  # the others serve on
            shutil.rmtree(os.path.join(export_dir, "gen", "1"))  # removed: unloaded
            _eventually(lambda: versions() == ["2"])
            tfvae.export(models[2], export_dir, "gen", parts=("decoder",))  # version 4
            _eventually(lambda: versions() == ["2", "4"])  # the newest two servable ones
            assert answers_like(2)
        finally:
            stop.set()
            sender.join()
    assert not failures, failures[:3]
    logged = caplog.text
    assert logged.count("not serving gen version 3") == 1  # refused once, not at every poll
    assert "unloading gen version 1" in logged and "serving gen version 4" in logged


# Every REST route, the group that guards it, and a body it answers 200.
GUARDED_ROUTES = [
    ("GET", "/v2", "metadata", None),
    ("GET", "/v2/models/gen", "metadata", None),
    ("GET", "/v2/models/gen/versions/1", "metadata", None),
    ("GET", "/v2/models/gen/config", "metadata", None),
    ("GET", "/v1/models/gen", "metadata", None),
    ("GET", "/v1/models/gen/versions/1", "metadata", None),
    ("GET", "/v1/models/gen/metadata", "metadata", None),
    ("POST", "/v2/models/gen/infer", "inference", v2_body(latent(2))),
    ("POST", "/v2/models/gen/versions/1/infer", "inference", v2_body(latent(2))),
    ("POST", "/v1/models/gen:predict", "inference", orjson.dumps({"instances": latent(2).tolist()})),
    ("POST", "/v1/models/gen:generate", "inference", orjson.dumps({"n": 2, "seed": 0})),
    ("GET", "/metrics", "metrics", None),
    ("GET", "/v2/models/gen/stats", "metrics", None),
    ("GET", "/v2/health/live", "health", None),
    ("GET", "/v2/health/ready", "health", None),
    ("GET", "/v2/models/gen/ready", "health", None),
    ("POST", "/v2/repository/index", "repository", None),
]


@pytest.mark.parametrize("health_key", [False, True], ids=["health-open", "health-keyed"])
def test_api_keys_refuse_missing_and_wrong_keys_on_every_route_of_their_group(repository, tmp_path, health_key):
    keys = tmp_path / "keys"
    # A key for inference alone, one for metadata and metrics, and optionally one for health.
    keys.write_text(
        "inference=i-key\n# metadata and metrics share one\nmetadata,metrics=m-key\nrepository=r-key\n"
        + ("health=h-key\n" if health_key else "")
    )
    by_group = {"inference": "i-key", "metadata": "m-key", "metrics": "m-key", "health": "h-key", "repository": "r-key"}
    with serve_in_process(repository[0], api_keys=access.read_key_file(str(keys))) as client:
        for method, path, group, body in GUARDED_ROUTES:
            key = by_group[group]
            if group == "health" and not health_key:
                assert client.request(method, path).status_code == 200, path  # probes stay open
                continue
            missing = client.request(method, path, content=body)
            assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer"), path
            assert "Authorization: Bearer" in missing.json()["error"]
            other = next(k for g, k in by_group.items() if k != key)
            for wrong in (f"Bearer {other}", f"Bearer {key}x", key, f"Basic {key}"):
                assert client.request(method, path, content=body, headers={"authorization": wrong}).status_code == 401
            answered = client.request(method, path, content=body, headers={"authorization": f"Bearer {key}"})
            assert answered.status_code == 200, (path, answered.text)
        refused = client.get("/metrics", headers={"authorization": "Bearer m-key"}).text
        assert 'endpoint="unauthenticated"' in refused


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "holds no key"),
        ("inference=\n", "no usable key"),
        ("predict=k\n", "unknown group 'predict'"),
        ("inference=two words\n", "no usable key"),
    ],
)
def test_a_bad_api_key_file_is_refused_naming_the_line(tmp_path, text, message):
    path = tmp_path / "keys"
    path.write_text(text)
    with pytest.raises(tfvae.TfvaeError, match=message):
        access.read_key_file(str(path))


def test_a_request_past_its_own_timeout_in_the_queue_is_refused_and_the_others_run():
    class Slow:
        def run(self, inputs):
            time.sleep(0.2)
            return {"y": inputs["x"] * 2}

    async def scenario():
        batcher = DynamicBatcher(Slow(), max_batch_size=1, delay=0.0)
        batcher.start()
        running = asyncio.ensure_future(batcher.submit({"x": np.ones((1, 1))}))
        await asyncio.sleep(0.01)  # the first is in the model for 0.2 s; the next two wait
        impatient = asyncio.ensure_future(batcher.submit({"x": np.ones((1, 1))}, timeout_s=0.05))
        patient = asyncio.ensure_future(batcher.submit({"x": np.full((1, 1), 3.0)}, timeout_s=5.0))
        results = await asyncio.gather(running, impatient, patient, return_exceptions=True)
        left = batcher.queued_rows
        await batcher.stop()
        return results, left

    (first, impatient, patient), left = asyncio.run(scenario())
    assert first["y"][0, 0] == 2 and patient["y"][0, 0] == 6
    assert isinstance(impatient, QueueTimeout) and 0.05 <= impatient.waited_s < 1.0
    assert left == 0  # the refused request's rows left the queue's count


@pytest.mark.parametrize(
    "timeout, status, message",
    [
        (1, 503, "request timeout expired: it waited"),
        (10_000_000, 200, None),
        (0, 400, "parameters.timeout must be a positive integer of microseconds; got 0"),
        (-5, 400, "got -5"),
        ("soon", 400, "got 'soon'"),
        (1.5, 400, "got 1.5"),
        (True, 400, "got True"),
    ],
)
def test_v2_parameters_timeout_as_triton_reads_it(client, timeout, status, message):
    body = orjson.loads(v2_body(latent(2)))
    body["parameters"] = {"timeout": timeout}
    answer = client.post("/v2/models/gen/infer", content=orjson.dumps(body))
    assert answer.status_code == status, answer.text
    if message:
        assert message in answer.json()["error"]


def test_statistics_and_tritons_metric_names_count_what_each_model_version_did(repository):
    with serve_in_process(repository[0]) as client:
        for _ in range(3):
            assert client.post("/v2/models/gen/infer", content=v2_body(latent(2))).status_code == 200
        late = orjson.loads(v2_body(latent(2)))
        late["parameters"] = {"timeout": 1}
        assert client.post("/v2/models/gen/infer", content=orjson.dumps(late)).status_code == 503
        (stats,) = client.get("/v2/models/gen/stats").json()["model_stats"]
        everything = client.get("/v2/models/stats").json()["model_stats"]
        assert client.get("/v2/models/nope/stats").status_code == 404
        metrics = client.get("/metrics").text
    # The same figures under Triton's metric names, beside tfvae's own.
    for line in (
        'nv_inference_request_success{model="gen",version="1"} 3.0',
        'nv_inference_request_failure{model="gen",reason="REJECTED",version="1"} 1.0',
        'nv_inference_request_failure{model="gen",reason="BACKEND",version="1"} 0.0',
        'nv_inference_count{model="gen",version="1"} 6.0',
        f'nv_inference_exec_count{{model="gen",version="1"}} {stats["execution_count"]}.0',
        'nv_inference_pending_request_count{model="gen",version="1"} 0.0',
        'nv_inference_count{model="gen_encoder",version="1"} 0.0',
    ):
        assert line in metrics.splitlines(), line
    assert "nv_inference_queue_duration_us" in metrics and "tfvae_requests_total" in metrics
    inference = stats["inference_stats"]
    assert (stats["name"], stats["version"]) == ("gen", "1") and stats["last_inference"] > 0
    assert inference["success"]["count"] == 3 and inference["fail"]["count"] == 1
    assert inference["queue"]["count"] == 3  # the late request never reached a batch
    assert stats["inference_count"] == 6 and 1 <= stats["execution_count"] <= 3
    assert inference["compute_infer"]["count"] == stats["execution_count"]
    batches = stats["batch_stats"]
    assert sum(b["compute_infer"]["count"] for b in batches) == stats["execution_count"]
    assert sum(b["batch_size"] * b["compute_infer"]["count"] for b in batches) == stats["inference_count"]
    assert all(inference[kind]["ns"] > 0 for kind in ("success", "fail", "queue", "compute_infer"))
    assert [(s["name"], s["version"]) for s in everything] == [("gen", "1"), ("gen_encoder", "1")]
    assert everything[1]["inference_count"] == 0


def test_the_grpc_health_service_follows_readiness_refreshes_and_a_stop(repository, tmp_path):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    export_dir = str(tmp_path / "repo")
    shutil.copytree(repository[0], export_dir)
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING

    async def scenario():
        async with grpc_front(export_dir) as (service, front, channel):
            health = health_pb2_grpc.HealthStub(channel)

            async def status(name):
                return (await health.Check(health_pb2.HealthCheckRequest(service=name))).status

            seen = {name: await status(name) for name in ("", "inference.GRPCInferenceService", "gen", "gen_encoder")}
            with pytest.raises(grpc.aio.AioRpcError) as unknown:
                await status("nope")
            watch = health.Watch(health_pb2.HealthCheckRequest(service="gen"))
            watched = [(await watch.read()).status]
            # A version 2 of gen whose file differs from its manifest: gen's newest is refused.
            broken = tampered_copy(export_dir, "gen", "1", "2")
            await service.refresh()
            after_refusal = {name: await status(name) for name in ("", "gen", "gen_encoder")}
            watched.append((await watch.read()).status)
            shutil.rmtree(broken)
            await service.refresh()
            recovered = await status("gen")
            watched.append((await watch.read()).status)
            await front.health.shut_down()  # what a stop does first, while RPCs still finish
            stopping = {name: await status(name) for name in ("", "gen")}
            watched.append((await watch.read()).status)
            watch.cancel()
        return seen, unknown.value, watched, after_refusal, recovered, stopping

    seen, unknown, watched, after_refusal, recovered, stopping = asyncio.run(scenario())
    assert set(seen.values()) == {serving}
    assert unknown.code() == grpc.StatusCode.NOT_FOUND and "unknown service 'nope'" in unknown.details()
    # Ready only when all models are (the default --ready-when all); the encoder serves on.
    assert after_refusal == {"": not_serving, "gen": not_serving, "gen_encoder": serving}
    assert recovered == serving
    assert stopping == {"": not_serving, "gen": not_serving}
    assert watched == [serving, not_serving, serving, not_serving]


def test_tf_servings_grpc_api_answers_its_own_client_and_refuses_bad_input_with_its_codes(repository):
    import tensorflow as tf
    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import (
        get_model_metadata_pb2,
        get_model_status_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    export_dir, model = repository
    z = latent(5)

    def predict(name="gen", inputs=None, version=None, signature=None, output_filter=()):
        request = predict_pb2.PredictRequest(output_filter=list(output_filter))
        request.model_spec.name = name
        if version is not None:
            request.model_spec.version.value = version
        if signature is not None:
            request.model_spec.signature_name = signature
        for key, value in (inputs if inputs is not None else {"z": tf.make_tensor_proto(z)}).items():
            request.inputs[key].CopyFrom(value)
        return request

    huge = tf.make_tensor_proto(np.zeros((1, 4), np.float32))
    huge.tensor_shape.dim[0].size = 2**40  # a claim checked before any array is made
    bad = {
        "unknown model": (predict("nope"), "NOT_FOUND"),
        "unknown version": (predict(version=9), "NOT_FOUND"),
        "wrong input name": (predict(inputs={"x": tf.make_tensor_proto(z)}), "INVALID_ARGUMENT"),
        "wrong shape": (predict(inputs={"z": tf.make_tensor_proto(np.zeros((2, 5), np.float32))}), "INVALID_ARGUMENT"),
        "float64": (predict(inputs={"z": tf.make_tensor_proto(z.astype(np.float64))}), "INVALID_ARGUMENT"),
        "NaN": (predict(inputs={"z": tf.make_tensor_proto(np.full((1, 4), np.nan, np.float32))}), "INVALID_ARGUMENT"),
        "too many rows": (
            predict(inputs={"z": tf.make_tensor_proto(np.zeros((MAX_ROWS + 1, 4), np.float32))}),
            "RESOURCE_EXHAUSTED",
        ),
        "2^40 rows claimed": (predict(inputs={"z": huge}), "RESOURCE_EXHAUSTED"),
        "unknown signature": (predict(signature="classify"), "INVALID_ARGUMENT"),
        "unknown output": (predict(output_filter=["logits", "median"]), "INVALID_ARGUMENT"),
    }

    async def scenario():
        refusals = {}
        async with grpc_front(export_dir, max_rows=MAX_ROWS, tfserving_grpc=True) as (service, front, channel):
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            answer = await stub.Predict(predict(version=1))
            params = await stub.Predict(predict(signature="params", output_filter=["logits"]))
            metadata_request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
            metadata_request.model_spec.name = "gen"
            metadata = await stub.GetModelMetadata(metadata_request)
            status_request = get_model_status_pb2.GetModelStatusRequest()
            status_request.model_spec.name = "gen"
            status = await model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status_request)
            for case, (request, _) in bad.items():
                try:
                    await stub.Predict(request)
                except grpc.aio.AioRpcError as error:
                    refusals[case] = (error.code().name, error.details())
            live = await stub.Predict(predict())  # the server answers on after every refusal
        return answer, params, metadata, status, refusals, live

    answer, params, metadata, status, refusals, live = asyncio.run(scenario())
    expected = model.decode(z)
    assert answer.model_spec.name == "gen" and answer.model_spec.version.value == 1
    assert answer.model_spec.signature_name == "serving_default" and list(answer.outputs) == ["mean"]
    np.testing.assert_allclose(tf.make_ndarray(answer.outputs["mean"]), expected.mean().numpy(), atol=TOLERANCE)
    assert params.model_spec.signature_name == "params" and list(params.outputs) == ["logits"]
    np.testing.assert_allclose(
        tf.make_ndarray(params.outputs["logits"]),
        model.likelihood_layer.parameters_of(expected)["logits"].numpy(),
        atol=TOLERANCE,
    )
    np.testing.assert_array_equal(tf.make_ndarray(live.outputs["mean"]), tf.make_ndarray(answer.outputs["mean"]))
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert metadata.metadata["signature_def"].Unpack(signatures)
    serving_default = signatures.signature_def["serving_default"]
    assert serving_default.method_name == "tensorflow/serving/predict"
    assert serving_default.inputs["z"].dtype == types_pb2.DT_FLOAT
    assert [d.size for d in serving_default.inputs["z"].tensor_shape.dim] == [-1, 4]
    assert [d.size for d in serving_default.outputs["mean"].tensor_shape.dim] == [-1, 64]
    assert list(signatures.signature_def["params"].outputs) == ["logits"]
    assert [(s.version, s.state) for s in status.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)
    ]
    assert {case: code for case, (code, _) in refusals.items()} == {case: code for case, (_, code) in bad.items()}
    assert "the model takes DT_FLOAT" in refusals["float64"][1] and "DT_DOUBLE" in refusals["float64"][1]


def test_tf_serving_rest_metadata_describes_each_signature_as_tf_serving_does(client):
    for path in ("/v1/models/gen/metadata", "/v1/models/gen/versions/1/metadata"):
        answer = client.get(path)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model_spec"] == {"name": "gen", "signature_name": "", "version": "1"}
        signatures = body["metadata"]["signature_def"]["signature_def"]
        assert sorted(signatures) == ["params", "serving_default"]
        default = signatures["serving_default"]
        assert default["method_name"] == "tensorflow/serving/predict"
        assert default["inputs"] == {
            "z": {
                "dtype": "DT_FLOAT",
                "tensor_shape": {"dim": [{"size": "-1", "name": ""}, {"size": "4", "name": ""}], "unknown_rank": False},
                "name": "serving_default_z:0",
            }
        }
        assert list(default["outputs"]) == ["mean"] and list(signatures["params"]["outputs"]) == ["logits"]
    assert client.get("/v1/models/nope/metadata").status_code == 404
    assert client.post("/v1/models/gen/metadata", content=b"{}").status_code == 405


def test_tritons_repository_api_lists_unloads_and_loads_models(repository, tmp_path):
    export_dir = str(tmp_path / "repo")
    shutil.copytree(repository[0], export_dir)
    body = v2_body(latent(2))
    ready = {"name": "gen", "version": "1", "state": "READY", "reason": ""}
    encoder_ready = {**ready, "name": "gen_encoder"}
    with serve_in_process(export_dir) as client:
        assert client.post("/v2/repository/index").json() == [ready, encoder_ready]
        assert client.post("/v2/repository/models/gen/unload").status_code == 200
        assert client.post("/v2/models/gen/infer", content=body).status_code == 404  # unloaded: unknown
        assert client.get("/v2/models/gen_encoder/ready").status_code == 200  # the others serve on
        unloaded = {"name": "gen", "state": "UNAVAILABLE", "reason": "unloaded"}
        assert client.post("/v2/repository/index").json() == [unloaded, encoder_ready]
        assert client.post("/v2/repository/index", json={"ready": True}).json() == [encoder_ready]
        client.portal.call(client.app.state.service.refresh)  # a poll does not bring it back
        assert client.post("/v2/models/gen/infer", content=body).status_code == 404
        assert client.post("/v2/repository/models/gen/load").status_code == 200
        assert client.post("/v2/models/gen/infer", content=body).status_code == 200
        tampered_copy(export_dir, "gen", "1", "2")  # a version 2 whose file differs from its manifest
        refused = client.post("/v2/repository/models/gen/load")
        assert refused.status_code == 400 and "failed to load model 'gen': version 2" in refused.json()["error"]
        assert client.post("/v2/models/gen/versions/1/infer", content=body).status_code == 200  # v1 serves on
        for path, options, status, message in [
            ("/v2/repository/models/nope/unload", None, 404, "unknown model 'nope'"),
            ("/v2/repository/models/nope/load", None, 400, "no model 'nope' in the repository"),
            ("/v2/repository/models/gen/load", {"parameters": {"config": "{}"}}, 400, "load takes no parameters"),
            ("/v2/repository/index", {"ready": "yes"}, 400, '"ready" must be true or false'),
        ]:
            answer = client.post(path, json=options)
            assert answer.status_code == status and message in answer.json()["error"], (path, answer.text)


def test_tritons_repository_api_over_grpc(repository, tmp_path):
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc

    export_dir = str(tmp_path / "repo")
    shutil.copytree(repository[0], export_dir)

    async def scenario():
        async with grpc_front(export_dir) as (service, front, channel):
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)

            async def index(ready=False):
                answer = await stub.RepositoryIndex(pb.RepositoryIndexRequest(ready=ready))
                return [(m.name, m.version, m.state, m.reason) for m in answer.models]

            before = await index()
            await stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="gen"))
            after_unload, ready_only = await index(), await index(ready=True)
            gen_ready = (await stub.ModelReady(pb.ModelReadyRequest(name="gen"))).ready
            await stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="gen"))
            after_load = await index()
            codes = {}
            with_parameters = pb.RepositoryModelLoadRequest(model_name="gen")
            with_parameters.parameters["config"].string_param = "{}"
            for case, name, request in (
                ("unload nope", "RepositoryModelUnload", pb.RepositoryModelUnloadRequest(model_name="nope")),
                ("load nope", "RepositoryModelLoad", pb.RepositoryModelLoadRequest(model_name="nope")),
                ("load with parameters", "RepositoryModelLoad", with_parameters),
            ):
                try:
                    await getattr(stub, name)(request)
                except grpc.aio.AioRpcError as error:
                    codes[case] = error.code().name, error.details().split(":")[0]
            extensions = (await stub.ServerMetadata(pb.ServerMetadataRequest())).extensions
        return before, after_unload, ready_only, gen_ready, after_load, codes, list(extensions)

    before, after_unload, ready_only, gen_ready, after_load, codes, extensions = asyncio.run(scenario())
    assert before == after_load == [("gen", "1", "READY", ""), ("gen_encoder", "1", "READY", "")]
    assert after_unload == [("gen", "", "UNAVAILABLE", "unloaded"), ("gen_encoder", "1", "READY", "")]
    assert ready_only == [("gen_encoder", "1", "READY", "")] and not gen_ready
    assert codes == {
        "unload nope": ("NOT_FOUND", "unknown model 'nope'; this server has ['gen', 'gen_encoder']"),
        "load nope": ("INVALID_ARGUMENT", "no model 'nope' in the repository " + export_dir),
        "load with parameters": ("INVALID_ARGUMENT", "load takes no parameters on this server"),
    }
    assert extensions == ["binary_tensor_data", "model_repository"]
