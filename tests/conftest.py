"""Fixtures only; helpers that tests import live in helpers.py."""

import os

import keras
import pytest

import tfvae

MNIST_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "binarized_mnist.npz")


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(0)


@pytest.fixture(scope="session")
def digits():
    return tfvae.load_dataset("digits")


@pytest.fixture(scope="session")
def mnist_path():
    path = os.path.abspath(MNIST_PATH)
    if not os.path.exists(path):
        pytest.skip(f"binarised MNIST is not at {path} (the shared data folder is absent)")
    return path


@pytest.fixture(scope="session")
def exported_vae(tmp_path_factory, digits):
    """`(export_dir, model)`: a tiny VAE (latent 4) trained one epoch, exported as "gen" and
    "gen_encoder" (the serving tests share it; none of them may change it)."""
    from helpers import tiny_vae

    keras.utils.set_random_seed(0)
    model = tiny_vae(latent_dim=4)
    model.fit(digits.train[:512], epochs=1, batch_size=64, verbose=0)
    export_dir = str(tmp_path_factory.mktemp("repo"))
    tfvae.export(model, export_dir, "gen")
    return export_dir, model
