"""`make bench-generator`: how fast an exported PixelCNN generator draws images, in Keras,
the SavedModel (as `tfvae serve --backend savedmodel` runs it) and ONNX Runtime: with
`tfvae serve`'s session options (its default backend; one intra-op thread for a
generator), with those options on all cores (as it ran generators before), and with ONNX
Runtime's defaults (a plain `InferenceSession`).

The model is codec_bench's photo-patch PixelCNN VAE (32×32×3, 32 filters, 3 blocks, a
conv encoder and decoder with 256 hidden units, 32-d z), freshly initialised: a draw
costs the same whatever the weights, H·W = 1,024 sequential steps, each computing the
masked network's horizontal stack at one pixel (and, once a row, its vertical stack on
the row). Each runtime draws the same batches of images
from the same z and uniform noise, interleaved in rounds; the figure is the best round.
Writes bench/results/generator.json.
"""

import argparse
import os
import tempfile
import time

import keras
import numpy as np
import onnxruntime
import tensorflow as tf
from results_io import cpu, provenance, write_result

import tfvae
from tfvae.serving.backends import OnnxBackend, SavedModelBackend

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,8,64", help="images per call")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)  # the weights, as every bench seeds them (a draw's cost does not depend on them)
    shape = (32, 32, 3)
    likelihood = tfvae.PixelCNNLikelihood(shape, filters=32, num_blocks=3)
    vae = tfvae.VAE(
        shape, 32, arch="conv", hidden_units=(256,), likelihood=likelihood, image_shape=shape, activation="elu", seed=0
    )
    vae(np.zeros((1, *shape), np.float32))  # builds the weights
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        tfvae.export(vae, folder, "pixels", parts=("decoder",))
        export_seconds = time.perf_counter() - started
        path = os.path.join(folder, "pixels", "1")
        savedmodel = SavedModelBackend(path, ["serving_default"])
        served_onnx = OnnxBackend(path, sequential=True)  # as `tfvae serve` loads a generator
        all_cores_onnx = OnnxBackend(path, threads=os.cpu_count())
        session = onnxruntime.InferenceSession(os.path.join(path, "model.onnx"))

        def in_keras(z, noise):
            return vae.decoder_outputs(tf.constant(z), noise=tf.constant(noise))["x"].numpy()

        def in_savedmodel(z, noise):
            return savedmodel.run({"z": z, "noise": noise})["x"]

        def in_onnxruntime(z, noise):
            return served_onnx.run({"z": z, "noise": noise})["x"]

        def in_onnxruntime_all_cores(z, noise):
            return all_cores_onnx.run({"z": z, "noise": noise})["x"]

        def in_onnxruntime_defaults(z, noise):
            return session.run(["x"], {"z": z, "noise": noise})[0]

        runtimes = {
            "keras": in_keras,
            "savedmodel": in_savedmodel,
            "onnxruntime": in_onnxruntime,
            "onnxruntime_all_cores": in_onnxruntime_all_cores,
            "onnxruntime_default_options": in_onnxruntime_defaults,
        }
        seconds = {name: {} for name in runtimes}
        for batch in (int(b) for b in args.batches.split(",")):
            rng = np.random.default_rng(batch)
            z = rng.standard_normal((batch, 32)).astype(np.float32)
            noise = rng.uniform(size=(batch, *likelihood.noise_shape)).astype(np.float32)
            for run in runtimes.values():  # the first call traces or plans
                run(z, noise)
            for _ in range(args.rounds):
                for name, run in runtimes.items():
                    started = time.perf_counter()
                    run(z, noise)
                    elapsed = time.perf_counter() - started
                    seconds[name][batch] = min(seconds[name].get(batch, np.inf), elapsed)
                    print(name, batch, round(elapsed, 2), flush=True)
    result = {
        "model": "32x32x3 PixelCNN VAE (32 filters, 3 blocks), codec_bench's photo-patch model",
        "seconds_per_call": seconds,
        "images_per_second": {n: {b: b / s for b, s in per.items()} for n, per in seconds.items()},
        "export_seconds": round(export_seconds, 1),
        "settings": "savedmodel and onnxruntime: tfvae serve's backends (ONNX Runtime on one intra-op thread "
        "for a generator); onnxruntime_all_cores: the same options on all cores, threads that sleep instead "
        "of spin (tfvae serve's before); onnxruntime_default_options: InferenceSession(path)",
        "rounds": args.rounds,
        "cpu": cpu(),
        **provenance(),
    }
    write_result(os.path.join(HERE, "results", "generator.json"), result)
    print(result["images_per_second"])


if __name__ == "__main__":
    main()
