"""Fixtures only; helpers that tests import live in helpers.py."""

import os

import keras
import pytest

import tfvae
from tfvae.models.base import LatentModel

MNIST_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "binarized_mnist.npz")


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(0)


# The library's own rule, kept for the tests marked `xla`.
LIBRARY_XLA_POLICY = LatentModel._gains_from_xla


@pytest.fixture(scope="session", autouse=True)
def _no_xla_in_the_test_process():
    """Models built in the test process (fixtures' included) compile without XLA unless
    the test is marked `xla`: XLA's compiles of these tiny models were half the suite's
    CPU time (12.7 CPU-minutes with them, 6.0 without), while the training math is the
    same either way (`test_the_speed_defaults_leave_the_training_math_unchanged`, marked,
    pins that). Subprocesses (the CLI, servers) keep the library's defaults."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LatentModel, "_gains_from_xla", lambda self: False)
        yield


@pytest.fixture(autouse=True)
def _xla_where_marked(request, monkeypatch):
    if request.node.get_closest_marker("xla") is not None:
        monkeypatch.setattr(LatentModel, "_gains_from_xla", LIBRARY_XLA_POLICY)


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
