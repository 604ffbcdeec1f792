"""`make bench-train`: tfvae's VAE against every baseline trainer, side by side.

Runs bench/tfvae_train.py and the trainers of ../shared/baselines/ (the Keras example,
tfp.layers, PyTorch plain and under torch.compile, Flax under jax.jit and with each
epoch one lax.scan, pythae) on the same data, epochs and batch, one process at a time,
interleaved over `--rounds` rounds so that the machine's drift hits every trainer alike;
each trainer's figure is its best round (the medians are reported too). tfvae runs with
seed 0, 1, 2, ... in successive rounds, so its test -ELBO comes with a seed-to-seed
spread; the baselines fix their seed. pythae, slow, trains `--pythae-epochs` epochs.
A trainer whose venv is missing is left out and named in the JSON. Writes
bench/results/train.json.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

from results_io import cpu, provenance, write_result

HERE = os.path.dirname(os.path.abspath(__file__))
BASELINES = os.path.join(HERE, "..", "..", "shared", "baselines")
DATA = os.path.join(HERE, "..", "..", "shared", "data", "binarized_mnist.npz")


# Peers a user would pick for speed: compiled whole steps or epochs.
COMPILED = ("torch_compile", "flax_scan")


def trainers(torch_python, jax_python, pythae_python):
    """`{name: command}` of every trainer."""
    return {
        "tfvae": [sys.executable, os.path.join(HERE, "tfvae_train.py")],
        "keras_example": [sys.executable, os.path.join(BASELINES, "keras_example_vae.py")],
        "tfp_layers": [sys.executable, os.path.join(BASELINES, "tfp_layers_vae.py")],
        "torch": [torch_python, os.path.join(BASELINES, "torch_vae.py")],
        "torch_compile": [torch_python, os.path.join(BASELINES, "torch_vae.py"), "--compile"],
        "flax_jit": [jax_python, os.path.join(BASELINES, "flax_vae.py")],
        "flax_scan": [jax_python, os.path.join(BASELINES, "flax_vae.py"), "--scan"],
        "pythae": [pythae_python, os.path.join(BASELINES, "pythae_vae.py")],
    }


def run(command, data, epochs, extra=()):
    result = subprocess.run(
        [*command, "--data", data, "--epochs", str(epochs), *extra], capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def versions(torch_python, jax_python, pythae_python):
    import keras
    import tensorflow as tf
    import tensorflow_probability as tfp

    import tfvae

    def of(python, module):
        if not os.path.exists(python):
            return None
        code = f"import importlib.metadata as m; print(m.version({module!r}))"
        return subprocess.run([python, "-c", code], capture_output=True, text=True).stdout.strip()

    return {
        "tfvae": tfvae.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tensorflow_probability": tfp.__version__,
        "torch": of(torch_python, "torch"),
        "jax": of(jax_python, "jax"),
        "flax": of(jax_python, "flax"),
        "pythae": of(pythae_python, "pythae"),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pythae-epochs", type=int, default=2)
    parser.add_argument("--torch-python", default=os.path.join(HERE, ".venv-torch", "bin", "python"))
    parser.add_argument("--jax-python", default=os.path.join(HERE, ".venv-jax", "bin", "python"))
    parser.add_argument("--pythae-python", default=os.path.join(HERE, ".venv-pythae", "bin", "python"))
    parser.add_argument("--out", default=os.path.join(HERE, "results", "train.json"))
    args = parser.parse_args()
    pythons = (args.torch_python, args.jax_python, args.pythae_python)
    every = trainers(*pythons)
    commands = {name: command for name, command in every.items() if os.path.exists(command[0])}  # venvs present
    runs = {name: [] for name in commands}
    for round_index in range(args.rounds):
        for name, command in commands.items():
            extra = ("--seed", str(round_index)) if name == "tfvae" else ()
            epochs = args.pythae_epochs if name == "pythae" else args.epochs
            runs[name].append(run(command, args.data, epochs, extra))
            print(f"round {round_index + 1} {name:14s} {runs[name][-1]}", flush=True)
    best = {name: max(r["train_images_per_s"] for r in results) for name, results in runs.items()}
    median = {name: statistics.median(r["train_images_per_s"] for r in results) for name, results in runs.items()}
    baselines = {name: value for name, value in best.items() if name != "tfvae"}
    fastest = max(baselines, key=baselines.get)
    tfvae_elbos = [r["test_neg_elbo"] for r in runs["tfvae"]]
    ratios = {name: round(best["tfvae"] / value, 3) for name, value in baselines.items()}
    report = {
        "benchmark": "one-sample ELBO VAE 784-512-256-32, Adam(1e-3), batch 128, binarised MNIST train (50,000)",
        "epochs": args.epochs,
        "pythae_epochs": args.pythae_epochs,
        "rounds": args.rounds,
        "left_out": sorted(set(every) - set(commands)),
        "tfvae_images_per_s": best["tfvae"],
        "baselines_images_per_s": baselines,
        "fastest_baseline": fastest,
        "ratio_to_fastest_baseline": round(best["tfvae"] / baselines[fastest], 3),
        "ratios": ratios,
        "targets": {
            "idiomatic_peers_at_least": 1.5,
            "compiled_peers_at_least": 1.25,
            "met": {name: ratio >= (1.25 if name in COMPILED else 1.5) for name, ratio in ratios.items()},
        },
        "median_images_per_s": median,
        "median_ratio_to_fastest_baseline": round(
            median["tfvae"] / max(v for k, v in median.items() if k != "tfvae"), 3
        ),
        "test_neg_elbo": {
            "tfvae": round(statistics.mean(tfvae_elbos), 3),
            **{name: min(r["test_neg_elbo"] for r in results) for name, results in runs.items() if name != "tfvae"},
        },
        "tfvae_test_neg_elbo_by_seed": tfvae_elbos,
        "tfvae_test_neg_elbo_sd": round(statistics.stdev(tfvae_elbos), 3) if len(tfvae_elbos) > 1 else None,
        "runs": runs,
        "note": "images/s over the epochs after the first (as the baselines measure); best round per trainer; "
        "test_neg_elbo with one posterior sample after the same epochs; tfvae's is the mean over "
        "its seeds (one per round). tfp_layers' figure includes its KL activity regulariser, as its "
        "script says.",
        "versions": versions(*pythons),
        "cpu": cpu(),
        **provenance(),
        "command": "make bench-train",
    }
    write_result(args.out, report)
    print(
        json.dumps(
            {
                k: report[k]
                for k in ("tfvae_images_per_s", "baselines_images_per_s", "ratio_to_fastest_baseline", "test_neg_elbo")
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
