"""tfvae's side of `make bench-train`: the baselines' model and protocol, with tfvae's defaults.

Same flags and JSON line as ../shared/baselines/*.py: MLP 784-512-256 to a 32-d diagonal
Gaussian, decoder 32-256-512-784 to Bernoulli logits, standard normal prior, one-sample
ELBO, Adam(1e-3), batch 128; `train_images_per_s` over the epochs after the first and
`test_neg_elbo` with one posterior sample, in nats per image.

By default it runs tfvae as a user gets it. `--jit-compile`, `--steps-per-execution`
and `--input keras` (Keras' own fit path for arrays, bypassing tfvae's input pipeline)
undo the speed defaults one at a time for bench/train_ablation.py.
"""

import argparse
import functools
import json
import time

import keras
import numpy as np
import tensorflow as tf

import tfvae


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jit-compile", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--steps-per-execution", default="auto")
    parser.add_argument("--input", choices=("tfvae", "keras"), default="tfvae")
    args = parser.parse_args()
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(args.seed)
    data = np.load(args.data)
    x_train, x_test = data["train"].astype("float32"), data["test"].astype("float32")
    model = tfvae.VAE((784,), 32, hidden_units=(512, 256), seed=args.seed)
    jit_compile = {"auto": "auto", "on": True, "off": False}[args.jit_compile]
    steps = args.steps_per_execution if args.steps_per_execution == "auto" else int(args.steps_per_execution)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit_compile, steps_per_execution=steps)
    timer = EpochTimer()
    fit = model.fit if args.input == "tfvae" else functools.partial(keras.Model.fit, model)
    fit(x_train, epochs=args.epochs, batch_size=args.batch, verbose=0, callbacks=[timer])
    later = timer.seconds[1:] or timer.seconds
    test = model.evaluate(x_test, batch_size=500, verbose=0, return_dict=True)
    print(
        json.dumps(
            {
                "baseline": "tfvae",
                "epochs": args.epochs,
                "seed": args.seed,
                "jit_compile": model.jit_compile,
                "steps_per_execution": model.steps_per_execution,
                "input": args.input,
                "train_images_per_s": round(len(x_train) * len(later) / sum(later), 1),
                "epoch_seconds": [round(t, 2) for t in timer.seconds],
                "test_neg_elbo": round(test["loss"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
