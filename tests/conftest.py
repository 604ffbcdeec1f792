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
