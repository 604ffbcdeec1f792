"""The IAF posterior: masks, log-determinants, the Gaussian it starts from, and a VAE with it."""

import os

import keras
import numpy as np
import onnxruntime
import pytest
import tensorflow as tf

import tfvae
from tfvae.distributions import reparameterized_sample
from tfvae.flows import AutoregressiveNetwork, IAFPosterior

LATENT = 4


def randomised(layer, seed=0, stddev=0.5):
    """`layer` with every weight drawn at random (a fresh IAF's networks output zeros)."""
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        weight.assign(rng.normal(0, stddev, weight.shape).astype("float32"))
    return layer


def posterior_and_params(steps=2, batch=3, seed=0):
    layer = IAFPosterior(LATENT, flow_steps=steps, context_size=3, hidden_units=(16, 16))
    params = tf.constant(np.random.default_rng(seed).normal(size=(batch, layer.num_params)), tf.float32)
    layer(params)
    return layer, params


@pytest.mark.parametrize("order", ["left-to-right", "right-to-left"])
def test_made_outputs_depend_only_on_earlier_dimensions(order):
    made = AutoregressiveNetwork(LATENT, hidden_units=(16, 16), context_size=2, input_order=order)
    z = tf.constant(np.random.default_rng(1).normal(size=(1, LATENT)), tf.float32)
    context = tf.ones((1, 2))
    made(z, context)
    randomised(made)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(z)
        shift, log_scale = made(z, context)
    for output in (shift, log_scale):
        jacobian = tape.jacobian(output, z).numpy()[0, :, 0, :]  # [output d, input i]
        allowed = np.tril(np.ones((LATENT, LATENT)), -1)  # output d sees inputs i < d
        if order == "right-to-left":
            allowed = allowed[::-1, ::-1]
        assert np.all(jacobian[allowed == 0] == 0)
        assert np.all(jacobian[allowed == 1] != 0)  # and every allowed path is used


def test_an_iaf_with_zero_networks_is_exactly_its_base_gaussian():
    layer, params = posterior_and_params()
    for step in layer.steps:
        for weight in step.weights:
            weight.assign(tf.zeros_like(weight))
    q, base = layer(params), layer.base(params)
    seed = tf.constant([3, 4])
    z, z0 = reparameterized_sample(q, 5, seed), reparameterized_sample(base, 5, seed)
    np.testing.assert_array_equal(z.numpy(), z0.numpy())
    np.testing.assert_array_equal(q.log_prob(z).numpy(), base.log_prob(z0).numpy())


def test_log_q_is_the_base_density_minus_the_log_determinant_from_autodiff():
    layer, params = posterior_and_params()
    randomised(layer)
    q, base = layer(params), layer.base(params)
    z0 = reparameterized_sample(base, 1, tf.constant([0, 7]))[0]  # [batch, latent]
    with tf.GradientTape() as tape:
        tape.watch(z0)
        z = q.bijector.forward(z0)
    jacobian = tape.batch_jacobian(z, z0)  # [batch, latent, latent]
    log_det = tf.linalg.slogdet(jacobian)[1]
    expected = base.log_prob(z0) - log_det
    np.testing.assert_allclose(q.log_prob(z).numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)
    # The same density without TFP's cache: the flow inverted dimension by dimension.
    np.testing.assert_allclose(q.log_prob(tf.identity(z) + 0.0).numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)


def test_one_step_has_a_triangular_jacobian():
    layer, params = posterior_and_params(steps=1)
    randomised(layer)
    z0 = tf.constant(np.random.default_rng(2).normal(size=(3, LATENT)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(z0)
        z = layer(params).bijector.forward(z0)
    jacobian = tape.batch_jacobian(z, z0).numpy()
    assert np.all(np.triu(jacobian, 1) == 0) and np.all(np.diagonal(jacobian, axis1=1, axis2=2) != 0)


@pytest.mark.slow
@pytest.mark.xla
def test_a_vae_with_an_iaf_posterior_trains_bounds_log_p_and_round_trips(digits, tmp_path):
    vae = tfvae.VAE((64,), 4, posterior="iaf", flow_steps=2, hidden_units=(32,), seed=0)
    vae.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = vae.fit(digits.train, epochs=3, batch_size=64, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    flows = [layer for layer in vae.posterior_layer.steps for layer in layer.weights]
    assert any(np.abs(w.numpy()).max() > 0 for w in flows)  # the flow learned something
    x = digits.test[:50]
    elbo = vae.elbo(x, num_samples=200, seed=0).numpy()
    log_px = vae.log_likelihood(x, num_samples=200, seed=0)
    assert np.all(log_px >= elbo - 1e-3) and (log_px - elbo).mean() > 0.05
    path = os.path.join(tmp_path, "iaf.keras")
    vae.save(path)
    same = keras.models.load_model(path)
    assert same.posterior_layer.flow_steps == 2
    np.testing.assert_array_equal(
        same.elbo(x, num_samples=3, seed=1).numpy(), vae.elbo(x, num_samples=3, seed=1).numpy()
    )
    # An IAF's q has no Gaussian parameters: the exported encoder maps x and N(0, I) noise
    # to the sample of q(z|x) it gives, and that sample's log density.
    result = tfvae.export(vae, str(tmp_path / "exported"), "iaf")
    assert set(result.paths) == {"decoder", "encoder"} and result.manifest["posterior"] == "iaf"
    encoder = result.manifest["parts"]["encoder"]
    assert [t["name"] for t in encoder["inputs"]] == ["x", "noise"] and encoder["inputs"][1]["shape"] == ["batch", 4]
    assert encoder["onnx_max_abs_difference"] <= 1e-5
    noise = np.random.default_rng(2).standard_normal((8, 4)).astype("float32")
    session = onnxruntime.InferenceSession(
        os.path.join(result.paths["encoder"], "model.onnx"), providers=["CPUExecutionProvider"]
    )
    z, log_q = session.run(["z", "log_posterior"], {"x": x[:8], "noise": noise})
    posterior = vae.encode(x[:8])
    base = posterior.distribution  # the encoder's diagonal Gaussian, before the flow
    np.testing.assert_allclose(z, posterior.bijector.forward(base.mean() + base.stddev() * noise).numpy(), atol=1e-5)
    # A fresh tensor: TFP inverts the flow step by step, not from the sampling cache.
    np.testing.assert_allclose(log_q, posterior.log_prob(tf.constant(z)).numpy(), atol=1e-4)
    with pytest.raises(tfvae.ExportError, match=r"posterior_sample_outputs\(x, noise\)"):
        vae.encoder_outputs(x[:8])
    saved = tf.saved_model.load(result.paths["encoder"]).signatures["serving_default"]
    np.testing.assert_allclose(saved(x=tf.constant(x[:8]), noise=tf.constant(noise))["z"].numpy(), z, atol=1e-5)


def test_free_bits_floor_the_trained_kl_but_not_the_reported_loss(digits):
    x = digits.train[:128]
    vae = tfvae.VAE((64,), 4, hidden_units=(32,), seed=0, free_bits=1e6)
    objective, metrics = vae._objective_and_metrics(tf.constant(x), None, training=False)
    # With the floor far above the KL, the objective is reconstruction + the floor.
    np.testing.assert_allclose(objective.numpy(), metrics["reconstruction"].numpy() + 1e6, rtol=1e-6)
    np.testing.assert_allclose(metrics["loss"].numpy(), (metrics["reconstruction"] + metrics["kl"]).numpy(), rtol=1e-6)
    with pytest.raises(tfvae.ConfigError, match="ELBO objective only"):
        tfvae.VAE((64,), 4, free_bits=1.0, objective="iwae")
