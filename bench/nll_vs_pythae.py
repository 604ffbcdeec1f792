"""`make bench-nll-pythae`: one trained model's K = 5000 importance-sampled NLL, by tfvae
(`VAE.log_likelihood`) and by pythae's `VAE.get_nll`, on the same test images.

tfvae trains the baselines' fixed model (../shared/baselines: MLP 784-512-256 ReLU, a
32-d diagonal Gaussian q(z|x), Bernoulli decoder 32-256-512-784, Adam 1e-3, batch 128)
for `--epochs`; its Dense weights go to pythae's `VAE` (PyTorch, bench/.venv-pythae)
through an .npz. pythae's encoder there returns exactly tfvae's q(z|x):
`log_covariance` = 2 log(softplus(raw) + 1e-4), tfvae's scale map; its decoder the
sigmoid of the same logits. Each estimate runs in its own process (pythae's in its venv)
on the first `--examples` test images of binarised MNIST: wall time, the process's peak
resident memory (VmHWM), the mean NLL and, from tfvae's per-image estimates, its
standard error; tfvae once at `log_likelihood`'s default memory budget and once at
64 MiB. pythae returns only the mean. Results: bench/results/nll_vs_pythae.json.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data", "binarized_mnist.npz")
PYTHAE_PYTHON = os.path.join(HERE, ".venv-pythae", "bin", "python")
LATENT, SCALE_FLOOR = 32, 1e-4


def train(data, epochs, work):
    """tfvae's run of the fixed model; writes weights.npz (kernels [in, out]) and model.keras."""
    import keras

    import tfvae

    keras.utils.set_random_seed(0)
    model = tfvae.VAE((784,), LATENT, hidden_units=(512, 256), activation="relu", seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(np.load(data)["train"].astype(np.float32), epochs=epochs, batch_size=128, verbose=2)
    weights = {}
    for part in ("encoder", "decoder"):
        dense = [layer for layer in getattr(model, part).layers if isinstance(layer, keras.layers.Dense)]
        for i, layer in enumerate(dense):
            weights[f"{part}_{i}_kernel"], weights[f"{part}_{i}_bias"] = (w.numpy() for w in layer.weights)
    np.savez(os.path.join(work, "weights.npz"), **weights)
    model.save(os.path.join(work, "model.keras"))


def tfvae_side(work, x, num_samples, **options):
    import keras

    import tfvae  # noqa: F401 - registers the model's classes

    model = keras.models.load_model(os.path.join(work, "model.keras"))
    started = time.perf_counter()
    log_p = model.log_likelihood(x, num_samples=num_samples, seed=0, **options)
    nll = -np.asarray(log_p)  # [examples]
    return {
        "seconds": time.perf_counter() - started,
        "nll": float(nll.mean()),
        "nll_stderr": float(nll.std(ddof=1) / np.sqrt(len(nll))),
    }


def pythae_side(work, x, num_samples):
    import torch
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from torch import nn

    weights = np.load(os.path.join(work, "weights.npz"))

    def linear(part, i):
        layer = nn.Linear(*weights[f"{part}_{i}_kernel"].shape)
        layer.weight.data = torch.from_numpy(weights[f"{part}_{i}_kernel"].T.copy())
        layer.bias.data = torch.from_numpy(weights[f"{part}_{i}_bias"])
        return layer

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(linear("encoder", 0), nn.ReLU(), linear("encoder", 1), nn.ReLU())
            self.params = linear("encoder", 2)

        def forward(self, x):
            loc, raw = self.params(self.net(x.reshape(x.shape[0], -1))).split(LATENT, dim=-1)
            scale = nn.functional.softplus(raw) + SCALE_FLOOR
            return ModelOutput(embedding=loc, log_covariance=2 * torch.log(scale))

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            layers = [linear("decoder", 0), nn.ReLU(), linear("decoder", 1), nn.ReLU(), linear("decoder", 2)]
            self.net = nn.Sequential(*layers, nn.Sigmoid())

        def forward(self, z):
            return ModelOutput(reconstruction=self.net(z))

    torch.manual_seed(0)
    config = VAEConfig(input_dim=(784,), latent_dim=LATENT, reconstruction_loss="bce")
    model = VAE(model_config=config, encoder=Encoder(), decoder=Decoder()).eval()
    started = time.perf_counter()
    with torch.no_grad():
        log_p = model.get_nll(torch.from_numpy(x), n_samples=num_samples, batch_size=100)
    return {"seconds": time.perf_counter() - started, "nll": -float(log_p), "torch_threads": torch.get_num_threads()}


def peak_rss_mib():
    """This process's peak resident memory since it started its program (VmHWM belongs to
    the address space exec made; ru_maxrss would count the forking parent's pages)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))


SIDES = {
    "tfvae": tfvae_side,  # log_likelihood's default memory budget
    "tfvae_budget_64mib": lambda work, x, k: tfvae_side(work, x, k, memory_budget_mib=64),
    "tfvae_budget_1024mib": lambda work, x, k: tfvae_side(work, x, k, memory_budget_mib=1024),  # the old default
    "pythae": pythae_side,
}


def run_side(python, side, work, args):
    """One side in its own process: its JSON line (with its peak RSS in MiB)."""
    command = [python, os.path.abspath(__file__), "--side", side, "--work", work]
    command += ["--data", args.data, "--examples", str(args.examples), "--num-samples", str(args.num_samples)]
    out = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--examples", type=int, default=1000, help="the first N test images")
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--pythae-python", default=PYTHAE_PYTHON)
    parser.add_argument("--side", choices=tuple(SIDES), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "nll_vs_pythae.json"))
    args = parser.parse_args()
    if args.side:
        x = np.load(args.data)["test"][: args.examples].astype(np.float32)
        side = SIDES[args.side]
        print(json.dumps({**side(args.work, x, args.num_samples), "peak_rss_mib": round(peak_rss_mib(), 1)}))
        return
    from results_io import cpu, provenance, write_result

    with tempfile.TemporaryDirectory() as work:
        train(args.data, args.epochs, work)
        results = {
            side: run_side(args.pythae_python if side == "pythae" else sys.executable, side, work, args)
            for side in SIDES
        }
    difference = results["pythae"]["nll"] - results["tfvae"]["nll"]
    report = {
        "benchmark": "K-sample importance-sampled test NLL of one trained model, tfvae against pythae's get_nll",
        "model": "baselines' fixed model: MLP 784-512-256 ReLU, 32-d diagonal Gaussian, Bernoulli decoder",
        "examples": args.examples,
        "num_samples": args.num_samples,
        "train_epochs": args.epochs,
        "results": results,
        "nll_difference_pythae_minus_tfvae": difference,
        "difference_in_tfvae_stderrs": difference / results["tfvae"]["nll_stderr"],
        "speedup_tfvae_over_pythae": results["pythae"]["seconds"] / results["tfvae"]["seconds"],
        "memory_ratio_pythae_over_tfvae": results["pythae"]["peak_rss_mib"] / results["tfvae"]["peak_rss_mib"],
        "cpu": cpu(),
        **provenance(),
        "command": "make bench-nll-pythae",
    }
    write_result(args.out, report)
    print(json.dumps({k: v for k, v in report.items() if k not in ("cpu", "machine")}, indent=1))


if __name__ == "__main__":
    main()
