"""The closed-form KL against the textbook formula, and against Monte Carlo."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import GaussianPosterior, StandardNormalPrior, objectives

tfd = tfp.distributions


def numpy_gaussian_kl(mu1, cov1, mu2, cov2):
    """KL(N(mu1, cov1) || N(mu2, cov2)) = ½[log|Σ2|/|Σ1| − d + tr(Σ2⁻¹Σ1) + (μ2−μ1)ᵀΣ2⁻¹(μ2−μ1)]."""
    d = len(mu1)
    inv2 = np.linalg.inv(cov2)
    diff = mu2 - mu1
    _, logdet1 = np.linalg.slogdet(cov1)
    _, logdet2 = np.linalg.slogdet(cov2)
    return 0.5 * (logdet2 - logdet1 - d + np.trace(inv2 @ cov1) + diff @ inv2 @ diff)


def posterior_from(covariance, latent_dim=3, batch=4, seed=0):
    rng = np.random.default_rng(seed)
    size = GaussianPosterior.params_size(latent_dim, covariance)
    params = rng.normal(size=(batch, size)).astype(np.float64)
    return GaussianPosterior(latent_dim, covariance=covariance, dtype="float64")(tf.constant(params))


def covariance_of(q):
    return (q.covariance()).numpy()


@pytest.mark.parametrize("covariance", ["diagonal", "full"])
def test_closed_form_kl_against_standard_normal_matches_formula(covariance):
    q = posterior_from(covariance)
    p = StandardNormalPrior(3, dtype="float64").distribution()
    kl = objectives.kl_divergence(q, p).numpy()
    expected = [
        numpy_gaussian_kl(mu, cov, np.zeros(3), np.eye(3)) for mu, cov in zip(q.mean().numpy(), covariance_of(q))
    ]
    np.testing.assert_allclose(kl, expected, rtol=1e-10)
    if covariance == "full":  # a full posterior really has off-diagonal covariance
        assert np.abs(np.tril(covariance_of(q)[0], -1)).max() > 1e-2


def test_closed_form_kl_between_two_full_gaussians_matches_formula():
    q, p = posterior_from("full", seed=1), posterior_from("full", seed=2)
    kl = objectives.kl_divergence(q, p).numpy()
    expected = [
        numpy_gaussian_kl(m1, c1, m2, c2)
        for m1, c1, m2, c2 in zip(q.mean().numpy(), covariance_of(q), p.mean().numpy(), covariance_of(p))
    ]
    np.testing.assert_allclose(kl, expected, rtol=1e-10)


@pytest.mark.parametrize("covariance", ["diagonal", "full"])
def test_monte_carlo_kl_agrees_with_closed_form_within_its_standard_error(covariance):
    q = posterior_from(covariance)
    p = StandardNormalPrior(3, dtype="float64").distribution()
    num_samples = 20000
    z = q.sample(num_samples, seed=tf.constant([1, 2]))  # [num_samples, batch, latent_dim]
    log_ratio = (q.log_prob(z) - p.log_prob(z)).numpy()  # [num_samples, batch]
    estimate = log_ratio.mean(axis=0)
    stderr = log_ratio.std(axis=0, ddof=1) / np.sqrt(num_samples)
    exact = objectives.kl_divergence(q, p).numpy()
    assert np.all(np.abs(estimate - exact) < 4 * stderr), (estimate, exact, stderr)


def test_kl_falls_back_to_monte_carlo_without_a_closed_form():
    q = posterior_from("diagonal", latent_dim=2)
    mixture = tfd.MixtureSameFamily(
        tfd.Categorical(logits=tf.zeros(3, tf.float64)),
        tfd.MultivariateNormalDiag(loc=tf.constant([[-1.0, 0.0], [0.0, 0.0], [1.0, 1.0]], tf.float64)),
    )
    assert not objectives.has_analytic_kl(q, mixture)
    with pytest.raises(ValueError, match="Monte Carlo"):
        objectives.kl_divergence(q, mixture)
    z = q.sample(5000, seed=tf.constant([3, 4]))
    terms = objectives.LogWeightTerms(
        log_likelihood=tf.zeros_like(q.log_prob(z)), log_prior=mixture.log_prob(z), log_posterior=q.log_prob(z)
    )
    estimate = objectives.kl_divergence(q, mixture, terms).numpy()
    assert estimate.shape == (4,) and np.all(estimate > 0)  # a KL is non-negative
