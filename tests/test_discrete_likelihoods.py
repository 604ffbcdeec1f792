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


def test_a_mixtures_mean_is_the_sum_of_the_levels_times_their_probabilities():
    params = tf.constant(np.random.default_rng(2).normal(size=(4, 6, 9)))  # 3 components, float64
    mixture = DiscretizedLogisticMixtureLikelihood((6,), num_components=3, dtype="float64")(params).distribution
    p = np.exp(mixture.log_prob(LEVELS[:, None, None] + np.zeros((4, 6))).numpy())  # [256, 4, 6]
    np.testing.assert_allclose(p.sum(axis=0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(mixture.mean().numpy(), (p * LEVELS[:, None, None]).sum(axis=0), rtol=1e-10)


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


def test_a_bernoulli_gives_bits_per_dim_of_binary_data_only(digits):
    vae = tfvae.VAE((64,), 3, hidden_units=(16,), seed=0)
    binary = tfvae.evaluate(vae, digits.test[:10], num_samples=5)  # binarised at 8/16
    assert binary["likelihood_of"] == "probability"
    assert binary["nll_bits_per_dim"] == pytest.approx(binary["nll"] / (64 * math.log(2)))
    # Intensities in [0, 1]: log_prob is then the cross-entropy of x read as probabilities.
    fractional = tfvae.evaluate(vae, 0.25 + 0.5 * digits.test[:10], num_samples=5)
    assert fractional["likelihood_of"] == "cross_entropy" and fractional["nll_bits_per_dim"] is None


@pytest.mark.slow
def test_the_cli_gives_no_bits_per_dim_for_a_bernoulli_of_intensities(tmp_path, capsys):
    x = np.random.default_rng(0).random((120, 16)).astype(np.float32)  # in [0, 1], not binary
    data, out = str(tmp_path / "intensities.npz"), str(tmp_path / "run")
    np.savez(data, train=x[:80], valid=x[80:100], test=x[100:])
    argv = ["--data", data, "--epochs", "1", "--hidden-units", "8", "--latent-dim", "2"]
    assert cli.main(["train", *argv, "--out", out, "--quiet", "--no-pictures"]) == 0
    assert "bits/dim" not in capsys.readouterr().out
    with open(os.path.join(out, "history.json")) as f:
        assert "bits_per_dim" not in json.load(f)
    assert cli.main(["evaluate", out, "--data", data, "--num-samples", "5"]) == 0
    printed = capsys.readouterr().out
    assert "bits/dim:" not in printed and "these are cross-entropies, not probabilities of the data" in printed


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


def test_a_bernoulli_on_grey_levels_has_its_own_parameters_sliced_without_a_warning(caplog):
    logits = tf.constant(np.random.default_rng(0).normal(size=(3, 5)), tf.float32)
    grey = BernoulliLikelihood((5,), num_levels=256)(logits).distribution
    with caplog.at_level("WARNING"):
        first = grey[:1]  # slicing reads the parameter properties
        assert first.batch_shape == [1, 5]
    # Inheriting Bernoulli's (logits, probs) made TFP log 30 lines at every use.
    assert not [r for r in caplog.records if "_parameter_properties" in r.getMessage()]
    np.testing.assert_allclose(first.mean().numpy(), 255 * tf.sigmoid(logits[:1]).numpy(), rtol=1e-6)


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


def test_dense_photo_patches_add_training_patches_of_the_same_columns_and_keep_the_held_out_ones():
    sparse = tfvae.load_dataset("photo_patches", likelihood="discretized_logistic")
    dense = tfvae.load_dataset("photo_patches_dense", likelihood="discretized_logistic")
    assert dense.train.shape == (4500, 32, 32, 3)
    np.testing.assert_array_equal(dense.valid, sparse.valid)
    np.testing.assert_array_equal(dense.test, sparse.test)
    # Every other dense row and column offset is a sparse patch, in the same order.
    per_photo = dense.train.reshape(2, 50, 45, 32, 32, 3)
    np.testing.assert_array_equal(per_photo[:, ::2, ::2].reshape(-1, 32, 32, 3), sparse.train)


def coupled_parameters(rng, shape, channels, components, levels):
    """Random logits, locs (levels), scales and coupling coefficients of a coupled mixture, float64."""
    return dict(
        logits=rng.normal(size=(*shape, components)),
        loc=rng.uniform(-0.1 * levels, 1.1 * levels, size=(*shape, channels, components)),
        scale=rng.uniform(0.05 * levels, 0.3 * levels, size=(*shape, channels, components)),
        coefficients=rng.uniform(-1, 1, size=(*shape, channels, channels, components)),
        num_levels=levels,
    )


@pytest.mark.parametrize("channels, levels", [(3, 16), (2, 256)])
def test_a_coupled_mixture_is_a_probability_of_every_colour_of_a_pixel(channels, levels):
    params = coupled_parameters(np.random.default_rng(channels), (2,), channels, 3, levels)
    pixels = tfvae.CoupledLogisticMixture(**params)
    assert pixels.batch_shape == [2] and pixels.event_shape == [channels]
    colours = np.stack(np.meshgrid(*[np.arange(levels, dtype=np.float64)] * channels, indexing="ij"), -1)
    colours = colours.reshape(-1, channels)  # every colour, [levels ** channels, channels]
    total = np.exp(pixels.log_prob(colours[:, None, :]).numpy()).sum(axis=0)
    np.testing.assert_allclose(total, 1.0, rtol=1e-10)


def test_a_coupled_mixture_shifts_each_channel_by_the_channels_before_it():
    rng = np.random.default_rng(0)
    loc, scale = rng.uniform(60, 190, size=(3, 1)), rng.uniform(2, 9, size=(3, 1))
    coefficients = rng.uniform(-1, 1, size=(3, 3, 1))  # the upper triangle must be ignored
    pixel = tfvae.CoupledLogisticMixture(np.zeros(1), loc, scale, coefficients)
    x = np.array([200.0, 31.0, 117.0])
    u = x - 127.5
    shifted = loc[:, 0] + np.array(
        [0, coefficients[1, 0, 0] * u[0], coefficients[2, 0, 0] * u[0] + coefficients[2, 1, 0] * u[1]]
    )
    expected = discretized_logistic(tf.constant(shifted), tf.constant(scale[:, 0])).log_prob(x).numpy().sum()
    assert pixel.log_prob(x).numpy() == pytest.approx(expected, rel=1e-12)


def test_samples_of_a_coupled_mixture_follow_its_probabilities_and_its_mean():
    params = coupled_parameters(np.random.default_rng(3), (), 2, 2, 4)
    pixel = tfvae.CoupledLogisticMixture(**params)
    n = 40_000
    samples = pixel.sample(n, seed=(4, 5)).numpy().astype(int)  # [n, 2]
    counts = np.bincount(samples[:, 0] * 4 + samples[:, 1], minlength=16)
    colours = np.stack(np.meshgrid(np.arange(4.0), np.arange(4.0), indexing="ij"), -1).reshape(-1, 2)
    p = np.exp(pixel.log_prob(colours).numpy())
    # Every colour's frequency within 5 standard errors of its probability: drawing the
    # channels in the wrong order, or without the coupling, moves several far outside.
    np.testing.assert_array_less(np.abs(counts / n - p), 5 * np.sqrt(p * (1 - p) / n) + 1e-4)
    # Away from the edge levels the mean is exact: the samples' mean agrees within its error.
    rng = np.random.default_rng(6)
    inner = tfvae.CoupledLogisticMixture(
        rng.normal(size=(2,)),
        rng.uniform(90, 160, size=(3, 2)),
        rng.uniform(1, 4, size=(3, 2)),
        rng.uniform(-0.5, 0.5, size=(3, 3, 2)),
    )
    draws = inner.sample(n, seed=(7, 8)).numpy()
    np.testing.assert_array_less(np.abs(draws.mean(0) - inner.mean().numpy()), 5 * draws.std(0) / np.sqrt(n))


def test_a_coupled_likelihood_of_one_channel_is_the_uncoupled_mixture():
    params = tf.constant(np.random.default_rng(0).normal(size=(4, 3, 5, 1, 9)), tf.float32)  # K = 3: 3K per pixel
    x = np.random.default_rng(1).integers(0, 256, size=(4, 3, 5, 1)).astype("float32")
    coupled = tfvae.CoupledLogisticMixtureLikelihood((3, 5, 1), num_components=3)(params)
    mixture = DiscretizedLogisticMixtureLikelihood((3, 5, 1), num_components=3)(params)
    np.testing.assert_allclose(coupled.log_prob(x).numpy(), mixture.log_prob(x).numpy(), rtol=1e-6)
    np.testing.assert_allclose(coupled.mean().numpy(), mixture.mean().numpy(), rtol=1e-6)


def test_a_coupled_likelihood_needs_image_shaped_examples():
    with pytest.raises(tfvae.ConfigError, match=r"\(height, width, channels\); got \(3072,\)"):
        tfvae.CoupledLogisticMixtureLikelihood((3072,))


@pytest.mark.slow
def test_the_cli_trains_a_coupled_colour_model_that_round_trips_and_exports(tmp_path, capsys):
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(0)
    grey = load_digits().data[:300].reshape(300, 8, 8, 1) * 15
    # Colour images whose channels move together, as in photographs.
    images = np.clip(grey + rng.integers(-5, 6, size=(300, 8, 8, 3)), 0, 255).astype(np.uint8)
    data = str(tmp_path / "colour.npz")
    np.savez(data, train=images[:200], valid=images[200:250], test=images[250:])
    out = str(tmp_path / "run")
    argv = [
        "train",
        "--data",
        data,
        "--likelihood",
        "discretized_logistic_mixture_coupled",
        "--mixture-components",
        "2",
    ]
    argv += ["--arch", "conv", "--filters", "4,8", "--hidden-units", "16", "--latent-dim", "4", "--epochs", "2"]
    assert cli.main([*argv, "--batch-size", "50", "--out", out, "--quiet", "--no-pictures"]) == 0
    model = tfvae.training.load_run(out)
    assert isinstance(model.likelihood_layer, tfvae.CoupledLogisticMixtureLikelihood)
    assert model.decoder.output_shape == (None, 8, 8, 3, 2 * 5)
    test = images[250:].astype(np.float32)
    report = tfvae.evaluate(model, test, num_samples=20, seed=0)
    assert report["likelihood_of"] == "probability" and 0 < report["nll_bits_per_dim"] < 8
    samples = model.sample(4, seed=0).numpy()
    assert samples.shape == (4, 8, 8, 3) and 0 <= samples.min() and samples.max() <= 255
    path = str(tmp_path / "m.keras")
    model.save(path)
    np.testing.assert_array_equal(keras.models.load_model(path).elbo(test, seed=1), model.elbo(test, seed=1))
    result = tfvae.export(model, str(tmp_path / "exported"), "colour")
    import onnxruntime

    # The encoder reads x / 255 through Keras' Normalization; it runs on the levels alone.
    encoder = onnxruntime.InferenceSession(os.path.join(result.paths["encoder"], "model.onnx"))
    assert [i.name for i in encoder.get_inputs()] == ["x"]
    loc, scale = encoder.run(["loc", "scale"], {"x": test[:7]})
    np.testing.assert_allclose(loc, model.encode(test[:7]).mean().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scale, model.encode(test[:7]).stddev().numpy(), rtol=1e-5, atol=1e-5)

    session = onnxruntime.InferenceSession(os.path.join(result.paths["decoder"], "model.onnx"))
    z = rng.normal(size=(7, 4)).astype(np.float32)
    likelihood = model.decode(z)
    expected = {"mean": likelihood.mean(), **model.likelihood_layer.parameters_of(likelihood)}
    names = [o.name for o in session.get_outputs()]
    assert sorted(names) == ["coefficients", "loc", "logits", "mean", "scale"]
    for name, got in zip(names, session.run(names, {"z": z})):
        np.testing.assert_allclose(got, expected[name].numpy(), rtol=1e-5, atol=1e-5)
