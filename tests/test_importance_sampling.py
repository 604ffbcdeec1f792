"""Importance sampling on the linear-Gaussian model, where log p(x) is exact.

x = W z + b + ε, z ~ N(0, I), ε ~ N(0, σ² I) gives p(x) = N(x; b, W Wᵀ + σ² I) and the
exact posterior N(M⁻¹Wᵀ(x − b), σ² M⁻¹) with M = WᵀW + σ² I.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from scipy.stats import multivariate_normal

import tfvae
from tfvae import seeding

tfb = tfp.bijectors
X_DIM, LATENT_DIM, SIGMA = 6, 2, 0.5


def make_linear_gaussian(seed=0):
    """Data from the linear-Gaussian model, its exact log p(x) and exact posterior."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(X_DIM, LATENT_DIM))
    b = rng.normal(size=X_DIM)
    z = rng.normal(size=(300, LATENT_DIM))
    x = (z @ w.T + b + SIGMA * rng.normal(size=(300, X_DIM))).astype(np.float32)
    log_px = multivariate_normal(b, w @ w.T + SIGMA**2 * np.eye(X_DIM)).logpdf(x)
    m = w.T @ w + SIGMA**2 * np.eye(LATENT_DIM)
    gain = np.linalg.solve(m, w.T)  # posterior mean = gain @ (x - b)
    posterior_cov = SIGMA**2 * np.linalg.inv(m)
    return dict(w=w, b=b, x=x, log_px=log_px, gain=gain, posterior_cov=posterior_cov)


@pytest.fixture(scope="module")
def linear_gaussian():
    return make_linear_gaussian()


def linear_model(lg, covariance, loc_shift=0.0, scale_factor=1.0):
    """A VAE whose decoder is x = Wz + b and whose encoder is a linear map to q(z|x)."""
    params_size = tfvae.GaussianPosterior.params_size(LATENT_DIM, covariance)
    encoder = keras.Sequential([keras.Input((X_DIM,)), keras.layers.Dense(params_size)])
    decoder = keras.Sequential([keras.Input((LATENT_DIM,)), keras.layers.Dense(X_DIM)])
    model = tfvae.VAE(
        (X_DIM,),
        LATENT_DIM,
        posterior=covariance,
        likelihood="gaussian",
        likelihood_scale=SIGMA,
        encoder=encoder,
        decoder=decoder,
    )
    decoder.set_weights([lg["w"].T, lg["b"]])
    kernel = np.zeros((X_DIM, params_size))
    kernel[:, :LATENT_DIM] = lg["gain"].T
    bias = np.zeros(params_size)
    bias[:LATENT_DIM] = -lg["gain"] @ lg["b"] + loc_shift
    cov = lg["posterior_cov"] * scale_factor**2
    floor = model.posterior_layer.scale_floor
    if covariance == "full":
        bias[LATENT_DIM:] = model.posterior_layer.scale_tril_bijector.inverse(
            np.linalg.cholesky(cov).astype(np.float32)
        ).numpy()
    else:
        bias[LATENT_DIM:] = tfb.Softplus().inverse((np.sqrt(np.diag(cov)) - floor).astype(np.float32)).numpy()
    encoder.set_weights([kernel, bias])
    return model


def test_exact_posterior_makes_every_estimator_exact(linear_gaussian):
    """With q(z|x) = p(z|x) every log weight equals log p(x): zero variance, no bias."""
    model = linear_model(linear_gaussian, "full")
    x, truth = linear_gaussian["x"][:50], linear_gaussian["log_px"][:50]
    np.testing.assert_allclose(model.log_likelihood(x, num_samples=4, seed=0), truth, atol=2e-3)
    model.analytic_kl = False  # the ELBO as a mean of log weights: exact too
    np.testing.assert_allclose(model.elbo(x, num_samples=4, seed=0).numpy(), truth, atol=2e-3)
    # With the closed-form KL only E_q[log p(x|z)] is estimated, so Monte Carlo noise
    # remains; its mean over samples is still log p(x).
    model.analytic_kl = True
    num_samples = 4000
    elbo = model.elbo(x, num_samples=num_samples, seed=0).numpy()
    np.testing.assert_allclose(elbo, truth, atol=0.05)


def test_estimate_converges_to_exact_log_likelihood_and_respects_jensen(linear_gaussian):
    model = linear_model(linear_gaussian, "diagonal", loc_shift=0.4, scale_factor=1.6)
    x, truth = linear_gaussian["x"], linear_gaussian["log_px"]

    def gap_and_stderr(estimates):
        gap = truth - estimates  # ≥ 0 in expectation for every K (Jensen)
        return gap.mean(), gap.std(ddof=1) / np.sqrt(len(gap))

    elbo = model.elbo(x, num_samples=100, seed=1).numpy()
    elbo_gap, elbo_se = gap_and_stderr(elbo)
    gaps, ses = {}, {}
    for k in (1, 10, 100, 3000):
        estimate = model.log_likelihood(x, num_samples=k, batch_size=100, sample_batch_size=500, seed=k)
        gap, se = gap_and_stderr(estimate)
        assert gap > -3 * se, f"K={k}: estimate above log p(x) by {-gap:.4f} (> 3 SE {se:.4f})"
        assert elbo_gap >= gap - 3 * max(se, elbo_se), f"K={k}: ELBO above the IS estimate"
        gaps[k], ses[k] = gap, se
    assert elbo_gap > 0.3, "the perturbed posterior should leave a visible ELBO gap"
    # The gap shrinks with K (4.7, 0.21 ± 0.04, then 0.00 ± 0.009 at K = 100 and
    # 0.000 ± 0.002 at K = 3000, which Monte Carlo error alone orders).
    assert gaps[1] > gaps[10] > max(gaps[100] + 3 * ses[100], gaps[3000] + 3 * ses[3000])
    assert gaps[3000] < 0.05 * gaps[1] and abs(gaps[3000]) < 0.02


def test_log_likelihood_is_repeatable_and_validates_arguments(linear_gaussian):
    model = linear_model(linear_gaussian, "diagonal", loc_shift=0.2)
    x = linear_gaussian["x"][:30]
    first = model.log_likelihood(x, num_samples=50, batch_size=7, sample_batch_size=16, seed=3)
    again = model.log_likelihood(x, num_samples=50, batch_size=7, sample_batch_size=16, seed=3)
    assert first.shape == (30,)
    np.testing.assert_array_equal(first, again)
    with pytest.raises(ValueError, match="num_samples"):
        model.log_likelihood(x, num_samples=0)


@pytest.mark.slow
def test_an_examples_estimates_do_not_depend_on_the_rows_beside_it_or_the_chunking(linear_gaussian):
    """Draws keyed by each example's values: a row scored alone, in another batch, at
    another place or with other sample chunks gets the same log p(x) and ELBO (draws keyed
    by the batch moved a row's score by up to 1 nat at K = 1000)."""
    model = linear_model(linear_gaussian, "diagonal", loc_shift=0.2)
    x = linear_gaussian["x"][:30]
    whole = model.log_likelihood(x, num_samples=300, batch_size=30, seed=3)
    for batch_size, sample_batch_size in ((7, 16), (1, 300), (30, 250), (4, 251)):
        np.testing.assert_allclose(
            model.log_likelihood(
                x, num_samples=300, batch_size=batch_size, sample_batch_size=sample_batch_size, seed=3
            ),
            whole,
            rtol=1e-6,
        )
    reordered = x[::-1].copy()
    np.testing.assert_allclose(model.log_likelihood(reordered, num_samples=300, seed=3), whole[::-1], rtol=1e-6)
    np.testing.assert_allclose(model.log_likelihood(x[5:6], num_samples=300, seed=3), whole[5:6], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(model.elbo(x[10:13], seed=3)), np.asarray(model.elbo(x, seed=3))[10:13])
    # Another seed draws anew.
    assert np.abs(model.log_likelihood(x, num_samples=300, seed=4) - whole).max() > 1e-4
    report = tfvae.evaluate(model, x, num_samples=300, batch_size=30, seed=3)
    rebatched = tfvae.evaluate(model, x, num_samples=300, batch_size=4, sample_batch_size=64, seed=3)
    for key in ("nll", "nll_stderr", "elbo", "kl", "reconstruction"):
        assert rebatched[key] == pytest.approx(report[key], rel=1e-6), key


def test_draws_keyed_by_example_are_standard_normal_and_independent_between_examples():
    rows = np.random.default_rng(0).normal(size=(64, 5)).astype(np.float32)
    noise = seeding.ExampleNoise.of(7, rows)
    draws = noise.normal([500, 64, 3], tf.float32).numpy()  # [num_samples, batch, size]
    assert draws.shape == (500, 64, 3)
    flat = draws.reshape(-1)
    assert abs(flat.mean()) < 4 / np.sqrt(flat.size) and abs(flat.std() - 1) < 0.01
    correlation = np.corrcoef(draws[:, :, 0].T)  # between examples, over the samples
    assert np.abs(correlation[np.triu_indices(64, 1)]).max() < 0.25  # 5.6 standard errors
    # Samples 120 to 389 of each example, drawn as one chunk, are those of the whole draw.
    chunk = noise._replace(first_sample=tf.constant(120)).normal([270, 64, 3], tf.float32).numpy()
    np.testing.assert_array_equal(chunk, draws[120:390])
    # Equal rows share their draws; a label is part of the key.
    pair = np.stack([rows[0], rows[0]])
    same = seeding.ExampleNoise.of(7, pair).normal([10, 2, 3], tf.float32).numpy()
    np.testing.assert_array_equal(same[:, 0], same[:, 1])
    labelled = seeding.ExampleNoise.of(7, pair, labels=np.array([0, 1])).normal([10, 2, 3], tf.float32).numpy()
    assert np.abs(labelled[:, 0] - labelled[:, 1]).max() > 0.1
