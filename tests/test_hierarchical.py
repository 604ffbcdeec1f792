"""The hierarchical VAE: a closed-form log p(x), per-layer KLs, sampling, round trips, the CLI."""

import json
import os

import httpx
import keras
import numpy as np
import onnxruntime
import pytest
import tensorflow as tf
from helpers import Server
from scipy import special, stats

import tfvae
from tfvae import cli
from tfvae.seeding import ExampleNoise

pytestmark = pytest.mark.slow  # trainings, servers and subprocesses: `make test-fast` leaves them out


def linear_gaussian_hierarchy():
    """z_2 ~ N(0, I), z_1 | z_2 ~ N(A z_2 + b, S_1), x | z_1 ~ N(M z_1 + c, 0.25 I): a HierarchicalVAE
    whose generative networks are set to affine maps (the weights that would let x or the scale
    of z_1 depend on anything else are zero), with log p(x) a Gaussian in closed form."""
    model = tfvae.HierarchicalVAE(
        (3,),
        latent_dims=(2, 2),
        hidden_units=(4,),
        activation="linear",
        likelihood="gaussian",
        likelihood_scale=0.5,
        seed=0,
    )
    rng = np.random.default_rng(0)
    for weight in model.weights:
        if weight.dtype == "float32" and weight.trainable:
            weight.assign(rng.normal(0, 0.6, weight.shape).astype("float32"))
    first_decoder_layer = model.decoder.layers[1]  # Dense over [z_1, t_1]
    kernel = first_decoder_layer.kernel.numpy()
    kernel[2:] = 0.0  # x reads z_1 only
    first_decoder_layer.kernel.assign(kernel)
    prior_params = model.prior_params[0]
    kernel = prior_params.kernel.numpy()
    kernel[:, 2:] = 0.0  # the scale of z_1 | z_2 is a constant
    prior_params.kernel.assign(kernel)

    def affine(fn, dim):
        """(matrix, offset) of an affine map from its values at 0 and the unit vectors."""
        offset = fn(np.zeros((1, dim), "float32"))[0]
        return np.stack([fn(np.eye(dim, dtype="float32")[i : i + 1])[0] - offset for i in range(dim)], axis=1), offset

    def prior_loc(z_2):
        return model.conditional_priors[0](prior_params(model.top_down[0](z_2))).mean().numpy()

    def x_loc(z_1):
        return model.decode_mean(tf.concat([z_1, tf.zeros([1, 2])], axis=-1)).numpy()

    a, b = affine(prior_loc, 2)
    m, c = affine(x_loc, 2)
    s_1 = model.conditional_priors[0](prior_params(model.top_down[0](tf.zeros([1, 2])))).stddev().numpy()[0]
    covariance = m @ (a @ a.T + np.diag(s_1**2)) @ m.T + 0.25 * np.eye(3)
    covariance = (covariance + covariance.T) / 2  # symmetric to the last bit, as SciPy checks
    return model, stats.multivariate_normal(mean=m @ b + c, cov=covariance)


def test_log_likelihood_converges_to_the_closed_form_of_a_linear_gaussian_hierarchy():
    model, marginal = linear_gaussian_hierarchy()
    x = marginal.rvs(size=20, random_state=1).astype("float32")
    exact = marginal.logpdf(x)
    # Fit q alone (the encoder side) so importance sampling has a fair proposal.
    generative = {id(w) for layer in (model.decoder, *model.top_down, *model.prior_params) for w in layer.weights}
    inference = [w for w in model.trainable_weights if id(w) not in generative]
    optimizer = keras.optimizers.Adam(0.02)
    train = marginal.rvs(size=512, random_state=2).astype("float32")

    @tf.function
    def step(seed):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(model.elbo(train, num_samples=8, seed=seed))
        optimizer.apply(tape.gradient(loss, inference), inference)

    for index in range(1000):
        step(tf.constant([0, index]))
    elbo = model.elbo(x, num_samples=2000, seed=0).numpy()
    assert np.all(elbo < exact)  # a lower bound, example by example
    estimate = model.log_likelihood(x, num_samples=20000, seed=0)
    # Its Monte Carlo standard error per example, from the same draws of z (keyed by the
    # seed and each example): sd(w) / (mean(w) sqrt(K)), w the importance weights.
    log_weights = model._sampled_terms(x, None, 20000, ExampleNoise.of(0, x))[0].log_weights.numpy()  # [K, 20]
    np.testing.assert_allclose(estimate, special.logsumexp(log_weights, axis=0) - np.log(20000), atol=1e-5)
    weights = np.exp(log_weights - log_weights.max(axis=0))
    stderr = weights.std(axis=0) / (weights.mean(axis=0) * np.sqrt(len(weights)))
    # Within 4 standard errors of log p(x) each: a fixed tolerance (0.05) failed on one
    # machine's floating point, where the worst example's error was 0.051 nats.
    assert np.all(np.abs(estimate - exact) < 4 * stderr)
    assert np.abs(estimate - exact).mean() < (exact - elbo).mean() / 3


def test_per_layer_closed_form_kls_match_their_monte_carlo_estimates(digits):
    model = tfvae.HierarchicalVAE((64,), latent_dims=(4, 3), hidden_units=(32,), seed=0)
    model.compile()
    model.fit(digits.train[:256], epochs=1, batch_size=64, verbose=0)
    x = digits.valid[:8]
    analytic = [kl.numpy() for kl in model.layer_kls(x, num_samples=4000, seed=1)]
    model.analytic_kl = False  # eager calls read the switch each time
    monte_carlo = [kl.numpy() for kl in model.layer_kls(x, num_samples=4000, seed=1)]
    for closed, estimate in zip(analytic, monte_carlo):
        assert closed.shape == (8,)
        np.testing.assert_allclose(estimate, closed, atol=0.1, rtol=0.05)
    _, total = model.elbo_terms(x, num_samples=4000, seed=1)
    np.testing.assert_allclose(total.numpy(), sum(monte_carlo), rtol=1e-5)


@pytest.mark.parametrize(
    "posterior, conditional_layers",
    [
        pytest.param("diagonal", 0, id="diagonal", marks=pytest.mark.xla),
        pytest.param("iaf", 1, id="iaf-deep"),
        pytest.param(("iaf", "diagonal"), 0, id="iaf-below-a-gaussian-top"),
    ],
)
def test_a_hierarchy_trains_samples_and_round_trips_through_keras_files(
    digits, tmp_path, posterior, conditional_layers
):
    # Over an IAF q(z_2 | x) the VampPrior mixes the flow's base Gaussians.
    model = tfvae.HierarchicalVAE(
        (64,),
        latent_dims=(4, 3),
        hidden_units=(32,),
        posterior=posterior,
        prior=tfvae.VampPrior(3, num_components=10),
        conditional_layers=conditional_layers,
        seed=0,
    )
    # Each hidden layer inside p(z_1 | z_2) and q(z_1 | z_2, x) is one more network.
    assert len(model.prior_hidden) == len(model.posterior_hidden) == conditional_layers
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = model.fit(digits.train, epochs=2, batch_size=64, verbose=0).history
    assert history["loss"][1] < history["loss"][0]
    x = digits.test[:20]
    assert model.sample(5, seed=0).shape == (5, 64) and model.latent_code(x).shape == (20, 7)
    path = os.path.join(tmp_path, "hvae.keras")
    model.save(path)
    same = keras.models.load_model(path)
    assert same.latent_dims == (4, 3) and same.conditional_layers == conditional_layers
    expected = (posterior,) * 2 if isinstance(posterior, str) else posterior
    assert same.layer_posteriors == expected
    assert [layer.covariance for layer in (*same.lower_posteriors, same.posterior_layer)] == list(expected)
    np.testing.assert_array_equal(
        same.elbo(x, num_samples=2, seed=3).numpy(), model.elbo(x, num_samples=2, seed=3).numpy()
    )
    np.testing.assert_array_equal(same.sample(3, seed=4).numpy(), model.sample(3, seed=4).numpy())


@pytest.mark.parametrize("top_down", ["shared", "separate"])
def test_separate_top_down_inference_is_a_network_of_qs_own(top_down):
    """With the shared (ladder) state, p(z_1 | z_2)'s top-down network moves q(z_1 | z_2, x)
    too; with a separate one it moves p alone, and q has its own network of z_2."""
    model = tfvae.HierarchicalVAE((64,), latent_dims=(4, 3), hidden_units=(16,), top_down=top_down, seed=0)
    assert len(model.posterior_top_down) == (top_down == "separate")
    x = tf.constant(np.random.default_rng(0).random((5, 64)), tf.float32)
    z_2 = tf.constant(np.random.default_rng(1).standard_normal((5, 3)), tf.float32)
    features = model._encoding(x, None, False)

    def layer_below():
        prior, posterior = model._layer_below(0, z_2, features, False)
        return prior.mean().numpy(), posterior.mean().numpy()

    prior_before, posterior_before = layer_below()
    for weight in model.top_down[0].trainable_weights:
        weight.assign(weight + 0.5)
    prior_after, posterior_after = layer_below()
    assert np.abs(prior_after - prior_before).max() > 1e-3
    if top_down == "shared":
        assert np.abs(posterior_after - posterior_before).max() > 1e-3
    else:
        np.testing.assert_array_equal(posterior_after, posterior_before)
    with pytest.raises(tfvae.ConfigError, match=r"`top_down` must be one of \('shared', 'separate'\); got 'both'"):
        tfvae.HierarchicalVAE((64,), latent_dims=(4, 3), top_down="both")


def test_per_layer_posteriors_are_one_per_layer_bottom_first():
    with pytest.raises(tfvae.ConfigError, match=r"one per layer, bottom first.*3 layers.*\('iaf', 'iaf', 'diagonal'\)"):
        tfvae.HierarchicalVAE((64,), latent_dims=(4, 3, 2), posterior=("iaf", "diagonal"))
    # The CLI's spelling is the Python API's too.
    assert tfvae.HierarchicalVAE((64,), latent_dims=(4, 3), posterior="iaf,diagonal").layer_posteriors == (
        "iaf",
        "diagonal",
    )
    with pytest.raises(tfvae.ConfigError, match="one per layer, bottom first.*2 layers"):
        tfvae.HierarchicalVAE((64,), latent_dims=(4, 3), posterior="iaf,iaf,diagonal")


def test_the_exported_generator_maps_each_layers_noise_top_down_in_every_runtime(digits, tmp_path):
    model = tfvae.HierarchicalVAE(
        (64,), latent_dims=(4, 3), hidden_units=(32,), seed=0, prior=tfvae.VampPrior(3, num_components=5)
    )
    model.compile()
    model.fit(digits.train[:256], epochs=1, batch_size=64, verbose=0)
    noise = np.random.default_rng(0).standard_normal((6, 7)).astype("float32")  # [ε_1, z_2]
    # By hand: z_1 = loc(z_2) + scale(z_2) · ε_1, then E[x | z_1, z_2].
    prior_1 = model._layer_below(0, tf.constant(noise[:, 4:]), None, False)[0]
    z_1 = prior_1.mean() + prior_1.stddev() * noise[:, :4]
    expected = model.decode_mean(tf.concat([z_1, noise[:, 4:]], axis=-1)).numpy()
    np.testing.assert_allclose(model.decoder_outputs(tf.constant(noise))["mean"].numpy(), expected, rtol=1e-6)
    export_dir = str(tmp_path / "exported")
    result = tfvae.export(model, export_dir, "hvae")
    assert set(result.paths) == {"decoder", "encoder"} and result.manifest["latent_dim"] == 7
    assert result.manifest["parts"]["decoder"]["onnx_max_abs_difference"] <= 1e-5
    session = onnxruntime.InferenceSession(
        os.path.join(export_dir, "hvae", "1", "model.onnx"), providers=["CPUExecutionProvider"]
    )
    (onnx_mean,) = session.run(["mean"], {"z": noise})
    np.testing.assert_allclose(onnx_mean, expected, atol=1e-5)
    saved = tf.saved_model.load(os.path.join(export_dir, "hvae", "1"))
    np.testing.assert_allclose(
        saved.signatures["serving_default"](z=tf.constant(noise))["mean"].numpy(), expected, atol=1e-5
    )
    with np.load(os.path.join(export_dir, "hvae", "1", "prior.npz")) as prior:
        assert prior["loc"].shape == (5, 3)  # the VampPrior's components over z_2


def test_the_exported_encoder_samples_every_layer_of_q_from_the_noise_in_every_runtime(digits, tmp_path):
    model = tfvae.HierarchicalVAE(
        (64,), latent_dims=(4, 3), hidden_units=(32,), posterior=("iaf", "diagonal"), seed=0, conditional_layers=1
    )
    model.compile()
    model.fit(digits.train[:256], epochs=1, batch_size=64, verbose=0)
    x = digits.test[:6]
    noise = np.random.default_rng(1).standard_normal((6, 7)).astype("float32")  # [ε_1, ε_2]
    # By hand, top-down: z_2 = loc + scale · ε_2 from q(z_2 | x), then z_1 from q(z_1 | z_2, x)
    # for ε_1 (its IAF applied to its Gaussian's sample); log q from fresh tensors, so the
    # flow is inverted step by step rather than read from the sampling cache.
    features = model._encoding(tf.constant(x), None, False)
    top = model._posterior(x)
    z_2 = top.mean() + top.stddev() * noise[:, 4:]
    lower = model._layer_below(0, z_2, features, False)[1]
    z_1 = lower.bijector.forward(lower.distribution.mean() + lower.distribution.stddev() * noise[:, :4])
    expected_z = tf.concat([z_1, z_2], axis=-1).numpy()
    expected_log_q = (top.log_prob(tf.constant(z_2.numpy())) + lower.log_prob(tf.constant(z_1.numpy()))).numpy()
    export_dir = str(tmp_path / "exported")
    result = tfvae.export(model, export_dir, "hvae", parts=("encoder",))
    entry = result.manifest["parts"]["encoder"]
    assert [(t["name"], t["shape"]) for t in entry["inputs"]] == [("x", ["batch", 64]), ("noise", ["batch", 7])]
    assert sorted(t["name"] for t in entry["outputs"]) == ["log_posterior", "z"]
    assert entry["onnx_max_abs_difference"] <= 1e-5
    session = onnxruntime.InferenceSession(
        os.path.join(result.paths["encoder"], "model.onnx"), providers=["CPUExecutionProvider"]
    )
    z, log_q = session.run(["z", "log_posterior"], {"x": x, "noise": noise})
    np.testing.assert_allclose(z, expected_z, atol=1e-5)
    np.testing.assert_allclose(log_q, expected_log_q, atol=1e-4)
    saved = tf.saved_model.load(result.paths["encoder"]).signatures["serving_default"]
    outputs = saved(x=tf.constant(x), noise=tf.constant(noise))
    np.testing.assert_allclose(outputs["z"].numpy(), expected_z, atol=1e-5)
    np.testing.assert_allclose(outputs["log_posterior"].numpy(), expected_log_q, atol=1e-4)


def test_the_server_generates_from_an_exported_hierarchy(digits, tmp_path):
    model = tfvae.HierarchicalVAE((64,), latent_dims=(4, 3), hidden_units=(32,), seed=0)
    model.compile()
    model.fit(digits.train[:256], epochs=1, batch_size=64, verbose=0)
    export_dir = str(tmp_path / "repo")
    tfvae.export(model, export_dir, "hvae")
    x = digits.test[:3]
    epsilon = np.random.default_rng(3).standard_normal((3, 7)).astype("float32")
    server = Server(export_dir)
    try:
        body = httpx.post(f"{server.url}/v1/models/hvae:generate", json={"n": 8, "seed": 2}).json()
        # The encoder, as a client samples q(z|x) with it: x and its own noise in one request.
        inputs = [
            {"name": "x", "shape": [3, 64], "datatype": "FP32", "data": x.ravel().tolist()},
            {"name": "noise", "shape": [3, 7], "datatype": "FP32", "data": epsilon.ravel().tolist()},
        ]
        encoded = httpx.post(f"{server.url}/v2/models/hvae_encoder/infer", json={"inputs": inputs}).json()
    finally:
        assert server.stop(), server.output
    noise = np.asarray(body["z"], np.float32)
    assert noise.shape == (8, 7)
    np.testing.assert_allclose(
        np.asarray(body["samples"]), model.decoder_outputs(tf.constant(noise))["mean"].numpy(), atol=1e-5
    )
    outputs = {output["name"]: np.reshape(output["data"], output["shape"]) for output in encoded["outputs"]}
    expected = model.posterior_sample_outputs(tf.constant(x), tf.constant(epsilon))
    np.testing.assert_allclose(outputs["z"], expected["z"].numpy(), atol=1e-5)
    np.testing.assert_allclose(outputs["log_posterior"], expected["log_posterior"].numpy(), atol=1e-4)


def test_the_cli_trains_and_evaluates_a_hierarchy_per_layer(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert (
        cli.main(
            [
                "train",
                "--data",
                "digits",
                "--out",
                out,
                "--model",
                "hierarchical",
                "--latent-dims",
                "4,3",
                "--posterior",
                "iaf,diagonal",
                "--prior",
                "vamp",
                "--pseudo-inputs",
                "5",
                "--top-down",
                "separate",
                "--hidden-units",
                "32",
                "--epochs",
                "2",
                "--batch-size",
                "64",
                "--quiet",
                "--no-pictures",
            ]
        )
        == 0
    )
    assert tfvae.training.load_run(out).top_down_inference == "separate"
    assert cli.main(["evaluate", out, "--num-samples", "20", "--limit", "30", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    report = json.loads(lines[-1])
    assert len(report["kl_per_layer"]) == 2 and len(report["active_units_per_layer"]) == 2
    np.testing.assert_allclose(sum(report["kl_per_layer"]), report["kl"], rtol=1e-5)
    assert "z_1: kl" in lines[-2] and "z_2: kl" in lines[-2]
    exported = str(tmp_path / "exported")
    assert cli.main(["export", out, "--name", "hvae", "--out", exported]) == 0
    with open(os.path.join(exported, "hvae_encoder", "1", "manifest.json")) as f:
        manifest = json.load(f)
    encoder = manifest["parts"]["encoder"]
    assert manifest["posterior"] == "iaf,diagonal"  # every layer's family, not only the top's
    assert [t["name"] for t in encoder["inputs"]] == ["x", "noise"] and encoder["onnx_max_abs_difference"] <= 1e-5
    assert cli.main(["train", "--data", "digits", "--out", str(tmp_path / "bad"), "--model", "hierarchical"]) == 2
    assert "--latent-dims 40,40" in capsys.readouterr().err
    bad = ["train", "--data", "digits", "--out", str(tmp_path / "bad"), "--posterior"]
    assert cli.main([*bad, "iaf,diagonal", "--model", "hierarchical", "--latent-dims", "4,3,2"]) == 2
    assert "names 2 layers' families; give one, or one per layer of --latent-dims 4,3,2" in capsys.readouterr().err
    assert cli.main([*bad, "iaf,diagonal"]) == 2
    assert "(none: --model vae)" in capsys.readouterr().err
    assert cli.main(["train", "--data", "digits", "--out", str(tmp_path / "bad"), "--top-down", "separate"]) == 2
    assert "--top-down does nothing without --model hierarchical" in capsys.readouterr().err
