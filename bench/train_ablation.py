"""`make bench-train-ablation`: what each of tfvae's speed defaults buys, on bench-train's model.

Runs bench/tfvae_train.py with the defaults undone one at a time, interleaved over
`--rounds` rounds (best round each), and writes bench/results/train_ablation.json:

  keras_defaults       no XLA, 1 step per execution, Keras' own fit path for arrays
  xla                  + XLA (jit_compile)
  xla_32_steps         + 32 steps per execution
  tfvae_defaults       + tfvae's one-thread input path (what `fit` does by default)
"""

import argparse
import json
import os
import subprocess
import sys

from results_io import provenance, write_result

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data", "binarized_mnist.npz")
CONFIGS = {
    "keras_defaults": ["--jit-compile", "off", "--steps-per-execution", "1", "--input", "keras"],
    "xla": ["--jit-compile", "on", "--steps-per-execution", "1", "--input", "keras"],
    "xla_32_steps": ["--jit-compile", "on", "--steps-per-execution", "32", "--input", "keras"],
    "tfvae_defaults": [],
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "train_ablation.json"))
    args = parser.parse_args()
    runs = {name: [] for name in CONFIGS}
    for round_index in range(args.rounds):
        for name, flags in CONFIGS.items():
            command = [
                sys.executable,
                os.path.join(HERE, "tfvae_train.py"),
                "--data",
                args.data,
                "--epochs",
                str(args.epochs),
                *flags,
            ]
            result = subprocess.run(command, capture_output=True, text=True, check=True)
            runs[name].append(json.loads(result.stdout.strip().splitlines()[-1]))
            print(f"round {round_index + 1} {name:15s} {runs[name][-1]}", flush=True)
    best = {name: max(r["train_images_per_s"] for r in results) for name, results in runs.items()}
    report = {
        "benchmark": "bench-train's model and protocol (tfvae only), speed defaults undone one at a time",
        "epochs": args.epochs,
        "rounds": args.rounds,
        "images_per_s": best,
        "speedup_over_keras_defaults": {name: round(v / best["keras_defaults"], 3) for name, v in best.items()},
        "runs": runs,
        **provenance(),
        "command": "make bench-train-ablation",
    }
    write_result(args.out, report)
    print(json.dumps({k: report[k] for k in ("images_per_s", "speedup_over_keras_defaults")}, indent=1))


if __name__ == "__main__":
    main()
