import os

import keras
import numpy as np
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


def tiny_vae(input_shape=(64,), latent_dim=3, **kwargs):
    """A small fast model for tests."""
    kwargs.setdefault("hidden_units", (32,))
    kwargs.setdefault("seed", 0)
    model = tfvae.VAE(input_shape, latent_dim, **kwargs)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    return model


def random_examples(n, dim, seed=0):
    return (np.random.default_rng(seed).random((n, dim)) > 0.5).astype(np.float32)


def trained_conditional_and_autoencoder(digits):
    """A conditional VAE and an autoencoder (latent 4), each trained one epoch on 256 digits."""
    conditional = tfvae.ConditionalVAE((64,), num_classes=10, latent_dim=4, hidden_units=(32,), seed=0)
    autoencoder = tfvae.Autoencoder((64,), 4, hidden_units=(32,))
    for model, data in ((conditional, (digits.train[:256], digits.labels["train"][:256])),
                        (autoencoder, digits.train[:256])):
        model.compile()
        model.fit(data, epochs=1, batch_size=64, verbose=0)
    return conditional, autoencoder
