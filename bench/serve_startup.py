"""Start-up and idle memory of `tfvae serve` (ONNX backend), for each code tree given.

For `--code NAME=DIR` (e.g. a checkout of the commit before the server stopped
importing TensorFlow, and this one), on the same export of the bench's decoder:
- seconds from starting the process to `/v2/health/ready` answering 200 (best and
  median of `--rounds`);
- resident memory once ready and after 200 requests;
- whether the process imported TensorFlow (its libraries in /proc/PID/maps) and tfvae's
  Keras models (`python -X importtime`);
- what a full garbage collection costs in a process holding the same imports and
  models (median of 5 `gc.collect()` after loading the repository), which is what
  `gc.freeze()` in the server works around.
Each server runs `tfvae serve` as the console script does (argv[0] `tfvae`). Writes
bench/results/serve_startup.json.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import httpx
import numpy as np
from results_io import provenance, write_result
from stalled_uploads import code_tree, free_port, rss_mib

HERE = os.path.dirname(os.path.abspath(__file__))
# What the console script runs, with argv[0] named as it is.
LAUNCH = "import sys; sys.argv[0] = 'tfvae'; from tfvae.cli import main; sys.exit(main())"
GC_PROBE = """
import gc, statistics, sys, time
sys.argv = ['tfvae', 'serve']
from tfvae.serving.repository import load_repository
repository = load_repository({export!r})
times = []
for _ in range(5):
    started = time.perf_counter()
    gc.collect()
    times.append(time.perf_counter() - started)
print(len(gc.get_objects()), statistics.median(times))
"""


def start(root, export_dir, port, log=None):
    """The server from `root`; with a `log` file, `-X importtime` writes every import there
    (a file, not a pipe: TensorFlow's thousands of lines would fill a pipe and stall it)."""
    flags = ["-X", "importtime"] if log else []
    return subprocess.Popen(
        [sys.executable, *flags, "-c", LAUNCH, "serve", export_dir, "--port", str(port)],
        env={**os.environ, "PYTHONPATH": root},
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=log or subprocess.DEVNULL,
    )


def ready_after(process, url):
    started = time.perf_counter()
    while time.perf_counter() - started < 120:
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return time.perf_counter() - started
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise RuntimeError("the server exited")
        time.sleep(0.02)
    raise RuntimeError("not ready in 120 s")


def measure(root, export_dir, rounds):
    seconds = []
    for index in range(rounds):
        port = free_port()
        process = start(root, export_dir, port)
        url = f"http://127.0.0.1:{port}"
        try:
            seconds.append(ready_after(process, url))
            if index == 0:
                ready_rss = rss_mib(process.pid)
                z = np.zeros((1, 32), np.float32).tolist()
                for _ in range(200):
                    httpx.post(f"{url}/v1/models/bench:predict", json={"instances": z}).raise_for_status()
                served_rss = rss_mib(process.pid)
        finally:
            process.terminate()
            process.wait(60)
    port = free_port()
    with tempfile.TemporaryFile("w+") as log:
        process = start(root, export_dir, port, log)
        try:
            ready_after(process, f"http://127.0.0.1:{port}")
            with open(f"/proc/{process.pid}/maps") as f:
                maps = f.read()
        finally:
            process.terminate()
            process.wait(60)
        log.seek(0)
        imported = {line.split("|")[-1].strip() for line in log if line.startswith("import time:")}
    probe = subprocess.run(
        [sys.executable, "-c", GC_PROBE.format(export=export_dir)],
        env={**os.environ, "PYTHONPATH": root},
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    objects, collect = probe.stdout.split()
    return {
        "ready_seconds_best": round(min(seconds), 2),
        "ready_seconds_median": round(statistics.median(seconds), 2),
        "rss_mib_ready": round(ready_rss, 1),
        "rss_mib_after_200_requests": round(served_rss, 1),
        # TensorFlow's own libraries mapped into the process: its import runs with stderr
        # silenced, so -X importtime cannot list it.
        "imports_tensorflow": "site-packages/tensorflow/" in maps,
        # The Keras models: imported after TensorFlow, outside its silenced import.
        "imports_tfvae_models": "tfvae.models" in imported,
        "gc_objects": int(objects),
        "full_gc_ms": round(1000 * float(collect), 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", action="append", required=True, metavar="NAME=DIR")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "serve_startup.json"))
    args = parser.parse_args()
    import keras

    import tfvae

    model = tfvae.VAE((784,), 32, hidden_units=(512, 256), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    export_dir = tempfile.mkdtemp(prefix="tfvae-startup-")
    tfvae.export(model, export_dir, "bench", parts=("decoder",))
    report = {"export": "the bench's decoder (z of 32 -> 256 -> 512 -> 784), ONNX backend", "servers": {}}
    for entry in args.code:
        name, directory = entry.split("=", 1)
        report["servers"][name] = measure(code_tree(os.path.abspath(directory)), export_dir, args.rounds)
        print(name, report["servers"][name], flush=True)
    report["command"] = "python bench/serve_startup.py " + " ".join(f"--code {c}" for c in args.code)
    report.update(provenance())
    write_result(args.out, report)


if __name__ == "__main__":
    main()
