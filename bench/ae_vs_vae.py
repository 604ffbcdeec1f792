"""`make bench-ae-vae`: the seed's comparison of an autoencoder and a VAE with the same networks.

Both get the same encoder/decoder MLP, latent size, data, epochs, batch and optimiser;
the VAE adds q(z|x)'s scale, the prior and the KL. Reported on the test split:
- reconstruction: -log p(x | z = code(x)) in nats, the deterministic code (the AE's
  encoder output, the VAE's posterior mean), and the pixel error rate of the
  reconstruction thresholded at 0.5;
- what decoding random codes gives: codes drawn from N(0, I) (the VAE's prior) and,
  for the AE, from a Gaussian fitted to its own training codes, shown as pictures and
  measured by the decoder's mean per-image Bernoulli entropy (nats; a decoder unsure
  of every pixel draws blur, and the test reconstructions give the reference level).
Writes bench/results/ae_vs_vae.json and docs/images/ae_vs_vae/*.png.
"""

import argparse
import json
import os
import time

import keras
import numpy as np
from results_io import provenance, write_result

import tfvae
from tfvae import plots

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data", "binarized_mnist.npz")


def reconstruction_report(model, x, batch_size=500):
    codes = np.concatenate([model.latent_code(x[i : i + batch_size]).numpy() for i in range(0, len(x), batch_size)])
    nll, errors = [], []
    for i in range(0, len(x), batch_size):
        likelihood = model.decode(codes[i : i + batch_size])
        nll.append(-likelihood.log_prob(x[i : i + batch_size]).numpy())
        errors.append(np.mean((likelihood.mean().numpy() > 0.5) != (x[i : i + batch_size] > 0.5), axis=1))
    return codes, {
        "reconstruction_nats": float(np.mean(np.concatenate(nll))),
        "pixel_error_rate": float(np.mean(np.concatenate(errors))),
    }


def mean_entropy(probabilities):
    """The mean over images of the summed per-pixel Bernoulli entropy, nats."""
    p = np.clip(probabilities, 1e-7, 1 - 1e-7)
    return float(np.mean(np.sum(-(p * np.log(p) + (1 - p) * np.log(1 - p)), axis=1)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DATA if os.path.exists(DATA) else "digits")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--hidden-units", default="512,256")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--samples", type=int, default=64, help="random codes decoded per model")
    parser.add_argument("--pictures", default=os.path.join(HERE, "..", "docs", "images", "ae_vs_vae"))
    parser.add_argument("--out", default=os.path.join(HERE, "results", "ae_vs_vae.json"))
    args = parser.parse_args()
    splits = tfvae.load_dataset(args.data)
    networks = dict(
        input_shape=splits.example_shape,
        latent_dim=args.latent_dim,
        hidden_units=tuple(int(u) for u in args.hidden_units.split(",")),
    )
    models = {"autoencoder": tfvae.Autoencoder(**networks), "vae": tfvae.VAE(**networks, seed=0)}
    report = {"data": args.data, "epochs": args.epochs, "batch_size": args.batch_size, **networks, "models": {}}
    rng = np.random.default_rng(0)
    test = splits.test
    for name, model in models.items():
        keras.utils.set_random_seed(0)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        started = time.perf_counter()
        model.fit(
            splits.train, epochs=args.epochs, batch_size=args.batch_size, verbose=2, validation_data=(splits.valid,)
        )
        train_seconds = time.perf_counter() - started
        train_codes, _ = reconstruction_report(model, splits.train)
        _, figures = reconstruction_report(model, test)
        standard = rng.standard_normal((args.samples, args.latent_dim)).astype(np.float32)
        random_codes = {"standard_normal": standard}
        if name == "autoencoder":  # a Gaussian with the AE's own code statistics, the fairer draw
            mean, cov = train_codes.mean(axis=0), np.cov(train_codes, rowvar=False)
            random_codes["fitted_gaussian"] = rng.multivariate_normal(mean, cov, args.samples).astype(np.float32)
        figures["train_seconds"] = round(train_seconds, 1)
        figures["code_std"] = float(train_codes.std(axis=0).mean())
        figures["reconstruction_entropy_nats"] = mean_entropy(model.reconstruct(test[:2000]).numpy())
        figures["random_codes"] = {}
        for kind, z in random_codes.items():
            images = model.decode(z).mean().numpy()
            figures["random_codes"][kind] = {"entropy_nats": mean_entropy(images)}
            plots.save_image_grid(
                images,
                splits.image_shape,
                os.path.join(args.pictures, f"{name}_{kind}.png"),
                title=f"{name}: decoded codes z ~ {kind.replace('_', ' ')}",
            )
        plots.save_reconstructions(
            test[:16],
            model.reconstruct(test[:16]).numpy(),
            splits.image_shape,
            os.path.join(args.pictures, f"{name}_reconstructions.png"),
        )
        if name == "vae":
            figures["test_nll_k1000_first_1000"] = -float(
                np.mean(model.log_likelihood(test[:1000], num_samples=1000, seed=0))
            )
        report["models"][name] = figures
    report.update(provenance())
    write_result(args.out, report)
    print(json.dumps(report["models"], indent=1))


if __name__ == "__main__":
    main()
