"""`make bench-eval`: evaluation throughput on the baselines' model.

Trains tfvae's VAE on the fixed model of ../shared/baselines (784-512-256, 32-d
diagonal Gaussian, Bernoulli, Adam 1e-3, batch 128) for a few epochs, then measures
- the importance-sampled test NLL with K = 5000 over the 10,000 test images: wall time
  and the process's peak resident memory before and after;
- the decode throughput (rows/s) of the exported decoder in ONNX Runtime at batch sizes
  1, 64 and 256, beside the same decoder in Keras (a `tf.function`) on the same inputs.
Writes bench/results/evaluation.json.
"""

import argparse
import json
import os
import resource
import tempfile
import time

import keras
import numpy as np
import onnxruntime
import tensorflow as tf
from results_io import provenance, write_result

import tfvae

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data", "binarized_mnist.npz")


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rows_per_second(run, batch, seconds):
    """Rows/s of `run()` on one batch, repeated for about `seconds` after a warm-up."""
    for _ in range(5):
        run()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        run()
        count += 1
    return count * batch / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--eval-samples", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=3.0, help="timing window per decode measurement")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "evaluation.json"))
    args = parser.parse_args()
    splits = tfvae.load_dataset(args.data)
    keras.utils.set_random_seed(0)
    model = tfvae.VAE(splits.example_shape, 32, hidden_units=(512, 256), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(splits.train, epochs=args.epochs, batch_size=128, verbose=2)
    rss_before = peak_rss_mib()
    started = time.perf_counter()
    log_px = model.log_likelihood(splits.test, num_samples=args.eval_samples, seed=0, verbose=1)
    nll_seconds = time.perf_counter() - started
    report = {
        "model": "784-512-256, latent 32 diagonal, Bernoulli (the baselines' model)",
        "train_epochs": args.epochs,
        "nll": {
            "test_nll": float(-log_px.mean()),
            "num_samples": args.eval_samples,
            "examples": len(log_px),
            "seconds": round(nll_seconds, 1),
            "images_x_samples_per_s": round(len(log_px) * args.eval_samples / nll_seconds),
            "peak_rss_mib_before": round(rss_before, 1),
            "peak_rss_mib_after": round(peak_rss_mib(), 1),
        },
        "decode_rows_per_s": {},
    }
    with tempfile.TemporaryDirectory() as export_dir:
        result = tfvae.export(model, export_dir, "decoder", parts=("decoder",))
        session = onnxruntime.InferenceSession(
            os.path.join(result.paths["decoder"], "model.onnx"), providers=["CPUExecutionProvider"]
        )
        keras_decode = tf.function(lambda z: model.decode(z).mean())
        for batch in (1, 64, 256):
            z = np.random.default_rng(batch).standard_normal((batch, 32)).astype(np.float32)
            report["decode_rows_per_s"][str(batch)] = {
                "onnxruntime": round(rows_per_second(lambda: session.run(["mean"], {"z": z}), batch, args.seconds)),
                "keras_tf_function": round(rows_per_second(lambda: keras_decode(z).numpy(), batch, args.seconds)),
            }
    report.update(provenance())
    report["versions"] = {
        "tfvae": tfvae.__version__,
        "onnxruntime": onnxruntime.__version__,
        "tensorflow": tf.__version__,
    }
    write_result(args.out, report)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
