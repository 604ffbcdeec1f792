"""bench-train's GPU row: the trainers of ../shared/baselines on one GPU, and tfvae where it installs.

Runs on a machine with an NVIDIA GPU, in the Python that has the peers' frameworks:
PyTorch plain and under torch.compile (on CUDA: the baseline script is run unchanged after
its tensors and module are placed on the GPU by default), and Flax under jax.jit and with
each epoch one lax.scan (JAX takes the GPU by itself). tfvae runs too when TensorFlow is
importable there and sees the GPU (tfvae installed with `pip install ".[gpu]"`); where it
is not, the JSON says why and the row holds the peers alone. Interleaved rounds, best and
median per trainer, as in bench/train_bench.py. The script imports nothing of tfvae, so
that the peers' row runs where tfvae does not install; tfvae's row (bench/tfvae_train.py)
needs tfvae installed in the same Python.
"""

import argparse
import importlib.metadata
import importlib.util
import json
import os
import statistics
import subprocess
import sys

from results_io import cpu, provenance

HERE = os.path.dirname(os.path.abspath(__file__))

# The baseline places its data with torch.from_numpy and builds its module with no
# device; making CUDA the default device and moving from_numpy's result there puts the
# whole script on the GPU without editing it. Its epoch timer reads time.perf_counter,
# which here first waits for the GPU, so an epoch counts the kernels it queued.
ON_CUDA = """
import runpy, sys, time, torch
torch.set_default_device("cuda")
_from_numpy = torch.from_numpy
torch.from_numpy = lambda array: _from_numpy(array).cuda()
_perf_counter = time.perf_counter
time.perf_counter = lambda: (torch.cuda.synchronize(), _perf_counter())[1]
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def trainers(baselines, python):
    """`{name: command}` of the peers that run on a GPU."""
    return {
        "torch": [python, "-c", ON_CUDA, os.path.join(baselines, "torch_vae.py")],
        "torch_compile": [python, "-c", ON_CUDA, os.path.join(baselines, "torch_vae.py"), "--compile"],
        "flax_jit": [python, os.path.join(baselines, "flax_vae.py")],
        "flax_scan": [python, os.path.join(baselines, "flax_vae.py"), "--scan"],
    }


def tensorflow_gpu():
    """`None` when TensorFlow runs on a GPU in this Python, else the reason it does not."""
    if importlib.util.find_spec("tensorflow") is None:
        return f"tensorflow is not installed in {sys.executable}"
    # In a child process: TensorFlow claims the GPU's memory, which the trainers need.
    code = "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if found.returncode or found.stdout.strip().splitlines()[-1:] == ["0"]:
        return "tensorflow sees no GPU: " + (found.stderr.strip().splitlines() or ["(no message)"])[-1]
    return None


def gpu():
    query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    try:
        return subprocess.run(query, capture_output=True, text=True).stdout.strip()
    except FileNotFoundError:
        return None  # no NVIDIA driver: the JSON says so, the peers ran on whatever JAX found


def version(module):
    try:
        return importlib.metadata.version(module)
    except importlib.metadata.PackageNotFoundError:
        return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baselines", required=True, help="the folder of the baseline trainers")
    parser.add_argument("--data", required=True)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    commands = trainers(args.baselines, sys.executable)
    tensorflow_missing = tensorflow_gpu()
    if tensorflow_missing is None:
        commands = {"tfvae": [sys.executable, os.path.join(HERE, "tfvae_train.py")], **commands}
    runs = {name: [] for name in commands}
    for round_index in range(args.rounds):
        for name, command in commands.items():
            extra = ["--seed", str(round_index)] if name == "tfvae" else []
            done = subprocess.run(
                [*command, "--data", args.data, "--epochs", str(args.epochs), *extra], capture_output=True, text=True
            )
            if done.returncode:
                runs[name].append({"error": done.stderr.strip().splitlines()[-1:]})
            else:
                runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"round {round_index + 1} {name:14s} {runs[name][-1]}", flush=True)
    speeds = {name: [r["train_images_per_s"] for r in results if "error" not in r] for name, results in runs.items()}
    report = {
        "benchmark": "one-sample ELBO VAE 784-512-256-32, Adam(1e-3), batch 128, binarised MNIST train (50,000)",
        "gpu": gpu(),
        "epochs": args.epochs,
        "rounds": args.rounds,
        "tfvae_left_out_because": tensorflow_missing,
        "best_images_per_s": {name: max(values) for name, values in speeds.items() if values},
        "median_images_per_s": {name: statistics.median(values) for name, values in speeds.items() if values},
        "test_neg_elbo": {
            name: min(r["test_neg_elbo"] for r in results if "error" not in r)
            for name, results in runs.items()
            if speeds[name]
        },
        "runs": runs,
        "versions": {m: version(m) for m in ("torch", "jax", "jaxlib", "flax", "optax", "tensorflow")},
        "cpu": cpu(),
        **provenance(),
        "command": "python bench/gpu_row.py " + " ".join(sys.argv[1:]),
    }
    # tfvae.files' atomic write needs TensorFlow's package to import; the same rename here.
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".partial", "w") as f:
        json.dump(report, f, indent=1)
    os.replace(args.out + ".partial", args.out)
    print(json.dumps({k: report[k] for k in ("gpu", "best_images_per_s", "test_neg_elbo", "tfvae_left_out_because")}))


if __name__ == "__main__":
    main()
