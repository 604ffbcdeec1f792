"""Likelihoods of 8-bit data: true probabilities of the 256 levels, bits per dimension, data checks."""

import json
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfvae
from tfvae import cli
from tfvae.distributions import (
    BernoulliLikelihood,
    DiscretizedLogisticLikelihood,
    DiscretizedLogisticMixtureLikelihood,
    discretized_logistic,
)

tfd = tfp.distributions
LEVELS = np.arange(256, dtype=np.float64)


def test_a_discretized_logistic_sums_to_one_over_the_levels_and_matches_pixelcnn_plus_plus():
    loc = tf.constant([3.0, 128.3, 250.0, -20.0, 300.0], tf.float64)  # inside, near and beyond the edges
    scale = tf.constant([0.3, 5.0, 2.0, 3.0, 1.0], tf.float64)
    p = np.exp(discretized_logistic(loc, scale).log_prob(LEVELS[:, None] + np.zeros(5)).numpy())  # [256, 5]
    np.testing.assert_allclose(p.sum(axis=0), 1.0, rtol=1e-12)

    # Salimans et al. (2017): the logistic's mass over [k - ½, k + ½], the tails on the edges.
    def sigmoid(u):
        return 1 / (1 + np.exp(-u))

    k, m, s = LEVELS[:, None], loc.numpy(), scale.numpy()
    expected = sigmoid((k + 0.5 - m) / s) - sigmoid((k - 0.5 - m) / s)
    expected[0], expected[255] = sigmoid((0.5 - m) / s), 1 - sigmoid((254.5 - m) / s)
    np.testing.assert_allclose(p, expected, atol=1e-12)
    # TFP's own quantisation of a logistic half a level lower is the same distribution.
    quantized = tfd.QuantizedDistribution(tfd.Logistic(loc - 0.5, scale), low=0.0, high=255.0)
    np.testing.assert_allclose(p, np.exp(quantized.log_prob(LEVELS[:, None] + np.zeros(5)).numpy()), atol=1e-12)
    np.testing.assert_allclose(discretized_logistic(loc, scale).mean().numpy(), (p * k).sum(axis=0), rtol=1e-10)


def test_a_mixture_of_one_component_is_the_single_logistic():
    params = np.random.default_rng(0).normal(size=(4, 6, 2)).astype("float32")
    single = DiscretizedLogisticLikelihood((6,))(tf.constant(params))
    mixture_params = np.concatenate([np.zeros((4, 6, 1), "float32"), params], axis=-1)  # logits, loc, scale
    mixture = DiscretizedLogisticMixtureLikelihood((6,), num_components=1)(tf.constant(mixture_params))
    x = np.random.default_rng(1).integers(0, 256, size=(4, 6)).astype("float32")
    np.testing.assert_allclose(mixture.log_prob(x).numpy(), single.log_prob(x).numpy(), rtol=1e-6)
    np.testing.assert_allclose(mixture.mean().numpy(), single.mean().numpy(), rtol=1e-6)


def test_bits_per_dim_is_nats_over_d_ln_2():
    assert tfvae.objectives.bits_per_dim(2 * 784 * math.log(2.0), 784) == pytest.approx(2.0)
    # A uniform distribution over 256 levels costs exactly 8 bits per dimension.
    assert tfvae.objectives.bits_per_dim(3072 * math.log(256.0), 3072) == pytest.approx(8.0)


@pytest.fixture(scope="module")
def eight_bit_npz(tmp_path_factory, digits):
    """The bundled digits' 0..16 intensities as 8-bit levels (×15, 0..240), in an .npz of uint8."""
    from sklearn.datasets import load_digits

    images = (load_digits().data * 15).astype(np.uint8)  # [1797, 64]
    path = str(tmp_path_factory.mktemp("data") / "digits8.npz")
    np.savez(path, train=images[:1200], valid=images[1200:1500], test=images[1500:])
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    "likelihood", ["discretized_logistic", pytest.param("discretized_logistic_mixture", marks=pytest.mark.xla)]
)
def test_a_vae_on_8_bit_data_reports_bits_per_dim_of_a_true_probability(eight_bit_npz, tmp_path, likelihood):
    data = tfvae.load_dataset(eight_bit_npz, likelihood=likelihood)
    vae = tfvae.VAE((64,), 4, likelihood=likelihood, hidden_units=(64,), seed=0)
    vae.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = vae.fit(data.train, epochs=4, batch_size=64, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    report = tfvae.evaluate(vae, data.test[:40], num_samples=50, seed=0)
    assert report["likelihood_of"] == "probability"
    assert report["nll_bits_per_dim"] == pytest.approx(report["nll"] / (64 * math.log(2)))
    assert 0 < report["nll_bits_per_dim"] < 8  # better than coding each level uniformly
    samples = vae.sample(5, seed=0).numpy()
    assert samples.shape == (5, 64) and samples.min() >= 0 and samples.max() <= 255
    path = os.path.join(tmp_path, "m.keras")
    vae.save(path)
    same = keras.models.load_model(path)
    np.testing.assert_array_equal(same.elbo(data.test[:8], seed=1).numpy(), vae.elbo(data.test[:8], seed=1).numpy())


def test_a_gaussian_likelihood_says_its_figures_are_densities(digits):
    vae = tfvae.VAE((64,), 3, likelihood="gaussian", hidden_units=(16,), seed=0)
    report = tfvae.evaluate(vae, digits.test[:10], num_samples=5)
    assert report["likelihood_of"] == "density" and report["nll_bits_per_dim"] is None


@pytest.mark.slow
def test_the_cli_trains_on_8_bit_data_and_writes_bits_per_dim(eight_bit_npz, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert (
        cli.main(
            [
                "train",
                "--data",
                eight_bit_npz,
                "--likelihood",
                "discretized_logistic",
                "--out",
                out,
                "--epochs",
                "2",
                "--latent-dim",
                "4",
                "--hidden-units",
                "32",
                "--batch-size",
                "64",
                "--quiet",
                "--no-pictures",
            ]
        )
        == 0
    )
    with open(os.path.join(out, "history.json")) as f:
        history = json.load(f)
    np.testing.assert_allclose(
        history["bits_per_dim"]["valid"], np.array(history["valid"]["loss"]) / (64 * math.log(2)), rtol=1e-12
    )
    assert cli.main(["evaluate", out, "--num-samples", "10", "--limit", "20"]) == 0
    assert "bits/dim: nll" in capsys.readouterr().out


def test_a_bernoulli_on_grey_levels_is_the_cross_entropy_of_x_over_255_and_answers_in_levels():
    logits = tf.constant(np.random.default_rng(0).normal(size=(3, 5)), tf.float32)
    x = tf.constant(np.random.default_rng(1).integers(0, 256, size=(3, 5)), tf.float32)
    grey = BernoulliLikelihood((5,), num_levels=256)(logits)
    plain = BernoulliLikelihood((5,))(logits)
    expected = np.sum(x / 255 * tf.math.log_sigmoid(logits) + (1 - x / 255) * tf.math.log_sigmoid(-logits), axis=-1)
    np.testing.assert_allclose(grey.log_prob(x).numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(grey.log_prob(x).numpy(), plain.log_prob(x / 255).numpy(), rtol=1e-6)
    np.testing.assert_allclose(grey.mean().numpy(), 255 * tf.sigmoid(logits).numpy(), rtol=1e-6)
    assert set(np.unique(grey.sample(seed=0).numpy())) <= {0.0, 255.0}


@pytest.mark.slow
def test_8_bit_images_train_a_bernoulli_run_that_answers_in_their_range(eight_bit_npz, tmp_path):
    from tfvae.training import TrainConfig, load_run, train

    config = TrainConfig(data=eight_bit_npz, out=str(tmp_path / "run"), epochs=2, latent_dim=4, hidden_units=(32,))
    model = train(config, verbose=0, pictures=False).model
    assert model.likelihood_layer.num_levels == 256  # recorded in the run's model.keras
    same = load_run(config.out)
    samples = same.sample(50, seed=0).numpy()
    assert 1.0 < samples.max() <= 255.0 and samples.min() >= 0.0  # levels, not probabilities
    data = tfvae.load_dataset(eight_bit_npz)
    np.testing.assert_array_equal(same.elbo(data.test[:8], seed=1).numpy(), model.elbo(data.test[:8], seed=1).numpy())
    report = tfvae.evaluate(same, data.test[:10], num_samples=5, seed=0)
    assert report["likelihood_of"] == "cross_entropy" and report["nll_bits_per_dim"] is None
    # The Python API says how to read grey levels, and a grey-level model refuses [0, 1] data.
    with pytest.raises(tfvae.DataError, match=r"BernoulliLikelihood\(\(64,\), num_levels=256\)"):
        tfvae.VAE((64,), 2, hidden_units=(8,)).fit(data.train, epochs=1, verbose=0)
    with pytest.raises(tfvae.DataError, match=r"reads grey levels, integers in \[0, 255\]"):
        same.fit(data.train / 255.0, epochs=1, verbose=0)


@pytest.mark.parametrize("values, found", [(np.full((3, 4), 0.5), "0.5"), (np.full((3, 4), 256.0), "256")])
def test_data_off_the_8_bit_levels_is_refused_with_the_fix(tmp_path, values, found):
    path = str(tmp_path / "bad.npz")
    np.savez(path, train=values)
    with pytest.raises(tfvae.DataError, match=rf"integers in \[0, 255\].*e\.g\. {found}\).*multiply by 255"):
        tfvae.load_dataset(path, likelihood="discretized_logistic")


def test_photo_patches_ship_with_scikit_learn_and_test_patches_share_no_pixel_with_training():
    data = tfvae.load_dataset("photo_patches", likelihood="discretized_logistic")
    assert data.train.shape == (1150, 32, 32, 3) and data.valid.shape == (250, 32, 32, 3)
    assert data.test.shape == (450, 32, 32, 3) and data.image_shape == (32, 32, 3)
    assert data.train.max() == 255 and data.train.min() == 0
    from tfvae.data import PATCH, PATCH_COLUMNS

    train_right = PATCH_COLUMNS["train"][1]
    assert max(range(0, train_right - PATCH + 1, 16)) + PATCH <= train_right <= PATCH_COLUMNS["valid"][0]
    assert tfvae.load_dataset("photo_patches").grey_levels == 256  # a Bernoulli run reads x / 255
