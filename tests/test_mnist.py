"""On the real benchmark data: the shared statically binarised MNIST (skipped when absent)."""

import json
import os

import keras
import numpy as np
import pytest

from tfvae.training import TrainConfig, train

pytestmark = pytest.mark.slow  # trainings, servers and subprocesses: `make test-fast` leaves them out


def test_one_epoch_on_binarized_mnist_trains_and_reloads_identically(mnist_path, tmp_path):
    config = TrainConfig(data=mnist_path, out=str(tmp_path / "mnist"), epochs=1, latent_dim=8)
    result = train(config, verbose=0, pictures=False)
    with open(os.path.join(config.out, "history.json")) as f:
        history = json.load(f)
    # A 784-512-256 VAE after one epoch sits near 120-130 nats; an untrained one near 543.
    assert 90 < history["test"]["loss"] < 150
    loaded = keras.models.load_model(os.path.join(config.out, "model.keras"))
    z = np.random.default_rng(0).normal(size=(16, 8)).astype(np.float32)
    np.testing.assert_array_equal(loaded.decode(z).mean().numpy(), result.model.decode(z).mean().numpy())
