"""The model family beside the VAE: ConditionalVAE, Autoencoder and the VampPrior."""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from helpers import dropout_rates
from scipy.special import logsumexp

import tfvae
from tfvae import objectives
from tfvae.priors import DiagonalGaussianMixture

tfd = tfp.distributions


def round_trip(model, tmp_path):
    path = str(tmp_path / f"{model.name}.keras")
    model.save(path)
    return keras.models.load_model(path)  # no custom_objects: registration is enough


def vamp_vae(components=5, latent_dim=3):
    model = tfvae.VAE(
        (64,), latent_dim, hidden_units=(32,), seed=0, prior=tfvae.VampPrior(latent_dim, num_components=components)
    )
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    return model


def conditional_vae(**kwargs):
    model = tfvae.ConditionalVAE(input_shape=(64,), num_classes=10, latent_dim=4, hidden_units=(128,), seed=0, **kwargs)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    return model


# VampPrior


def uniform_gaussian_mixture_log_prob(z, loc, scale):
    """log (1/K) Σ_k N(z; loc_k, diag(scale_k²)) in NumPy: z `[n, d]`, loc and scale `[K, d]`."""
    log_normal = (
        -0.5 * (((z[:, None] - loc[None]) / scale[None]) ** 2).sum(-1)
        - np.log(scale).sum(-1)[None]
        - 0.5 * z.shape[-1] * np.log(2 * np.pi)
    )  # [n, K]
    return logsumexp(log_normal, axis=1) - np.log(len(loc))


def test_vamp_prior_log_prob_is_the_uniform_mixture_of_posteriors_at_the_pseudo_inputs(digits):
    model = vamp_vae()
    model.fit(digits.train[:256], epochs=1, batch_size=64, verbose=0)  # move the pseudo-inputs off their start
    z = np.random.default_rng(0).normal(size=(7, 3)).astype(np.float32)
    components = model.encode(model.prior_layer.pseudo_inputs)
    loc, scale = components.mean().numpy(), components.stddev().numpy()  # [5, 3] each
    by_hand = uniform_gaussian_mixture_log_prob(z, loc, scale)
    np.testing.assert_allclose(model.prior.log_prob(z).numpy(), by_hand, rtol=1e-5, atol=1e-5)


def test_a_vamp_prior_under_an_iaf_mixes_the_flows_base_gaussians(digits):
    model = tfvae.VAE((64,), 3, hidden_units=(32,), seed=0, posterior="iaf", prior=tfvae.VampPrior(3, num_components=5))
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = model.fit(digits.train[:256], epochs=2, batch_size=64, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    u = model.prior_layer.pseudo_inputs
    params = model.encoder(u).numpy()  # [5, loc | raw scale | context]
    loc, scale = params[:, :3], np.logaddexp(0.0, params[:, 3:6]) + 1e-4  # softplus + the scale floor
    z = np.random.default_rng(0).normal(size=(7, 3)).astype(np.float32)
    np.testing.assert_allclose(
        model.prior.log_prob(z).numpy(), uniform_gaussian_mixture_log_prob(z, loc, scale), rtol=1e-5, atol=1e-5
    )
    # Training moved the flow off the identity, so its posterior is no longer its base Gaussian.
    posterior = model.encode(u)
    draws = posterior.sample(4, seed=[0, 1])  # [4, 5, 3]
    base = tfd.MultivariateNormalDiag(loc, scale)
    assert np.abs(posterior.log_prob(draws).numpy() - base.log_prob(draws).numpy()).max() > 1e-3
    # An export's servers draw z from the same mixture.
    components = model.prior_layer.mixture_components()
    np.testing.assert_allclose(components["loc"], loc, rtol=1e-6)
    np.testing.assert_allclose(components["scale"], scale, rtol=1e-6)


@pytest.mark.slow
def test_vamp_prior_trains_with_a_monte_carlo_kl_and_keeps_pseudo_inputs_in_range(digits):
    model = vamp_vae(components=10)
    posterior = model.encode(digits.valid[:4])
    assert not objectives.has_analytic_kl(posterior, model.prior)
    history = model.fit(digits.train, epochs=4, batch_size=64, verbose=0).history
    assert history["loss"][-1] < history["loss"][0] - 5.0
    pseudo_inputs = model.prior_layer.pseudo_inputs.numpy()
    assert pseudo_inputs.shape == (10, 64) and pseudo_inputs.min() >= 0.0 and pseudo_inputs.max() <= 1.0
    report = tfvae.evaluate(model, digits.test[:40], num_samples=200)
    assert report["nll"] <= -report["elbo"] + 3 * report["nll_stderr"]


@pytest.mark.parametrize(
    "likelihood, loc, scale, clipped",
    [
        ("bernoulli", 0.0, 1.0, True),  # x in [0, 1], as the paper
        ("discretized_logistic", 0.0, 255.0, True),  # 8-bit levels, read as x / 255
        (tfvae.GaussianLikelihood((64,), data_loc=np.full(64, 40.0), data_scale=np.full(64, 8.0)), 40.0, 8.0, False),
    ],
    ids=["unit-range", "8-bit", "standardised-table"],
)
def test_vamp_pseudo_inputs_live_where_the_encoder_reads_the_data(likelihood, loc, scale, clipped):
    model = tfvae.VAE((64,), 2, hidden_units=(8,), likelihood=likelihood, prior=tfvae.VampPrior(2, num_components=400))
    prior = model.prior_layer
    start = prior.pseudo_inputs.numpy()
    # The paper's start, N(0.05, 0.01²) in the encoder's units, lands on the data's scale.
    np.testing.assert_allclose(start.mean(), loc + 0.05 * scale, rtol=1e-2)
    np.testing.assert_allclose(start.std(), 0.01 * scale, rtol=5e-2)
    prior.raw_pseudo_inputs.assign(np.tile(np.linspace(-2.0, 3.0, 64, dtype=np.float32), (400, 1)))
    u = prior.pseudo_inputs.numpy()[0]
    expected = loc + scale * (np.clip(np.linspace(-2.0, 3.0, 64), 0.0, 1.0) if clipped else np.linspace(-2.0, 3.0, 64))
    np.testing.assert_allclose(u, expected, rtol=1e-5, atol=1e-5)


def test_importance_sampling_steps_take_as_many_samples_as_fit_then_examples():
    """A VampPrior's log density holds [samples, batch, components] float64 values, a
    likelihood its values per sample (15 per dimension for a 5-logistic mixture)."""
    budget = 64 * 2**20
    examples, samples = vamp_vae(components=500, latent_dim=40)._step_sizes(5000, 100, None, 64)
    assert samples == 1000 and examples * samples * 500 * 8 <= budget < (examples + 1) * samples * 500 * 8
    small = tfvae.VAE((64,), 40, hidden_units=(8,))
    assert small._step_sizes(5000, 100, None, 1024) == (100, 1000)  # samples capped, every example
    assert small._step_sizes(20, 100, None, 1024) == (100, 20)
    colour = tfvae.VAE(
        (3072,), 8, hidden_units=(8,), likelihood="discretized_logistic_mixture", image_shape=(32, 32, 3)
    )
    examples, samples = colour._step_sizes(1000, 100, None, 1024)
    assert samples == 1000 and examples * samples * 3072 * 15 * 16 <= 1024 * 2**20 and examples == 1
    assert colour._step_sizes(1000, 100, 10, 1024) == (100, 10)  # a given chunk of samples: examples fill the rest
    # A PixelCNN's step holds its head's values per sample: K = 1000 takes 9 steps per example.
    pixels = tfvae.VAE((32, 32, 3), 8, arch="conv", hidden_units=(8,), likelihood="pixelcnn_logistic_mixture")
    per_sample = 16 * 32 * 32 * (64 + 3 * 25)  # the head's 64 units, the coupled mixture's 25 per channel
    assert pixels._step_sizes(1000, 100, None, 256) == (1, 256 * 2**20 // per_sample) == (1, 117)
    with pytest.raises(tfvae.ConfigError, match="memory_budget_mib"):
        colour.log_likelihood(np.zeros((1, 3072), "float32"), memory_budget_mib=0)


def test_diagonal_gaussian_mixture_log_prob_matches_tfp_mixture_same_family():
    """The matmul form of the mixture density equals TFP's, even for small scales far from z."""
    rng = np.random.default_rng(0)
    loc = rng.normal(size=(50, 6)).astype(np.float32)
    scale = rng.uniform(0.01, 2.0, size=(50, 6)).astype(np.float32)
    components = tfd.MultivariateNormalDiag(loc, scale)
    mixture = tfd.Categorical(logits=rng.normal(size=50).astype(np.float32))
    z = np.concatenate([rng.normal(scale=3.0, size=(40, 6)), loc[:10] + 0.01]).astype(np.float32)[:, None]
    fast = DiagonalGaussianMixture(mixture, components).log_prob(z).numpy()
    reference = tfd.MixtureSameFamily(mixture, components).log_prob(z).numpy()
    np.testing.assert_allclose(fast, reference, rtol=1e-5, atol=1e-4)
    assert fast.shape == (50, 1)


# ConditionalVAE


@pytest.mark.slow
def test_conditional_generation_follows_the_labels(digits):
    """A classifier trained on real labelled digits names the class of generated ones.

    Logistic regression scores 93% on the real test digits; chance is 10%. Samples
    that follow their labels should score near the real digits; we ask for 80%
    (200 samples: if they ignored the labels, 80% would be > 20 binomial SDs away).
    """
    from sklearn.linear_model import LogisticRegression

    classifier = LogisticRegression(max_iter=2000).fit(digits.train, digits.labels["train"])
    assert classifier.score(digits.test, digits.labels["test"]) > 0.9
    model = conditional_vae()
    model.fit((digits.train, digits.labels["train"]), epochs=30, batch_size=64, verbose=0)
    labels = np.repeat(np.arange(10), 20)
    samples = model.sample(len(labels), labels=labels, seed=1).numpy()
    accuracy = classifier.score(samples, labels)
    assert accuracy >= 0.8, accuracy
    flipped = model.sample(len(labels), labels=(labels + 1) % 10, seed=1).numpy()
    assert classifier.score(flipped, labels) < 0.3  # the label, not the noise, sets the class


@pytest.mark.slow
def test_conditional_vae_takes_each_form_of_labelled_data_and_round_trips(digits, tmp_path):
    x, y = digits.train[:256], digits.labels["train"][:256]
    model = conditional_vae()
    first = model.fit((x, y), epochs=1, batch_size=64, verbose=0).history["loss"][0]
    second = model.fit(
        x, y, epochs=1, batch_size=64, verbose=0, validation_data=(digits.valid, digits.labels["valid"])
    ).history
    assert second["loss"][0] < first and "val_loss" in second
    model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(64), epochs=1, verbose=0, shuffle=False)
    loaded = round_trip(model, tmp_path)
    labels = np.arange(10)
    np.testing.assert_array_equal(
        loaded.sample(10, labels=labels, seed=3).numpy(), model.sample(10, labels=labels, seed=3).numpy()
    )
    np.testing.assert_array_equal(
        loaded.reconstruct(x[:8], labels=y[:8]).numpy(), model.reconstruct(x[:8], labels=y[:8]).numpy()
    )
    np.testing.assert_array_equal(
        loaded.encode(x[:8], labels=y[:8]).mean().numpy(), model.encode(x[:8], labels=y[:8]).mean().numpy()
    )
    log_px_given_y = model.log_likelihood(x[:20], labels=y[:20], num_samples=100, seed=0)
    assert np.all(log_px_given_y >= model.elbo(x[:20], labels=y[:20], num_samples=100, seed=0).numpy() - 1.0)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, x: m.sample(3, labels=None), "pass `labels`"),
        (lambda m, x: m.sample(3, labels=[0, 1]), "1-D array of 3"),
        (lambda m, x: m.sample(2, labels=[0, 10]), r"in \[0, 10\)"),
        (lambda m, x: m.sample(2, labels=[0.5, 1.0]), "integer class ids"),
        (lambda m, x: m.encode(x[:4], labels=[-1, 0, 0, 0]), r"in \[0, 10\)"),
        (lambda m, x: m.fit(x[:4], np.array([0, 1, 2, 12]), verbose=0), r"range \[0, 12\]"),
        (lambda m, x: m.fit(x[:4], verbose=0), r"\(x, labels\) pairs"),
        (lambda m, x: m.predict(x[:4], verbose=0), r"conditional: predict takes \(x, labels\)"),
        (lambda m, x: m(x[:4]), r"conditional: call takes \(x, labels\)"),
    ],
)
def test_bad_labels_say_what_to_fix(digits, call, message):
    with pytest.raises(tfvae.ConfigError, match=message):
        call(conditional_vae(), digits.train)


def test_an_unconditional_vae_refuses_labels():
    with pytest.raises(tfvae.ConfigError, match="not conditional"):
        tfvae.VAE((64,), 2, hidden_units=(8,)).sample(2, labels=[0, 1])


def test_a_conditional_vae_refuses_a_vamp_prior():
    with pytest.raises(ValueError, match="no labels"):
        tfvae.ConditionalVAE((64,), 10, 3, prior=tfvae.VampPrior(3, num_components=4))


def test_a_vamp_prior_outside_a_model_says_how_to_use_it():
    prior = tfvae.VampPrior(3, num_components=4)  # no encoder to place its components
    for use in (prior.distribution, prior.mixture_components):
        with pytest.raises(tfvae.ConfigError, match=r"pass it as VAE\(prior=\.\.\.\)"):
            use()


# Autoencoder


def test_autoencoder_refuses_to_sample_and_its_reconstruction_loss_falls(digits, tmp_path):
    model = tfvae.Autoencoder((64,), 4, hidden_units=(32,))
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    with pytest.raises(tfvae.ConfigError, match="no prior p\\(z\\) to draw codes from"):
        model.sample(4)
    before = float(np.mean(model.reconstruction_loss(digits.valid).numpy()))
    history = model.fit(digits.train, epochs=5, batch_size=64, verbose=0, validation_data=(digits.valid,)).history
    after = float(np.mean(model.reconstruction_loss(digits.valid).numpy()))
    assert after < before - 10.0 and history["val_loss"][-1] == pytest.approx(after, rel=1e-4)
    assert model.encode(digits.valid[:5]).shape == (5, 4)
    loaded = round_trip(model, tmp_path)
    np.testing.assert_array_equal(loaded.reconstruct(digits.valid).numpy(), model.reconstruct(digits.valid).numpy())
    with pytest.raises(tfvae.ConfigError, match="needs a VAE"):
        tfvae.evaluate(model, digits.valid)


@pytest.mark.slow
def test_vamp_prior_vae_round_trips_through_keras_files(digits, tmp_path):
    model = vamp_vae()
    model.fit(digits.train[:256], epochs=1, batch_size=64, verbose=0)
    loaded = round_trip(model, tmp_path)
    assert isinstance(loaded.prior_layer, tfvae.VampPrior)
    np.testing.assert_array_equal(loaded.prior_layer.pseudo_inputs.numpy(), model.prior_layer.pseudo_inputs.numpy())
    z = np.random.default_rng(1).normal(size=(6, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.prior.log_prob(z).numpy(), model.prior.log_prob(z).numpy())
    np.testing.assert_array_equal(loaded.sample(5, seed=2).numpy(), model.sample(5, seed=2).numpy())


def test_gated_dense_layers_gate_a_linear_map():
    layer = tfvae.GatedDense(3)
    x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    layer(x)
    kernel, bias = (w.numpy() for w in layer.projection.weights)
    linear, gate = np.split(x @ kernel + bias, 2, axis=-1)
    np.testing.assert_allclose(layer(x).numpy(), linear / (1 + np.exp(-gate)), rtol=1e-5, atol=1e-6)
    model = tfvae.VAE((64,), 2, arch="gated", hidden_units=(8,), activation="linear")
    assert any(isinstance(layer, tfvae.GatedDense) for layer in model.encoder.layers)


def test_dropout_after_a_layer_drops_its_outputs_in_training_only():
    layer = tfvae.DropoutAfter(keras.layers.Dense(400), rate=0.25)
    x = np.random.default_rng(0).normal(size=(8, 5)).astype(np.float32)
    whole = layer(x, training=False).numpy()
    np.testing.assert_array_equal(whole, layer.layer(x).numpy())
    dropped = layer(x, training=True).numpy()
    kept = dropped != 0
    np.testing.assert_allclose(dropped[kept], whole[kept] / 0.75, rtol=1e-6)
    # 3,200 outputs, each dropped with probability 1/4: 800 ± 24.5 (one standard deviation).
    assert abs((~kept).sum() - 800) < 100


def test_a_vae_with_dropout_evaluates_its_whole_network_and_round_trips(digits, tmp_path):
    model = tfvae.VAE((64,), 2, arch="gated", hidden_units=(16,), dropout=0.5, seed=0)
    hidden = [layer for layer in model.encoder.layers if isinstance(layer, tfvae.DropoutAfter)]
    assert len(hidden) == 1 and isinstance(hidden[0].layer, tfvae.GatedDense) and hidden[0].rate == 0.5
    model.compile()
    model.fit(digits.train[:256], epochs=1, batch_size=64, verbose=0)
    elbo = model.elbo(digits.test[:32], seed=1).numpy()
    np.testing.assert_array_equal(model.elbo(digits.test[:32], seed=1).numpy(), elbo)  # no dropout outside training
    loaded = round_trip(model, tmp_path)
    assert loaded.network_config.dropout == 0.5
    np.testing.assert_array_equal(loaded.elbo(digits.test[:32], seed=1).numpy(), elbo)
    with pytest.raises(tfvae.ConfigError, match=r"`dropout` must be a rate in \[0, 1\)"):
        tfvae.VAE((64,), 2, dropout=1.0)
    with pytest.raises(tfvae.ConfigError, match="`dropout` is for the MLPs"):
        tfvae.VAE((64,), 2, arch="conv", filters=(4,), dropout=0.1)


@pytest.mark.parametrize("cls", [tfvae.VAE, tfvae.HierarchicalVAE, tfvae.Autoencoder])
def test_decoder_dropout_drops_in_the_decoder_alone_and_round_trips(cls, tmp_path):
    sizes = {"latent_dims": (2, 2)} if cls is tfvae.HierarchicalVAE else {"latent_dim": 2}
    model = cls((64,), **sizes, arch="gated", hidden_units=(16, 8), decoder_dropout=0.5)
    assert (dropout_rates(model.encoder), dropout_rates(model.decoder)) == ([], [0.5, 0.5])
    x = np.random.default_rng(0).uniform(size=(64, 64)).astype(np.float32)
    np.testing.assert_array_equal(model.encoder(x, training=True), model.encoder(x, training=False))
    z = np.random.default_rng(1).normal(size=(64, model.decoder.input_shape[-1])).astype(np.float32)
    assert not np.array_equal(model.decoder(z, training=True), model.decoder(z, training=False))
    loaded = round_trip(model, tmp_path)
    assert (loaded.network_config.dropout, loaded.network_config.decoder_dropout) == (0.0, 0.5)
    assert (dropout_rates(loaded.encoder), dropout_rates(loaded.decoder)) == ([], [0.5, 0.5])
    # Given both, the decoder takes its own rate (0: none) and the rest `dropout`.
    both = cls((64,), **sizes, arch="gated", hidden_units=(16, 8), dropout=0.2, decoder_dropout=0.0)
    assert (dropout_rates(both.encoder), dropout_rates(both.decoder)) == ([0.2, 0.2], [])
    with pytest.raises(tfvae.ConfigError, match=r"`decoder_dropout` must be a rate in \[0, 1\)"):
        cls((64,), **sizes, decoder_dropout=1.0)


def test_every_model_shares_one_signature_with_labels_by_keyword(digits):
    methods = ("encode", "decode", "reconstruct", "sample", "latent_code", "decode_mean")
    for cls in (tfvae.ConditionalVAE, tfvae.HierarchicalVAE, tfvae.Autoencoder):
        for name in methods:
            assert inspect.signature(getattr(cls, name)) == inspect.signature(getattr(tfvae.VAE, name)), (cls, name)
    for name in ("elbo", "elbo_terms", "log_likelihood"):
        assert inspect.signature(getattr(tfvae.ConditionalVAE, name)) == inspect.signature(getattr(tfvae.VAE, name))
    # Positional labels, once ConditionalVAE's own convention, cannot land in another argument.
    model, x, y = conditional_vae(), digits.train[:4], digits.labels["train"][:4]
    with pytest.raises(TypeError):
        model.encode(x, y)
    with pytest.raises(TypeError):
        model.log_likelihood(x, y)
