"""Whether early stopping on a K-sample validation bound kept the right epoch.

A run validates on a cheap bound (the ELBO or IWAE-5) while its figure is the K = 5000
importance-sampled NLL. An encoder that overfits loosens the cheap bound while the
likelihood may still improve, and then early stopping keeps an epoch too soon. This
scores a finished run's kept model (model.keras) and its last checkpoint (the moving
average of the weights where the run kept one, as validation saw them) on the same
validation images with the same importance samples, and gives their paired difference.
Writes bench/results/stopping_check_NAME.json.
"""

import argparse
import json
import os
import time

import numpy as np
from results_io import provenance, write_result

from tfvae import training
from tfvae.callbacks import averaged_weights
from tfvae.checkpointing import latest_checkpoint

HERE = os.path.dirname(os.path.abspath(__file__))


def scored(model, x, num_samples):
    """log p(x) per image (K = `num_samples`) and the IWAE-5 bound's, both with seed 0."""
    return model.log_likelihood(x, num_samples=num_samples, seed=0), model.log_likelihood(x, num_samples=5, seed=0)


def summary(log_likelihood, bound, seconds):
    n = len(log_likelihood)
    return {
        "nll": float(-np.mean(log_likelihood)),
        "nll_stderr": float(np.std(log_likelihood) / np.sqrt(n)),
        "iwae5": float(-np.mean(bound)),
        "seconds": round(seconds, 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a finished run (model.keras and checkpoints/)")
    parser.add_argument("--name", required=True, help="the result's name: bench/results/stopping_check_NAME.json")
    parser.add_argument("--examples", type=int, default=1000, help="the first N validation images")
    parser.add_argument("--num-samples", type=int, default=1000, help="K of the importance-sampled NLL")
    args = parser.parse_args()
    config = training.read_config(args.run_dir)
    x = training.load_splits(config).valid[: args.examples]
    model = training.load_run(args.run_dir)
    started = time.perf_counter()
    kept = scored(model, x, args.num_samples)
    kept_seconds = time.perf_counter() - started
    checkpoint = latest_checkpoint(os.path.join(args.run_dir, training.CHECKPOINT_DIR))
    checkpoint.restore(model)
    started = time.perf_counter()
    with averaged_weights(model):
        last = scored(model, x, args.num_samples)
    last_seconds = time.perf_counter() - started
    difference = last[0] - kept[0]  # [examples]: log p(x) of the last epoch's model minus the kept one's
    with open(os.path.join(args.run_dir, training.HISTORY_FILE)) as f:
        best_epoch = json.load(f).get("best_epoch")
    result = {
        "run": os.path.abspath(args.run_dir),
        "examples": len(x),
        "num_samples": args.num_samples,
        "kept": {"epoch": best_epoch, **summary(*kept, kept_seconds)},
        "last": {"epoch": checkpoint.epochs, **summary(*last, last_seconds)},
        "log_likelihood_gain_of_last": float(np.mean(difference)),
        "log_likelihood_gain_of_last_stderr": float(np.std(difference) / np.sqrt(len(x))),
        **provenance(),
    }
    write_result(os.path.join(HERE, "results", f"stopping_check_{args.name}.json"), result)
    print(result)


if __name__ == "__main__":
    main()
