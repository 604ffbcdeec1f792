"""The real server in a subprocess on loopback, spoken to over HTTP by real clients: what
needs a real process (standard clients, sockets, signals, the CLI). What the app answers
is tested in process, in test_serving_app.py."""

import asyncio
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time

import grpc
import httpx
import numpy as np
import onnxruntime
import orjson
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc
from helpers import MAX_BODY_MIB, MAX_ROWS, Server, free_port, latent, v2_body
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.slow  # trainings, servers and subprocesses: `make test-fast` leaves them out

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def repository(exported_vae):
    return exported_vae


@pytest.fixture(scope="module")
def server(repository):
    running = Server(
        repository[0],
        "--max-rows",
        str(MAX_ROWS),
        "--max-body-mib",
        str(MAX_BODY_MIB),
        "--batch-delay-ms",
        "5",
        grpc=True,
    )
    yield running
    assert running.stop(), running.output


def onnx_outputs(export_dir, name, inputs):
    session = onnxruntime.InferenceSession(
        os.path.join(export_dir, name, "1", "model.onnx"), providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs)))


def test_health_metadata_and_readiness(server):
    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("gen") and client.is_model_ready("gen", "1")
    assert not client.is_model_ready("nope")
    metadata = client.get_model_metadata("gen")
    assert metadata["inputs"] == [{"name": "z", "datatype": "FP32", "shape": [-1, 4]}]
    assert {o["name"] for o in metadata["outputs"]} == {"mean", "logits"}
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data", "model_repository"]
    assert httpx.get(f"{server.url}/v2/models/gen_encoder/versions/1").json()["outputs"][1]["name"] == "scale"
    # Triton's model configuration, as its client reads it: the server's own batch limit
    # and delay, dims without the batch axis.
    config = client.get_model_config("gen")
    assert config["max_batch_size"] == 256 and config["dynamic_batching"]["max_queue_delay_microseconds"] == 5000
    assert config["input"] == [{"name": "z", "data_type": "TYPE_FP32", "dims": [4]}]
    assert {(o["name"], tuple(o["dims"])) for o in config["output"]} == {("mean", (64,)), ("logits", (64,))}
    assert client.get_model_config("gen_encoder", "1")["output"][1]["name"] == "scale"
    assert client.get_inference_statistics("gen")["model_stats"][0]["name"] == "gen"  # Triton's statistics
    with pytest.raises(InferenceServerException, match="unknown model 'nope'"):
        client.get_model_config("nope")


@pytest.mark.parametrize(
    "binary, compression",
    [(False, None), (True, None), (False, "gzip"), (True, "deflate")],
    ids=["json", "binary", "json-gzip", "binary-deflate"],
)
def test_v2_infer_with_a_standard_client_matches_the_exported_model(server, repository, binary, compression):
    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    z = latent(7)
    expected = onnx_outputs(repository[0], "gen", {"z": z})
    model = repository[1]
    z_input = triton.InferInput("z", list(z.shape), "FP32")
    z_input.set_data_from_numpy(z, binary_data=binary)
    result = client.infer(
        "gen",
        [z_input],
        model_version="1",
        outputs=[triton.InferRequestedOutput("mean", binary_data=binary)],
        request_compression_algorithm=compression,  # Content-Encoding, as Triton reads it
        response_compression_algorithm=compression,  # Accept-Encoding, as Triton answers it
    )
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


def test_grpc_with_tritons_own_client_matches_the_exported_model(server, repository):
    client = triton_grpc.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("gen") and client.is_model_ready("gen", "1") and not client.is_model_ready("nope")
    metadata = client.get_model_metadata("gen", as_json=True)
    assert metadata["inputs"] == [{"name": "z", "datatype": "FP32", "shape": ["-1", "4"]}]
    assert client.get_server_metadata(as_json=True)["name"] == "tfvae"
    z = latent(7)
    expected = onnx_outputs(repository[0], "gen", {"z": z})
    z_input = triton_grpc.InferInput("z", list(z.shape), "FP32")
    z_input.set_data_from_numpy(z)  # raw_input_contents
    result = client.infer("gen", [z_input], outputs=[triton_grpc.InferRequestedOutput("mean")], request_id="r7")
    assert result.as_numpy("logits") is None and result.get_response().id == "r7"
    np.testing.assert_allclose(result.as_numpy("mean"), expected["mean"], atol=TOLERANCE)
    np.testing.assert_allclose(client.infer("gen", [z_input]).as_numpy("logits"), expected["logits"], atol=TOLERANCE)
    for compression in ("gzip", "deflate"):  # gRPC's message compression (grpc-encoding), as Triton reads it
        compressed = client.infer("gen", [z_input], compression_algorithm=compression)
        np.testing.assert_allclose(compressed.as_numpy("mean"), expected["mean"], atol=TOLERANCE)
    # tritonclient's per-request timeout (microseconds, parameters["timeout"]): 1 µs
    # passes while the request waits for its batch, 10 s does not.
    with pytest.raises(InferenceServerException, match="request timeout expired") as expired:
        client.infer("gen", [z_input], timeout=1)
    assert expired.value.status() == "StatusCode.UNAVAILABLE"
    assert client.infer("gen", [z_input], timeout=10_000_000).as_numpy("mean").shape == (7, 64)
    x = (np.random.default_rng(1).random((5, 64)) > 0.5).astype(np.float32)
    x_input = triton_grpc.InferInput("x", [5, 64], "FP32")
    x_input.set_data_from_numpy(x)
    encoded = client.infer("gen_encoder", [x_input])
    np.testing.assert_allclose(encoded.as_numpy("loc"), repository[1].encode(x).mean().numpy(), atol=TOLERANCE)
    # Typed contents, as other v2 clients send them.
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        request = service_pb2.ModelInferRequest(model_name="gen")
        request.inputs.add(name="z", datatype="FP32", shape=[7, 4]).contents.fp32_contents.extend(z.ravel())
        typed = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    mean = np.frombuffer(typed.raw_output_contents[[o.name for o in typed.outputs].index("mean")], "<f4")
    np.testing.assert_allclose(mean.reshape(7, 64), expected["mean"], atol=TOLERANCE)


def _grpc_refusal(server, model, inputs):
    client = triton_grpc.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    with pytest.raises(InferenceServerException) as error:
        client.infer(model, inputs)
    return error.value.status(), error.value.message()


def _grpc_input(name, array, datatype="FP32"):
    entry = triton_grpc.InferInput(name, list(array.shape), datatype)
    entry.set_data_from_numpy(array)
    return entry


@pytest.mark.parametrize(
    "model, inputs, status, message",
    [
        ("nope", lambda: [_grpc_input("z", latent(1))], "NOT_FOUND", "unknown model 'nope'"),
        ("gen", lambda: [_grpc_input("x", latent(1))], "INVALID_ARGUMENT", "do not match the model's inputs ['z']"),
        ("gen", lambda: [_grpc_input("z", np.zeros((2, 5), np.float32))], "INVALID_ARGUMENT", "expected [rows, 4]"),
        ("gen", lambda: [_grpc_input("z", np.zeros((1, 4)), "FP64")], "INVALID_ARGUMENT", "the model takes FP32"),
        ("gen", lambda: [_grpc_input("z", np.full((1, 4), np.nan, np.float32))], "INVALID_ARGUMENT", "NaN or Inf"),
        (
            "gen",
            lambda: [_grpc_input("z", np.zeros((MAX_ROWS + 1, 4), np.float32))],
            "RESOURCE_EXHAUSTED",
            f"at most {MAX_ROWS} per request",
        ),
        (
            "gen",
            lambda: [_grpc_input("z", np.zeros((int(MAX_BODY_MIB * 2**20) // 16 + 1, 4), np.float32))],
            "RESOURCE_EXHAUSTED",
            "larger than max",
        ),
    ],
    ids=["unknown-model", "wrong-input", "wrong-shape", "wrong-datatype", "nan", "too-many-rows", "over-size"],
)
def test_grpc_refuses_bad_input_with_its_status_code_and_stays_up(server, model, inputs, status, message):
    got_status, got_message = _grpc_refusal(server, model, inputs())
    assert got_status == f"StatusCode.{status}" and message in got_message, (got_status, got_message)
    if status != "RESOURCE_EXHAUSTED" or "rows" in message:  # gRPC itself refuses the over-size message
        assert f'endpoint="grpc_model_infer",status="{status}"' in httpx.get(f"{server.url}/metrics").text
    assert triton_grpc.InferenceServerClient(f"127.0.0.1:{server.grpc_port}").is_server_live()


def test_v2_binary_output_by_request_parameter(server, repository):
    z = latent(2)
    body = orjson.dumps(
        {
            "id": "r1",
            "parameters": {"binary_data_output": True},
            "inputs": [{"name": "z", "shape": [2, 4], "datatype": "FP32", "data": z.ravel().tolist()}],
        }
    )
    response = httpx.post(
        f"{server.url}/v2/models/gen/infer", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200
    length = int(response.headers["inference-header-content-length"])
    header = orjson.loads(response.content[:length])
    assert header["id"] == "r1" and header["model_version"] == "1"
    offset, expected = length, onnx_outputs(repository[0], "gen", {"z": z})
    for output in header["outputs"]:
        size = output["parameters"]["binary_data_size"]
        array = np.frombuffer(response.content[offset : offset + size], "<f4").reshape(output["shape"])
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
    logits = httpx.post(
        f"{server.url}/v1/models/gen:predict", json={"signature_name": "params", "instances": z.tolist()}
    ).json()
    np.testing.assert_allclose(logits["predictions"], model.decode(z).distribution.logits.numpy(), atol=TOLERANCE)
    x = (np.random.default_rng(2).random((2, 64)) > 0.5).astype(np.float32)
    encoded = httpx.post(f"{server.url}/v1/models/gen_encoder:predict", json={"instances": x.tolist()}).json()
    assert set(encoded["predictions"][0]) == {"loc", "scale"}  # several outputs: a dict per instance
    np.testing.assert_allclose(
        [p["scale"] for p in encoded["predictions"]], model.encode(x).stddev().numpy(), atol=TOLERANCE
    )
    status = httpx.get(f"{server.url}/v1/models/gen").json()
    assert status["model_version_status"][0] == {
        "version": "1",
        "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""},
    }


def test_generate_samples_the_prior_and_repeats_with_a_seed(server, repository):
    first = httpx.post(f"{server.url}/v1/models/gen:generate", json={"n": 5, "seed": 3}).json()
    again = httpx.post(f"{server.url}/v1/models/gen:generate", json={"n": 5, "seed": 3}).json()
    other = httpx.post(f"{server.url}/v1/models/gen:generate", json={"n": 5, "seed": 4}).json()
    assert first == again and first["samples"] != other["samples"]
    z = np.random.default_rng(3).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(first["z"], z, atol=1e-6)
    np.testing.assert_allclose(first["samples"], repository[1].decode(z).mean().numpy(), atol=TOLERANCE)


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


def test_tritons_clients_read_the_repository_index_and_unload_and_load_models(repository, tmp_path):
    export_dir = str(tmp_path / "repo")
    shutil.copytree(repository[0], export_dir)
    server = Server(export_dir, grpc=True)
    try:
        rest = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
        remote = triton_grpc.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        assert [(m["name"], m["state"]) for m in rest.get_model_repository_index()] == [
            ("gen", "READY"),
            ("gen_encoder", "READY"),
        ]
        rest.unload_model("gen")
        assert not rest.is_model_ready("gen") and rest.is_model_ready("gen_encoder")
        index = remote.get_model_repository_index(as_json=True)["models"]
        assert {m["name"]: m["state"] for m in index} == {"gen": "UNAVAILABLE", "gen_encoder": "READY"}
        remote.load_model("gen")
        assert rest.is_model_ready("gen")
        with pytest.raises(InferenceServerException, match="no model 'nope' in the repository"):
            rest.load_model("nope")
    finally:
        assert server.stop(), server.output


def test_sigterm_drains_in_flight_requests_then_exits(repository):
    server = Server(repository[0])
    answer = {}
    body = orjson.dumps({"instances": latent(1).tolist()})

    def slow_upload():  # the request is still arriving when SIGTERM comes
        yield body[:10]
        time.sleep(1.5)
        yield body[10:]

    def slow_request():
        answer["response"] = httpx.post(
            f"{server.url}/v1/models/gen:predict",
            content=slow_upload(),
            timeout=30,
            headers={"content-type": "application/json"},
        )

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(0.5)
    server.process.send_signal(signal.SIGTERM)
    thread.join(timeout=30)
    assert answer["response"].status_code == 200 and len(answer["response"].json()["predictions"]) == 1
    assert server.process.wait(timeout=30) == -signal.SIGTERM  # drained, then ended by the signal


def test_the_onnx_server_imports_neither_tensorflow_nor_keras(repository, tmp_path):
    """`tfvae serve` as the console script runs it; -X importtime lists every module imported."""
    script = os.path.join(os.path.dirname(sys.executable), "tfvae")
    port = free_port()
    log = open(tmp_path / "imports.log", "w+")  # a file: a full pipe would stall the server
    process = subprocess.Popen(
        [sys.executable, "-X", "importtime", script, "serve", repository[0], "--port", str(port)]
        + ["--grpc-port", str(free_port())],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        z = latent(3)
        got = httpx.post(f"http://127.0.0.1:{port}/v1/models/gen:predict", json={"instances": z.tolist()}).json()
        np.testing.assert_allclose(got["predictions"], repository[1].decode(z).mean().numpy(), atol=TOLERANCE)
        with open(f"/proc/{process.pid}/maps") as f:  # also where a silenced import leaves no log line
            assert "site-packages/tensorflow/" not in f.read()
    finally:
        process.terminate()
        process.wait(timeout=60)
    log.seek(0)
    imported = {line.split("|")[-1].strip() for line in log if line.startswith("import time:")}
    log.close()
    assert {"onnxruntime", "uvicorn", "grpc"} <= imported  # the log lists what the server runs on
    assert not {"tensorflow", "keras", "tensorflow_probability", "tf2onnx"} & imported


def test_serve_refuses_a_folder_without_models(tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "tfvae")
    result = subprocess.run([script, "serve", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"tfvae serve: error: {tmp_path} holds no servable model (no <name>/<version>/manifest.json that "
        "passes its checks); write one with `tfvae export`."
    ]


def test_serve_on_a_port_in_use_says_so_in_one_line(repository):
    import socket

    script = os.path.join(os.path.dirname(sys.executable), "tfvae")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [script, "serve", repository[0], "--port", str(port)], capture_output=True, text=True, timeout=120
        )
    assert result.returncode == 2 and "tfvae serve:" not in result.stdout  # never announced
    assert result.stderr.strip().splitlines()[-1] == (
        f"tfvae serve: error: cannot listen on 127.0.0.1:{port} (see the message above); choose another --port."
    )


def test_a_stalled_upload_neither_holds_other_requests_nor_stays_open(repository):
    import socket

    server = Server(repository[0], "--batch-delay-ms", "500", "--body-timeout-s", "2", "--header-timeout-s", "1")
    try:
        stalled = socket.create_connection(("127.0.0.1", server.port))
        stalled.sendall(
            b"POST /v1/models/gen:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"instan'
        )
        time.sleep(0.3)
        started = time.perf_counter()
        answer = httpx.post(f"{server.url}/v1/models/gen:predict", json={"instances": latent(1).tolist()})
        # Counted as in flight, the upload would make the batch wait its whole 500 ms.
        assert answer.status_code == 200 and time.perf_counter() - started < 0.25
        stalled.settimeout(10)
        reply = http.client.HTTPResponse(stalled)
        reply.begin()
        assert reply.status == 408 and "the body did not arrive within 2 s" in json.loads(reply.read())["error"]
        stalled.close()
        leaving = socket.create_connection(("127.0.0.1", server.port))  # leaves mid-body
        leaving.sendall(b"POST /v1/models/gen:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        leaving.close()
        time.sleep(0.5)
        assert 'tfvae_requests_total{endpoint="v1_predict",status="499"} 1.0' in httpx.get(f"{server.url}/metrics").text
        silent = socket.create_connection(("127.0.0.1", server.port))  # sends nothing
        trickling = socket.create_connection(("127.0.0.1", server.port))  # never ends its headers
        trickling.sendall(b"POST /v1/models/gen:predict HTTP/1.1\r\nHost: x\r\n")
        kept = httpx.Client()  # a client that makes requests is unaffected
        assert kept.get(f"{server.url}/v2/health/live").status_code == 200
        time.sleep(1.5)
        for closed in (silent, trickling):
            closed.settimeout(5)
            assert closed.recv(1) == b""  # closed by the server
            closed.close()
        assert kept.get(f"{server.url}/v2/health/live").status_code == 200
    finally:
        assert server.stop(), server.output


def test_tls_and_api_keys_on_rest_and_grpc_with_a_certificate_made_here(repository, tmp_path):
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    cert, key, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", str(tmp_path / "ca.pem")
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(ca_file)
    keys = tmp_path / "keys"
    keys.write_text("s3cret\n")  # every group but health
    server = Server(
        repository[0],
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        "--api-key-file",
        str(keys),
        grpc=True,
        tls_ca=ca_file,
    )
    try:
        z = latent(3)
        expected = onnx_outputs(repository[0], "gen", {"z": z})
        auth = {"authorization": "Bearer s3cret"}
        with httpx.Client(verify=ssl.create_default_context(cafile=ca_file)) as rest:
            assert rest.post(f"{server.url}/v2/models/gen/infer", content=v2_body(z)).status_code == 401
            answer = rest.post(f"{server.url}/v2/models/gen/infer", content=v2_body(z), headers=auth).json()
        mean = next(o for o in answer["outputs"] if o["name"] == "mean")
        np.testing.assert_allclose(np.reshape(mean["data"], mean["shape"]), expected["mean"], atol=TOLERANCE)
        with pytest.raises(httpx.RemoteProtocolError):  # plain text is not spoken on a TLS port
            httpx.get(f"http://127.0.0.1:{server.port}/v2/health/live", timeout=5)
        client = triton_grpc.InferenceServerClient(f"localhost:{server.grpc_port}", ssl=True, root_certificates=ca_file)
        assert client.is_server_live()  # health needs no key
        with open(ca_file, "rb") as f:
            credentials = grpc.ssl_channel_credentials(f.read())
        with grpc.secure_channel(f"localhost:{server.grpc_port}", credentials) as channel:
            check = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="gen"))
            assert check.status == health_pb2.HealthCheckResponse.SERVING  # the standard health service too
        z_input = triton_grpc.InferInput("z", list(z.shape), "FP32")
        z_input.set_data_from_numpy(z)
        with pytest.raises(InferenceServerException) as refused:
            client.infer("gen", [z_input])
        assert refused.value.status() == "StatusCode.UNAUTHENTICATED" and "Bearer" in refused.value.message()
        with pytest.raises(InferenceServerException, match="not one of this server's keys"):
            client.infer("gen", [z_input], headers={"authorization": "Bearer wrong"})
        result = client.infer("gen", [z_input], headers=auth)
        np.testing.assert_allclose(result.as_numpy("mean"), expected["mean"], atol=TOLERANCE)
    finally:
        assert server.stop(), server.output
