"""`make bench-serve`: batch-1 decode over KServe v2, REST and gRPC: tfvae serve against
kserve's model server and Triton (through nvidia-pytriton), beside the floor of tfvae's stack.

Every server loads the same exported ONNX decoder (the literature's MNIST model shape:
z of 32 -> 256 -> 512 -> 784; random weights at a fixed seed, since latency does not
depend on their values):
- tfvae: `tfvae serve --grpc-port` (REST and gRPC in one process);
- floor: the same server with each batch's model run replaced by a fixed answer
  (bench/floor_server.py): parsing, checks, batching and answers only;
- kserve 0.21's ModelServer with ONNX Runtime in `predict`, REST and its gRPC
  (bench/kserve_onnx_server.py, bench/.venv-kserve);
- Triton 2.51 on CPU through nvidia-pytriton, ONNX Runtime in the bound Python function,
  its dynamic batcher at tfvae's settings (bench/pytriton_onnx_server.py, bench/.venv-pytriton).
The same v2 request goes at concurrency 1, 8, 32 and 128 after a warm-up: REST from wrk
(C, one thread, N connections) and from N Python threads with one keep-alive
`http.client` connection each; gRPC (ModelInfer, the same tensor in
`raw_input_contents`) from h2load (C, nghttp2: N connections, one stream each; latencies
from its per-request log). Each server's answer is checked against ONNX Runtime first, over
both protocols. The servers run one after the other on this machine. Results:
bench/results/serving.json; targets (issue 16): at concurrency 32, tfvae's REST and gRPC
each >= 5x the best anchor's throughput with a lower p99, and >= 60% of the floor's.
"""

import argparse
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

import httpx
import keras
import numpy as np
from results_io import cpu, provenance, write_result

import tfvae

HERE = os.path.dirname(os.path.abspath(__file__))
CONCURRENCY = (1, 8, 32, 128)
LUA = """wrk.method = "POST"
wrk.body = [[%s]]
wrk.headers["Content-Type"] = "application/json"
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def export_model(repository):
    keras.utils.set_random_seed(0)
    model = tfvae.VAE((784,), 32, hidden_units=(512, 256), seed=0)
    tfvae.export(model, repository, "mnist", parts=("decoder",))
    return os.path.join(repository, "mnist", "1")


def wait_ready(url, process, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("server exited early; see its log")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} not ready after {timeout} s")


def run_wrk(url, script, connections, seconds):
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script, url],
        capture_output=True,
        text=True,
        check=True,
    )
    text = result.stdout

    def latency_ms(label):
        value, unit = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    socket_errors = re.search(r"Socket errors: (.*)", text)
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
        "p50_ms": latency_ms("50"),
        "p99_ms": latency_ms("99"),
        "requests": int(re.search(r"(\d+) requests in", text).group(1)),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "none",
    }


def run_threads(url, body, connections, seconds):
    """`connections` threads, one keep-alive connection each, for `seconds`."""
    parts = urllib.parse.urlsplit(url)
    latencies, failures, lock = [], [0], threading.Lock()
    stop = time.monotonic() + seconds

    def worker():
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        mine, failed = [], 0
        while time.monotonic() < stop:
            started = time.perf_counter()
            connection.request("POST", parts.path, body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            mine.append(time.perf_counter() - started)
            failed += response.status != 200
        with lock:
            latencies.extend(mine)
            failures[0] += failed

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    milliseconds = np.asarray(latencies) * 1000
    return {
        "requests_per_s": round(len(milliseconds) / seconds, 1),
        "p50_ms": round(float(np.percentile(milliseconds, 50)), 3),
        "p99_ms": round(float(np.percentile(milliseconds, 99)), 3),
        "requests": len(milliseconds),
        "non_2xx": failures[0],
    }


def grpc_body(z):
    """The ModelInfer request as gRPC frames it on the wire: 0, a 4-byte length, the message."""
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name="mnist")
    tensor = request.inputs.add(name="z", datatype="FP32", shape=list(z.shape))
    request.outputs.add(name="mean")
    request.raw_input_contents.append(z.tobytes())
    message = request.SerializeToString()
    return b"\x00" + len(message).to_bytes(4, "big") + message, tensor


def run_h2load(port, body_path, connections, seconds, work):
    """h2load against ModelInfer: `connections` HTTP/2 connections, one stream each."""
    log = os.path.join(work, "h2load.log")
    if os.path.exists(log):  # h2load appends
        os.remove(log)
    result = subprocess.run(
        ["h2load", "-c", str(connections), "-m", "1", "-D", str(seconds), "--warm-up-time=1", "-d", body_path]
        + ["-H", "content-type: application/grpc", "-H", "te: trailers", f"--log-file={log}"]
        + [f"http://127.0.0.1:{port}/inference.GRPCInferenceService/ModelInfer"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = np.loadtxt(log, dtype=np.int64, ndmin=2)  # start µs, HTTP status, duration µs
    milliseconds = rows[:, 2] / 1000
    return {
        "requests_per_s": round(len(rows) / seconds, 1),
        "p50_ms": round(float(np.percentile(milliseconds, 50)), 3),
        "p99_ms": round(float(np.percentile(milliseconds, 99)), 3),
        "requests": len(rows),
        "non_2xx": int((rows[:, 1] != 200).sum()),
        "h2load_summary": re.search(r"requests: .*", result.stdout).group(0),
    }


def grpc_answer(port, z):
    import tritonclient.grpc as triton_grpc

    client = triton_grpc.InferenceServerClient(f"127.0.0.1:{port}")
    tensor = triton_grpc.InferInput("z", list(z.shape), "FP32")
    tensor.set_data_from_numpy(z)
    response = client.infer("mnist", [tensor], outputs=[triton_grpc.InferRequestedOutput("mean")]).get_response()
    if response.raw_output_contents:
        return np.frombuffer(response.raw_output_contents[0], np.float32)
    return np.asarray(response.outputs[0].contents.fp32_contents, np.float32)  # kserve answers typed contents


def measure(name, command, rest_port, grpc_port, paths, seconds, z, expected, log_path):
    log = open(log_path, "w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url_base = f"http://127.0.0.1:{rest_port}"
    try:
        wait_ready(f"{url_base}/v2/models/mnist/ready", process)
        infer = f"{url_base}/v2/models/mnist/infer"
        with open(paths["json"], "rb") as f:
            body = f.read()
        answer = httpx.post(infer, content=body, headers={"Content-Type": "application/json"}).json()
        got = np.asarray(answer["outputs"][0]["data"], np.float32)
        result = {
            "max_abs_difference_vs_onnx": float(np.max(np.abs(got - expected))),
            "grpc_max_abs_difference_vs_onnx": float(np.max(np.abs(grpc_answer(grpc_port, z) - expected))),
        }
        threaded, with_wrk, with_h2load = {}, {}, {}
        for connections in CONCURRENCY:
            key = str(connections)
            run_threads(infer, body, connections, 2)  # warm-up
            threaded[key] = run_threads(infer, body, connections, seconds)
            print(f"{name:9s} c={connections:3d} REST threads {threaded[key]}", flush=True)
            with_wrk[key] = run_wrk(infer, paths["lua"], connections, seconds)
            print(f"{name:9s} c={connections:3d} REST wrk     {with_wrk[key]}", flush=True)
            with_h2load[key] = run_h2load(grpc_port, paths["grpc"], connections, seconds, os.path.dirname(log_path))
            print(f"{name:9s} c={connections:3d} gRPC h2load  {with_h2load[key]}", flush=True)
        return {**result, "concurrency": threaded, "wrk": with_wrk, "grpc_h2load": with_h2load}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def version_in(python, package):
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    return subprocess.run([python, "-c", code], capture_output=True, text=True).stdout.strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kserve-python", default=os.path.join(HERE, ".venv-kserve", "bin", "python"))
    parser.add_argument("--pytriton-python", default=os.path.join(HERE, ".venv-pytriton", "bin", "python"))
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "serving.json"))
    args = parser.parse_args()
    import onnxruntime

    with tempfile.TemporaryDirectory() as work:
        repository = os.path.join(work, "repo")
        model_dir = export_model(repository)
        z = np.random.default_rng(0).standard_normal((1, 32)).astype(np.float32)
        expected = onnxruntime.InferenceSession(os.path.join(model_dir, "model.onnx")).run(["mean"], {"z": z})[0][0]
        body = json.dumps(
            {
                "inputs": [{"name": "z", "shape": [1, 32], "datatype": "FP32", "data": z[0].tolist()}],
                "outputs": [{"name": "mean"}],
            }
        )
        paths = {name: os.path.join(work, f"request.{name}") for name in ("lua", "json", "grpc")}
        with open(paths["lua"], "w") as f:
            f.write(LUA % body)
        with open(paths["json"], "w") as f:
            f.write(body)
        with open(paths["grpc"], "wb") as f:
            f.write(grpc_body(z)[0])
        tfvae_cli = os.path.join(os.path.dirname(sys.executable), "tfvae")
        anchor = ["--model-dir", model_dir, "--name", "mnist"]
        servers = {  # each command then takes --port (REST) and --grpc-port
            "tfvae": [tfvae_cli, "serve", repository],
            "floor": [sys.executable, os.path.join(HERE, "floor_server.py"), repository],
            "kserve": [args.kserve_python, os.path.join(HERE, "kserve_onnx_server.py"), *anchor],
            "pytriton": [args.pytriton_python, os.path.join(HERE, "pytriton_onnx_server.py"), *anchor],
        }
        results = {}
        for name, command in servers.items():
            rest, grpc = free_port(), free_port()
            command = [*command, "--port", str(rest), "--grpc-port", str(grpc)]
            log_path = os.path.join(work, f"{name}.log")
            results[name] = measure(name, command, rest, grpc, paths, args.seconds, z, expected, log_path)

    def best_anchor(client, c):
        return max(("kserve", "pytriton"), key=lambda n: results[n][client][c]["requests_per_s"])

    targets = {}
    for protocol, client in (("rest", "wrk"), ("grpc", "grpc_h2load")):
        tfvae_point = results["tfvae"][client]["32"]
        anchor = best_anchor(client, "32")
        anchor_point = results[anchor][client]["32"]
        throughput_ratio = tfvae_point["requests_per_s"] / anchor_point["requests_per_s"]
        floor_share = tfvae_point["requests_per_s"] / results["floor"][client]["32"]["requests_per_s"]
        targets[protocol] = {
            "best_anchor": anchor,
            "throughput_over_best_anchor": round(throughput_ratio, 2),
            "p99_ms_tfvae": tfvae_point["p99_ms"],
            "p99_ms_best_anchor": anchor_point["p99_ms"],
            "share_of_floor": round(floor_share, 3),
            "met": throughput_ratio >= 5 and tfvae_point["p99_ms"] < anchor_point["p99_ms"] and floor_share >= 0.6,
        }
    report = {
        "benchmark": "batch-1 decode, KServe v2 (REST JSON and gRPC), same ONNX model, one server at a time",
        "clients": {
            "wrk": "REST: wrk -t1 -cN --latency (C, one thread), the same body",
            "concurrency": "REST: N threads, one keep-alive http.client connection each",
            "grpc_h2load": "gRPC: h2load -cN -m1 (C, HTTP/2), ModelInfer, raw_input_contents; p50/p99 from --log-file",
        },
        "model": "decoder z[32] -> 256 -> 512 -> 784 (Bernoulli mean), ONNX",
        "seconds_per_point": args.seconds,
        "results": results,
        "targets_at_concurrency_32": targets,
        "tfvae_settings": "defaults: --max-batch-size 256 --batch-delay-ms 1, ONNX Runtime on all cores, uvicorn "
        "with uvloop + httptools, grpc.aio on the same event loop",
        "kserve_settings": "ModelServer defaults (workers 1) with enable_latency_logging=False, gRPC on, "
        "ONNX Runtime defaults",
        "pytriton_settings": "Triton's HTTP and gRPC front ends, max_batch_size 256, dynamic batcher 1 ms, "
        "ONNX Runtime defaults in the bound function",
        "versions": {
            "tfvae": tfvae.__version__,
            "kserve": version_in(args.kserve_python, "kserve"),
            "nvidia-pytriton": version_in(args.pytriton_python, "nvidia-pytriton"),
            "onnxruntime": onnxruntime.__version__,
            "wrk": subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("\n")[0],
            "h2load": subprocess.run(["h2load", "--version"], capture_output=True, text=True).stdout.strip(),
        },
        "cpu": cpu(),
        **provenance(),
        "command": "make bench-serve",
    }
    write_result(args.out, report)
    print(json.dumps(targets, indent=1))


if __name__ == "__main__":
    main()
