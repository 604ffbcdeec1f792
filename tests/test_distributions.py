import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import BernoulliLikelihood, GaussianLikelihood, GaussianPosterior, StandardNormalPrior
from tfvae.distributions import reparameterized_sample


@pytest.mark.parametrize("covariance", ["diagonal", "full"])
def test_the_sample_of_noise_is_tfps_map_and_its_log_density_tfps_log_prob(covariance):
    # What an exported sampling encoder computes, written from the parameters, against TFP.
    layer = GaussianPosterior(4, covariance=covariance)
    params = tf.constant(np.random.default_rng(0).normal(size=(6, layer.num_params)), tf.float32)
    q = layer(params)
    noise = tf.constant(np.random.default_rng(1).standard_normal((6, 4)), tf.float32)
    z, log_q = layer.sample_of_noise(q, noise)
    np.testing.assert_allclose(z.numpy(), q.bijector.forward(noise).numpy(), atol=1e-5)
    np.testing.assert_allclose(log_q.numpy(), q.log_prob(tf.constant(z.numpy())).numpy(), atol=1e-4)


@pytest.mark.parametrize("covariance", ["diagonal", "full"])
def test_posterior_shapes_and_positive_scale(covariance):
    size = GaussianPosterior.params_size(4, covariance)
    assert size == (8 if covariance == "diagonal" else 4 + 10)
    params = tf.concat([tf.zeros([5, 4]), tf.fill([5, size - 4], -80.0)], axis=1)
    q = GaussianPosterior(4, covariance=covariance, scale_floor=1e-4)(params)
    assert q.batch_shape == [5] and q.event_shape == [4]
    assert q.sample(7, seed=tf.constant([1, 2])).shape == (7, 5, 4)
    scale = q.scale.to_dense().numpy()
    diagonal = np.diagonal(scale, axis1=-2, axis2=-1)
    np.testing.assert_allclose(diagonal, 1e-4, rtol=1e-3)  # the floor holds under extreme inputs
    assert np.all(np.triu(scale, 1) == 0)
    assert np.all(np.isfinite(q.log_prob(q.sample(seed=tf.constant([3, 4])))))


def test_bernoulli_log_prob_is_one_number_per_example_and_equals_cross_entropy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 2, 5)).astype(np.float32)
    x = (rng.random((2, 5)) > 0.5).astype(np.float32)
    p = BernoulliLikelihood((5,))(tf.constant(logits))
    assert p.batch_shape == [3, 2] and p.event_shape == [5]
    expected = (x * logits - np.logaddexp(0, logits)).sum(-1)
    np.testing.assert_allclose(p.log_prob(x).numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(p.mean().numpy(), 1 / (1 + np.exp(-logits)), rtol=1e-5)


def test_gaussian_likelihood_fixed_and_learned_scale():
    loc = tf.constant([[0.0, 1.0]])
    fixed = GaussianLikelihood((2,), scale=0.5)(loc)
    expected = -0.5 * ((np.array([1.0, 1.0]) - [0.0, 1.0]) / 0.5) ** 2 - np.log(0.5 * np.sqrt(2 * np.pi))
    np.testing.assert_allclose(fixed.log_prob([[1.0, 1.0]]).numpy(), [expected.sum()], rtol=1e-5)
    learned_layer = GaussianLikelihood((2,))
    assert len(learned_layer.trainable_weights) == 1
    np.testing.assert_allclose(learned_layer(loc).stddev().numpy(), 1.0 + 1e-3, rtol=1e-5)
    with pytest.raises(ValueError, match="positive"):
        GaussianLikelihood((2,), scale=-1.0)


def test_layers_round_trip_through_their_config():
    for layer in (
        GaussianPosterior(3, "full", scale_floor=1e-3),
        BernoulliLikelihood((8, 8, 1)),
        GaussianLikelihood((4,), scale=0.2),
        StandardNormalPrior(5),
    ):
        clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
        assert type(clone) is type(layer) and clone.get_config() == layer.get_config()


def test_invalid_arguments_name_the_value():
    with pytest.raises(ValueError, match="covariance"):
        GaussianPosterior(3, covariance="banded")
    with pytest.raises(ValueError, match="latent_dim"):
        GaussianPosterior(0)
    with pytest.raises(ValueError, match="event_shape"):
        BernoulliLikelihood(())


def test_full_covariance_map_is_fill_scale_tril_with_scaled_off_diagonals():
    layer = GaussianPosterior(5, covariance="full", scale_floor=1e-3)
    raw = np.random.default_rng(0).normal(scale=3.0, size=(6, 15)).astype(np.float32)
    q = layer(tf.concat([tf.zeros([6, 5]), raw], axis=1))
    scale_tril = q.scale.to_dense().numpy()
    np.testing.assert_allclose(scale_tril, layer.scale_tril_bijector(raw).numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(layer.scale_tril_bijector.inverse(scale_tril).numpy(), raw, rtol=1e-4, atol=1e-4)
    # TFP's FillScaleTriL, with the entries below the diagonal scaled by 1/sqrt(latent_dim).
    expected = tfp.bijectors.FillScaleTriL(diag_shift=1e-3)(raw).numpy()
    below = np.tril(np.ones((5, 5), bool), k=-1)
    expected[:, below] /= np.sqrt(5)
    np.testing.assert_allclose(scale_tril, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("covariance", ["diagonal", "full"])
def test_reparameterized_sample_is_loc_plus_scale_times_philox_noise(covariance):
    layer = GaussianPosterior(latent_dim=3, covariance=covariance)
    params = tf.constant(np.random.default_rng(0).normal(size=(4, layer.params_size(3, covariance))), tf.float32)
    seed = tf.constant([3, 7])

    def draw():
        return reparameterized_sample(layer(params), 5, seed)

    eager = draw()
    noise = tf.random.stateless_normal([5, 4, 3], seed=seed, alg="philox")
    posterior = layer(params)
    expected = posterior.loc + tf.linalg.matvec(posterior.scale.to_dense(), noise)
    assert eager.shape == (5, 4, 3)
    np.testing.assert_allclose(eager, expected, atol=1e-6)
    np.testing.assert_allclose(tf.function(draw)(), eager, atol=1e-6)
    xla = tf.function(draw, jit_compile=True)
    np.testing.assert_array_equal(xla(), xla())
