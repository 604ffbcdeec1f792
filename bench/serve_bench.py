"""`make bench-serve`: batch-1 decode over KServe v2, tfvae serve vs kserve's model server.

Both servers load the same exported ONNX decoder (the literature's MNIST model shape:
z of 32 -> 256 -> 512 -> 784; random weights at a fixed seed, since latency does not
depend on their values). The same v2 JSON request goes at concurrency 1, 8 and 32, after
a warm-up, from two clients: N threads each holding one keep-alive `http.client`
connection (the primary figures), and wrk (C, one thread).
The servers run one after the other on this machine; each one's output goes to a log
file. Results: bench/results/serving.json.
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
from results_io import provenance, write_result

import tfvae

HERE = os.path.dirname(os.path.abspath(__file__))
CONCURRENCY = (1, 8, 32)
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


def measure(name, command, url_base, script, seconds, expected, log_path):
    log = open(log_path, "w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_ready(f"{url_base}/v2/health/ready", process)
        infer = f"{url_base}/v2/models/mnist/infer"
        with open(script.replace(".lua", ".json"), "rb") as f:
            body = f.read()
        answer = httpx.post(infer, content=body, headers={"Content-Type": "application/json"}).json()
        got = np.asarray(answer["outputs"][0]["data"], np.float32)
        difference = float(np.max(np.abs(got - expected)))
        threaded, with_wrk = {}, {}
        for connections in CONCURRENCY:
            run_threads(infer, body, connections, 2)  # warm-up
            threaded[str(connections)] = run_threads(infer, body, connections, seconds)
            print(f"{name:12s} c={connections:2d} threads {threaded[str(connections)]}", flush=True)
            with_wrk[str(connections)] = run_wrk(infer, script, connections, seconds)
            print(f"{name:12s} c={connections:2d} wrk     {with_wrk[str(connections)]}", flush=True)
        return {"max_abs_difference_vs_onnx": difference, "concurrency": threaded, "wrk": with_wrk}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
        log.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kserve-python", default=os.path.join(HERE, ".venv-kserve", "bin", "python"))
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "serving.json"))
    args = parser.parse_args()
    import onnxruntime

    with tempfile.TemporaryDirectory() as work:
        model_dir = export_model(os.path.join(work, "repo"))
        z = np.random.default_rng(0).standard_normal((1, 32)).astype(np.float32)
        expected = onnxruntime.InferenceSession(os.path.join(model_dir, "model.onnx")).run(["mean"], {"z": z})[0][0]
        body = json.dumps(
            {
                "inputs": [{"name": "z", "shape": [1, 32], "datatype": "FP32", "data": z[0].tolist()}],
                "outputs": [{"name": "mean"}],
            }
        )
        script = os.path.join(work, "post.lua")
        with open(script, "w") as f:
            f.write(LUA % body)
        with open(script.replace(".lua", ".json"), "w") as f:
            f.write(body)
        tfvae_port, kserve_port = free_port(), free_port()
        tfvae_cli = os.path.join(os.path.dirname(sys.executable), "tfvae")
        results = {
            "tfvae": measure(
                "tfvae serve",
                [tfvae_cli, "serve", os.path.join(work, "repo"), "--port", str(tfvae_port)],
                f"http://127.0.0.1:{tfvae_port}",
                script,
                args.seconds,
                expected,
                os.path.join(work, "tfvae.log"),
            ),
            "kserve": measure(
                "kserve",
                [
                    args.kserve_python,
                    os.path.join(HERE, "kserve_onnx_server.py"),
                    "--model-dir",
                    model_dir,
                    "--name",
                    "mnist",
                    "--port",
                    str(kserve_port),
                ],
                f"http://127.0.0.1:{kserve_port}",
                script,
                args.seconds,
                expected,
                os.path.join(work, "kserve.log"),
            ),
        }
    kserve_version = subprocess.run(
        [args.kserve_python, "-c", "import importlib.metadata as m; print(m.version('kserve'))"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    ratios = {
        c: {
            "throughput_tfvae_over_kserve": results["tfvae"]["concurrency"][c]["requests_per_s"]
            / results["kserve"]["concurrency"][c]["requests_per_s"],
            "p99_tfvae_over_kserve": results["tfvae"]["concurrency"][c]["p99_ms"]
            / results["kserve"]["concurrency"][c]["p99_ms"],
        }
        for c in results["tfvae"]["concurrency"]
    }
    report = {
        "benchmark": "batch-1 decode, KServe v2 JSON, same ONNX model, one server at a time",
        "clients": {
            "concurrency": "primary: N threads, one keep-alive http.client connection each (same for both servers)",
            "wrk": "wrk -t1 -cN --latency (C, one thread), the same body",
        },
        "model": "decoder z[32] -> 256 -> 512 -> 784 (Bernoulli mean), ONNX opset 17",
        "seconds_per_point": args.seconds,
        "results": results,
        "ratios": ratios,
        "tfvae_settings": "defaults: --max-batch-size 256 --batch-delay-ms 1, ONNX Runtime on all cores, uvicorn "
        "with uvloop + httptools",
        "kserve_settings": "ModelServer defaults (workers 1, access log on) with enable_latency_logging=False, "
        "ONNX Runtime defaults",
        "versions": {
            "tfvae": tfvae.__version__,
            "kserve": kserve_version,
            "onnxruntime": onnxruntime.__version__,
            "wrk": subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("\n")[0],
        },
        **provenance(),
        "command": "make bench-serve",
    }
    write_result(args.out, report)
    print(json.dumps(ratios, indent=1))


if __name__ == "__main__":
    main()
