"""The real server in a subprocess on loopback, spoken to over HTTP by real clients."""
import asyncio
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import onnxruntime
import orjson
import pytest
import tritonclient.http as triton
from conftest import tiny_vae, trained_conditional_and_autoencoder
from helpers import Server

import tfvae

TOLERANCE = 1e-5
MAX_ROWS = 64
MAX_BODY_MIB = 0.25


@pytest.fixture(scope="module")
def repository(tmp_path_factory, digits):
    model = tiny_vae(latent_dim=4)
    model.fit(digits.train[:512], epochs=1, batch_size=64, verbose=0)
    export_dir = str(tmp_path_factory.mktemp("repo"))
    tfvae.export(model, export_dir, "gen")
    return export_dir, model


@pytest.fixture(scope="module")
def server(repository):
    running = Server(repository[0], "--max-rows", str(MAX_ROWS), "--max-body-mib", str(MAX_BODY_MIB),
                     "--batch-delay-ms", "5")
    yield running
    assert running.stop(), running.output


def onnx_outputs(export_dir, name, inputs):
    session = onnxruntime.InferenceSession(os.path.join(export_dir, name, "1", "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs)))


def latent(rows, seed=0):
    return np.random.default_rng(seed).standard_normal((rows, 4)).astype(np.float32)


def test_health_metadata_and_readiness(server):
    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("gen") and client.is_model_ready("gen", "1")
    assert not client.is_model_ready("nope")
    metadata = client.get_model_metadata("gen")
    assert metadata["inputs"] == [{"name": "z", "datatype": "FP32", "shape": [-1, 4]}]
    assert {o["name"] for o in metadata["outputs"]} == {"mean", "logits"}
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data"]
    assert httpx.get(f"{server.url}/v2/models/gen_encoder/versions/1").json()["outputs"][1]["name"] == "scale"


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_v2_infer_with_a_standard_client_matches_the_exported_model(server, repository, binary):
    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    z = latent(7)
    expected = onnx_outputs(repository[0], "gen", {"z": z})
    model = repository[1]
    z_input = triton.InferInput("z", list(z.shape), "FP32")
    z_input.set_data_from_numpy(z, binary_data=binary)
    result = client.infer("gen", [z_input], model_version="1",
                          outputs=[triton.InferRequestedOutput("mean", binary_data=binary)])
    assert result.as_numpy("logits") is None  # only what was asked for
    np.testing.assert_allclose(result.as_numpy("mean"), expected["mean"], atol=TOLERANCE)
    np.testing.assert_allclose(result.as_numpy("mean"), model.decode(z).mean().numpy(), atol=TOLERANCE)
    both = client.infer("gen", [z_input])  # no outputs named: all of them
    np.testing.assert_allclose(both.as_numpy("logits"), expected["logits"], atol=TOLERANCE)
    x = (np.random.default_rng(1).random((5, 64)) > 0.5).astype(np.float32)
    x_input = triton.InferInput("x", [5, 64], "FP32")
    x_input.set_data_from_numpy(x, binary_data=binary)
    encoded = client.infer("gen_encoder", [x_input])
    np.testing.assert_allclose(encoded.as_numpy("loc"), model.encode(x).mean().numpy(), atol=TOLERANCE)


def test_v2_binary_output_by_request_parameter(server, repository):
    z = latent(2)
    body = orjson.dumps({"id": "r1", "parameters": {"binary_data_output": True},
                         "inputs": [{"name": "z", "shape": [2, 4], "datatype": "FP32", "data": z.ravel().tolist()}]})
    response = httpx.post(f"{server.url}/v2/models/gen/infer", content=body,
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    length = int(response.headers["inference-header-content-length"])
    header = orjson.loads(response.content[:length])
    assert header["id"] == "r1" and header["model_version"] == "1"
    offset, expected = length, onnx_outputs(repository[0], "gen", {"z": z})
    for output in header["outputs"]:
        size = output["parameters"]["binary_data_size"]
        array = np.frombuffer(response.content[offset: offset + size], "<f4").reshape(output["shape"])
        np.testing.assert_allclose(array, expected[output["name"]], atol=TOLERANCE)
        offset += size
    assert offset == len(response.content)


def test_tf_serving_rest_row_and_columnar_formats(server, repository):
    z = latent(3)
    model = repository[1]
    mean = model.decode(z).mean().numpy()
    rows = httpx.post(f"{server.url}/v1/models/gen:predict", json={"instances": z.tolist()}).json()
    np.testing.assert_allclose(rows["predictions"], mean, atol=TOLERANCE)
    columns = httpx.post(f"{server.url}/v1/models/gen/versions/1:predict", json={"inputs": {"z": z.tolist()}}).json()
    np.testing.assert_allclose(columns["outputs"], mean, atol=TOLERANCE)
    named = httpx.post(f"{server.url}/v1/models/gen:predict", json={"instances": [{"z": r} for r in z.tolist()]}).json()
    np.testing.assert_allclose(named["predictions"], mean, atol=TOLERANCE)
    logits = httpx.post(f"{server.url}/v1/models/gen:predict",
                        json={"signature_name": "params", "instances": z.tolist()}).json()
    np.testing.assert_allclose(logits["predictions"], model.decode(z).distribution.logits.numpy(), atol=TOLERANCE)
    x = (np.random.default_rng(2).random((2, 64)) > 0.5).astype(np.float32)
    encoded = httpx.post(f"{server.url}/v1/models/gen_encoder:predict", json={"instances": x.tolist()}).json()
    assert set(encoded["predictions"][0]) == {"loc", "scale"}  # several outputs: a dict per instance
    np.testing.assert_allclose([p["scale"] for p in encoded["predictions"]],
                               model.encode(x).stddev().numpy(), atol=TOLERANCE)
    status = httpx.get(f"{server.url}/v1/models/gen").json()
    assert status["model_version_status"][0] == {"version": "1", "state": "AVAILABLE",
                                                 "status": {"error_code": "OK", "error_message": ""}}


def test_generate_samples_the_prior_and_repeats_with_a_seed(server, repository):
    first = httpx.post(f"{server.url}/v1/models/gen:generate", json={"n": 5, "seed": 3}).json()
    again = httpx.post(f"{server.url}/v1/models/gen:generate", json={"n": 5, "seed": 3}).json()
    other = httpx.post(f"{server.url}/v1/models/gen:generate", json={"n": 5, "seed": 4}).json()
    assert first == again and first["samples"] != other["samples"]
    z = np.random.default_rng(3).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(first["z"], z, atol=1e-6)
    np.testing.assert_allclose(first["samples"], repository[1].decode(z).mean().numpy(), atol=TOLERANCE)


def v2_body(z, **overrides):
    entry = {"name": "z", "shape": list(z.shape), "datatype": "FP32", "data": z.ravel().tolist()}
    entry.update(overrides)
    return orjson.dumps({"inputs": [entry]})


def binary_body(size, payload):
    header = orjson.dumps({"inputs": [{"name": "z", "shape": [1, 4], "datatype": "FP32",
                                       "parameters": {"binary_data_size": size}}]})
    return header + payload, {"inference-header-content-length": str(len(header))}


BAD_REQUESTS = [
    ("malformed JSON", "POST", "/v2/models/gen/infer", b'{"inputs": [', {}, 400, "malformed JSON"),
    ("missing inputs", "POST", "/v2/models/gen/infer", b'{"outputs": []}', {}, 400, "needs \\\"inputs\\\""),
    ("missing data", "POST", "/v2/models/gen/infer", b'{"inputs": [{"name": "z", "shape": [1, 4], "datatype": "FP32"}]}',
     {}, 400, "needs \\\"data\\\""),
    ("wrong shape", "POST", "/v2/models/gen/infer", v2_body(np.zeros((2, 5), np.float32)), {}, 400,
     "shape [2, 5]; expected [rows, 4]"),
    ("data/shape mismatch", "POST", "/v2/models/gen/infer", v2_body(np.zeros((2, 4), np.float32), shape=[3, 4]), {},
     400, "has 8 values but shape [3, 4] needs 12"),
    ("wrong datatype", "POST", "/v2/models/gen/infer", v2_body(np.zeros((1, 4), np.float32), datatype="INT64"), {},
     400, "datatype 'INT64'; the model takes FP32"),
    ("wrong input name", "POST", "/v2/models/gen/infer", v2_body(np.zeros((1, 4), np.float32), name="x"), {}, 400,
     "do not match the model's inputs"),
    ("strings as data", "POST", "/v2/models/gen/infer", v2_body(np.zeros((1, 4), np.float32), data=["a"] * 4), {},
     400, "must be numbers"),
    ("unknown output", "POST", "/v2/models/gen/infer",
     orjson.dumps({"inputs": [{"name": "z", "shape": [1, 4], "datatype": "FP32", "data": [0] * 4}],
                   "outputs": [{"name": "image"}]}), {}, 400, "unknown output(s) ['image']"),
    ("unknown model", "POST", "/v2/models/nope/infer", v2_body(np.zeros((1, 4), np.float32)), {}, 404,
     "unknown model 'nope'"),
    ("unknown version", "POST", "/v2/models/gen/versions/9/infer", v2_body(np.zeros((1, 4), np.float32)), {}, 404,
     "has no version '9'"),
    ("too many rows", "POST", "/v2/models/gen/infer", v2_body(np.zeros((MAX_ROWS + 1, 4), np.float32)), {}, 413,
     f"at most {MAX_ROWS} per request"),
    ("body over limit", "POST", "/v2/models/gen/infer", b" " * int(MAX_BODY_MIB * 2**20 + 1), {}, 413,
     "byte limit"),
    ("binary NaN", "POST", "/v2/models/gen/infer", *binary_body(16, np.full(4, np.nan, "<f4").tobytes()), 400,
     "contains NaN or Inf"),
    ("binary size mismatch", "POST", "/v2/models/gen/infer", *binary_body(12, b"\0" * 12), 400,
     "binary_data_size 12 does not match"),
    ("header length outside body", "POST", "/v2/models/gen/infer", b"{}", {"inference-header-content-length": "99"},
     400, "outside the body"),
    ("JSON NaN literal", "POST", "/v1/models/gen:predict", b'{"instances": [[NaN, 0, 0, 0]]}', {}, 400,
     "malformed JSON"),
    ("infinite value", "POST", "/v1/models/gen:predict", b'{"instances": [[1e999, 0, 0, 0]]}', {}, 400,
     "number is infinity"),
    ("content type", "POST", "/v1/models/gen:predict", b"instances=1", {"content-type": "text/plain"}, 415,
     "unsupported content type 'text/plain'"),
    ("both formats", "POST", "/v1/models/gen:predict", b'{"instances": [], "inputs": []}', {}, 400,
     "exactly one of"),
    ("unknown signature", "POST", "/v1/models/gen:predict", b'{"signature_name": "x", "instances": [[0,0,0,0]]}',
     {}, 400, "unknown signature_name 'x'"),
    ("unknown verb", "POST", "/v1/models/gen:classify", b'{"instances": [[0,0,0,0]]}', {}, 404, "unknown verb"),
    ("generate bad n", "POST", "/v1/models/gen:generate", b'{"n": 0}', {}, 400, "\\\"n\\\" must be an integer"),
    ("generate too many", "POST", "/v1/models/gen:generate", f'{{"n": {MAX_ROWS + 1}}}'.encode(), {}, 400,
     "\\\"n\\\" must be an integer"),
    ("generate labels", "POST", "/v1/models/gen:generate", b'{"n": 1, "labels": [3]}', {}, 400, "not conditional"),
    ("generate encoder", "POST", "/v1/models/gen_encoder:generate", b'{"n": 1}', {}, 400, "is an encoder"),
    ("no such route", "GET", "/v3/models", b"", {}, 404, "no such endpoint"),
    ("wrong method", "GET", "/v2/models/gen/infer", b"", {}, 405, "not allowed"),
]


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_input_gets_a_4xx_naming_the_problem_and_the_server_stays_up(server, case):
    _, method, path, body, headers, status, message = case
    response = httpx.request(method, server.url + path, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert message.replace("\\", "") in response.json()["error"]
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200


def test_concurrent_requests_are_batched_and_split_back_exactly(server, repository):
    model = repository[1]
    inputs = [latent(1 + i % 3, seed=100 + i) for i in range(24)]
    results = [None] * len(inputs)

    def call(i):
        response = httpx.post(f"{server.url}/v1/models/gen:predict", json={"instances": inputs[i].tolist()})
        results[i] = np.asarray(response.json()["predictions"])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(inputs))]
    before = _metric(server, "tfvae_batch_size_count", 'model="gen"')
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for z, got in zip(inputs, results):
        np.testing.assert_allclose(got, model.decode(z).mean().numpy(), atol=TOLERANCE)
    runs = _metric(server, "tfvae_batch_size_count", 'model="gen"') - before
    assert runs < len(inputs), "24 concurrent requests should share runs"


def _metric(server, name, labels):
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith(name) and labels in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_by_endpoint_and_status(server):
    httpx.post(f"{server.url}/v2/models/nope/infer", content=b"{}")
    text = httpx.get(f"{server.url}/metrics").text
    assert 'tfvae_requests_total{endpoint="v2_infer",status="404"}' in text
    assert "tfvae_request_latency_seconds_bucket" in text and "tfvae_batch_size_bucket" in text


def test_bounded_load_finishes_without_failures(server):
    """2,000 batch-1 requests at concurrency 32, bounded in count and time."""
    body = v2_body(latent(1))

    async def load():
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as client:
            semaphore = asyncio.Semaphore(32)

            async def one():
                async with semaphore:
                    response = await client.post("/v2/models/gen/infer", content=body)
                    return response.status_code

            return await asyncio.wait_for(asyncio.gather(*(one() for _ in range(2000))), timeout=120)

    statuses = asyncio.run(load())
    assert statuses.count(200) == 2000


def test_savedmodel_backend_serves_the_same_answers(repository):
    server = Server(repository[0], "--backend", "savedmodel")
    try:
        z = latent(4)
        got = httpx.post(f"{server.url}/v1/models/gen:predict", json={"instances": z.tolist()}).json()
        np.testing.assert_allclose(got["predictions"], repository[1].decode(z).mean().numpy(), atol=TOLERANCE)
    finally:
        assert server.stop(), server.output


def test_sigterm_drains_in_flight_requests_then_exits(repository):
    server = Server(repository[0], "--batch-delay-ms", "1500")  # a lone request waits 1.5 s
    answer = {}

    def slow_request():
        answer["response"] = httpx.post(f"{server.url}/v1/models/gen:predict",
                                        json={"instances": latent(1).tolist()}, timeout=30)

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(0.5)
    server.process.send_signal(signal.SIGTERM)
    thread.join(timeout=30)
    assert answer["response"].status_code == 200 and len(answer["response"].json()["predictions"]) == 1
    assert server.process.wait(timeout=30) == -signal.SIGTERM  # drained, then ended by the signal


def test_serve_refuses_a_folder_without_models(tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "tfvae")
    result = subprocess.run([script, "serve", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"tfvae serve: error: {tmp_path} holds no servable model (no <name>/<version>/manifest.json); "
        "write one with `tfvae export`."
    ]


def test_a_file_that_differs_from_its_manifest_is_not_served(repository, tmp_path):
    import shutil

    from tfvae.serving.repository import RepositoryError, load_repository

    copy = str(tmp_path / "repo")
    shutil.copytree(repository[0], copy)
    with open(os.path.join(copy, "gen", "1", "model.onnx"), "ab") as f:
        f.write(b"tampered")
    models = load_repository(copy)
    assert "gen" not in models and "gen_encoder" in models
    with open(os.path.join(copy, "gen_encoder", "1", "model.onnx"), "ab") as f:
        f.write(b"tampered")
    with pytest.raises(RepositoryError, match="holds no servable model"):
        load_repository(copy)


def test_generate_refuses_a_prior_the_server_cannot_sample(repository, tmp_path):
    import json
    import shutil

    copy = str(tmp_path / "repo")
    shutil.copytree(repository[0], copy)
    manifest_path = os.path.join(copy, "gen", "1", "manifest.json")
    with open(manifest_path) as f:
        manifest = json.load(f)
    manifest["prior"] = "VampPrior"
    with open(manifest_path, "w") as f:
        json.dump(manifest, f)
    server = Server(copy)
    try:
        response = httpx.post(f"{server.url}/v1/models/gen:generate", json={"n": 2})
        assert response.status_code == 400 and "cannot sample" in response.json()["error"]
        predicted = httpx.post(f"{server.url}/v1/models/gen:predict", json={"instances": latent(2).tolist()})
        assert predicted.status_code == 200
    finally:
        assert server.stop(), server.output


def test_conditional_generation_and_autoencoders_over_http(digits, tmp_path):
    conditional, autoencoder = trained_conditional_and_autoencoder(digits)
    export_dir = str(tmp_path / "repo")
    tfvae.export(conditional, export_dir, "cgen", parts=("decoder",))
    tfvae.export(autoencoder, export_dir, "ae", parts=("decoder",))
    server = Server(export_dir)
    try:
        labels = [0, 3, 9, 3]
        response = httpx.post(f"{server.url}/v1/models/cgen:generate", json={"n": 4, "seed": 5, "labels": labels})
        assert response.status_code == 200, response.text
        body = response.json()
        z = np.asarray(body["z"], np.float32)
        expected = conditional.decode(z, np.asarray(labels)).mean().numpy()
        assert np.max(np.abs(np.asarray(body["samples"]) - expected)) <= TOLERANCE
        infer = httpx.post(f"{server.url}/v2/models/cgen/infer", json={"inputs": [
            {"name": "z", "shape": [4, 4], "datatype": "FP32", "data": z.ravel().tolist()},
            {"name": "labels", "shape": [4], "datatype": "INT64", "data": labels},
        ]})
        assert infer.status_code == 200, infer.text
        mean = next(o for o in infer.json()["outputs"] if o["name"] == "mean")
        assert np.max(np.abs(np.asarray(mean["data"]).reshape(4, 64) - expected)) <= TOLERANCE
        for bad, message in [({"n": 2}, "list of 2 integer class ids"),
                             ({"n": 2, "labels": [0, 10]}, "classes 0 to 9"),
                             ({"n": 2, "labels": [0, 1.5]}, "list of 2 integer class ids")]:
            response = httpx.post(f"{server.url}/v1/models/cgen:generate", json=bad)
            assert response.status_code == 400 and message in response.json()["error"], response.text
        out_of_range = httpx.post(f"{server.url}/v2/models/cgen/infer", json={"inputs": [
            {"name": "z", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, 0]},
            {"name": "labels", "shape": [1], "datatype": "INT64", "data": [-1]},
        ]})
        assert out_of_range.status_code == 400 and "classes 0 to 9" in out_of_range.json()["error"]
        refused = httpx.post(f"{server.url}/v1/models/ae:generate", json={"n": 2})
        assert refused.status_code == 400 and "autoencoder" in refused.json()["error"]
    finally:
        assert server.stop(), server.output


def test_generate_draws_from_an_exported_vamp_prior(digits, tmp_path):
    """The server samples the VampPrior's mixture from the components exported beside the decoder."""
    model = tfvae.VAE((64,), 2, hidden_units=(32,), seed=0, prior=tfvae.VampPrior(2, num_components=4))
    model.compile()
    model.fit(digits.train[:512], epochs=2, batch_size=64, verbose=0)
    export_dir = str(tmp_path / "repo")
    tfvae.export(model, export_dir, "vamp", parts=("decoder",))
    server = Server(export_dir)
    try:
        bodies = [httpx.post(f"{server.url}/v1/models/vamp:generate", json={"n": 2000, "seed": seed}).json()
                  for seed in (0, 1)]
    finally:
        assert server.stop(), server.output
    z = np.concatenate([np.asarray(body["z"], np.float32) for body in bodies])  # [4000, 2]
    np.testing.assert_allclose(np.asarray(bodies[0]["samples"]), model.decode(z[:2000]).mean().numpy(), atol=TOLERANCE)
    reference = model.prior.sample(20000, seed=3).numpy()
    scale = reference.std(axis=0)
    # 4,000 draws: the means agree to a few standard errors (scale / 63), the spreads to ~5%.
    np.testing.assert_allclose(z.mean(axis=0), reference.mean(axis=0), atol=float(scale.max()) * 0.08)
    np.testing.assert_allclose(z.std(axis=0), scale, rtol=0.08)
    assert not np.allclose(z.std(axis=0), 1.0, atol=0.05)  # not N(0, I) by mistake
