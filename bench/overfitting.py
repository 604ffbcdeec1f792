"""Where a finished run overfits: the generative model, the encoder, or the choice of epoch.

The kept model (model.keras) is scored on the first N training and validation images:
the importance-sampled log p(x) (K samples) measures the generative model, and its
distance to the IWAE-5 bound measures how well the encoder's q(z|x) proposes for each.
A gap in log p(x) between the two sets with an encoder as tight on both says the
generative model memorises its training set, and the ELBO's parts say which part of it:
E_q[log p(x|z)] (the decoder) against each layer's KL (the prior). Then the run's last checkpoint (the
moving average of the weights where the run kept one, as validation saw them) is scored
on the same validation images with the same samples: the runs validate on a cheap bound
while their figure is the K = 5000 NLL, and an encoder that overfits could loosen the
bound while log p(x) still improves, so that early stopping keeps an epoch too soon.
Writes bench/results/overfitting_NAME.json.
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


# Samples of z for the ELBO's parts: their Monte Carlo error is then a few hundredths of a nat.
ELBO_SAMPLES = 20


def scored(model, x, num_samples):
    """`(log p(x) per image, summary)`: log p(x) with K = `num_samples`, the IWAE-5 bound
    and the ELBO's parts, all with seed 0, summarised with the time they took."""
    started = time.perf_counter()
    log_likelihood = model.log_likelihood(x, num_samples=num_samples, seed=0)
    bound = model.log_likelihood(x, num_samples=5, seed=0)
    expected_log_likelihood, kls = model.elbo_parts(x, num_samples=ELBO_SAMPLES, seed=0)
    return log_likelihood, {
        "nll": float(-np.mean(log_likelihood)),
        "nll_stderr": float(np.std(log_likelihood) / np.sqrt(len(log_likelihood))),
        "iwae5": float(-np.mean(bound)),
        # How much looser q(z|x) makes the 5-sample bound than the K-sample estimate.
        "iwae5_gap": float(np.mean(log_likelihood - bound)),
        "reconstruction": float(-np.mean(expected_log_likelihood)),  # -E_q[log p(x|z)]
        "kl_per_layer": [float(np.mean(kl)) for kl in kls],  # bottom layer first
        "seconds": round(time.perf_counter() - started, 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a finished run (model.keras and checkpoints/)")
    parser.add_argument("--name", required=True, help="the result's name: bench/results/overfitting_NAME.json")
    parser.add_argument("--examples", type=int, default=1000, help="the first N training and validation images")
    parser.add_argument("--num-samples", type=int, default=1000, help="K of the importance-sampled NLL")
    args = parser.parse_args()
    config = training.read_config(args.run_dir)
    splits = training.load_splits(config)
    train, valid = splits.train[: args.examples], splits.valid[: args.examples]
    model = training.load_run(args.run_dir)
    _, kept_train = scored(model, train, args.num_samples)
    kept_log_likelihood, kept_valid = scored(model, valid, args.num_samples)
    checkpoint = latest_checkpoint(os.path.join(args.run_dir, training.CHECKPOINT_DIR))
    checkpoint.restore(model)
    with averaged_weights(model):
        last_log_likelihood, last_valid = scored(model, valid, args.num_samples)
    difference = last_log_likelihood - kept_log_likelihood  # [examples]: the last epoch's log p(x) minus the kept one's
    with open(os.path.join(args.run_dir, training.HISTORY_FILE)) as f:
        best_epoch = json.load(f).get("best_epoch")
    result = {
        "run": os.path.abspath(args.run_dir),
        "examples": len(valid),
        "num_samples": args.num_samples,
        "kept": {"epoch": best_epoch, "train": kept_train, "valid": kept_valid},
        "last": {"epoch": checkpoint.epochs, "valid": last_valid},
        "log_likelihood_gain_of_last": float(np.mean(difference)),
        "log_likelihood_gain_of_last_stderr": float(np.std(difference) / np.sqrt(len(valid))),
        **provenance(),
    }
    write_result(os.path.join(HERE, "results", f"overfitting_{args.name}.json"), result)
    print(result)


if __name__ == "__main__":
    main()
