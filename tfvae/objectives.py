"""Every estimator, once: log weights, the KL, the ELBO, the IWAE bound and log p(x).

All of them start from `log_weight_terms`, so training, `VAE.elbo` and the
importance-sampled `VAE.log_likelihood` cannot drift apart.
"""

import math
from typing import NamedTuple

import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.errors import ConfigError

tfd = tfp.distributions


class LogWeightTerms(NamedTuple):
    """The three densities behind one importance weight, each `[num_samples, batch]`."""

    log_likelihood: tf.Tensor  # log p(x|z)
    log_prior: tf.Tensor  # log p(z)
    log_posterior: tf.Tensor  # log q(z|x)

    @property
    def log_weights(self):
        """log w = log p(x|z) + log p(z) - log q(z|x), `[num_samples, batch]`."""
        return self.log_likelihood + self.log_prior - self.log_posterior


def log_weight_terms(x, z, posterior, likelihood, prior):
    """Evaluates the log densities that make up the importance weights.

    Args:
      x: data, `[batch, *event_shape]`.
      z: samples from `posterior`, `[num_samples, batch, latent_dim]`.
      posterior: q(z|x), batch shape `[batch]`.
      likelihood: p(x|z) decoded from `z`, batch shape `[num_samples, batch]`.
      prior: p(z), no batch shape.

    Returns:
      `LogWeightTerms`, each `[num_samples, batch]`.
    """
    return LogWeightTerms(
        log_likelihood=likelihood.log_prob(x),
        log_prior=prior.log_prob(z),
        log_posterior=posterior.log_prob(z),
    )


def has_analytic_kl(posterior, prior):
    """Whether TFP has a closed-form KL(posterior || prior) registered."""
    try:
        tfd.kl_divergence(posterior, prior)
    except NotImplementedError:
        return False
    return True


def kl_divergence(posterior, prior, terms=None, analytic=True):
    """KL(q(z|x) || p(z)) per example, `[batch]`.

    In closed form when `analytic` and TFP registers one (diagonal and full-covariance
    Gaussians against a Gaussian prior); otherwise the Monte Carlo estimate
    mean over samples of log q(z|x) - log p(z), which needs `terms`.
    """
    if analytic:
        try:
            return tfd.kl_divergence(posterior, prior)
        except NotImplementedError:
            pass
    if terms is None:
        raise ConfigError(
            "No closed-form KL is registered for "
            f"{type(posterior).__name__} || {type(prior).__name__}: pass `terms` "
            "(from `log_weight_terms`) for the Monte Carlo estimate."
        )
    return tf.reduce_mean(terms.log_posterior - terms.log_prior, axis=0)


def conditional_kl(posterior, prior, log_posterior, log_prior, analytic=True):
    """KL per example of a stochastic layer below the top of a hierarchy, `[batch]`.

    q(z_l | z_>l, x) and p(z_l | z_>l) both have batch shape `[num_samples, batch]`
    (one pair per sample of the layers above). The KL of each pair in closed form
    where TFP has one (two Gaussians), averaged over those samples; otherwise the
    Monte Carlo mean of log q - log p at the samples of z_l.

    Args:
      posterior, prior: the layer's q and p, batch `[num_samples, batch]`.
      log_posterior, log_prior: their log densities at the sampled z_l, `[num_samples, batch]`.
      analytic: use the closed form where it exists.
    """
    if analytic:
        try:
            return tf.reduce_mean(tfd.kl_divergence(posterior, prior), axis=0)
        except NotImplementedError:
            pass
    return tf.reduce_mean(log_posterior - log_prior, axis=0)


def expected_log_likelihood(terms):
    """E_q[log p(x|z)] per example, `[batch]`: the Monte Carlo mean over the samples."""
    return tf.reduce_mean(terms.log_likelihood, axis=0)


def elbo_terms(terms, posterior, prior, analytic_kl=True):
    """The two parts of the ELBO per example.

    Returns:
      `(expected_log_likelihood, kl)`, each `[batch]`: the Monte Carlo mean of
      log p(x|z) over the samples, and KL(q(z|x) || p(z)). ELBO = first - second.
    """
    return expected_log_likelihood(terms), kl_divergence(posterior, prior, terms, analytic_kl)


def iwae_bound(log_weights):
    """The K-sample importance-weighted bound (Burda et al. 2016) per example.

    Args:
      log_weights: `[num_samples, batch]`.

    Returns:
      `[batch]`: logsumexp over the K samples minus log K. K = 1 gives a one-sample
      ELBO estimate; the bound tightens towards log p(x) as K grows.
    """
    count = tf.cast(tf.shape(log_weights)[0], log_weights.dtype)
    return tf.reduce_logsumexp(log_weights, axis=0) - tf.math.log(count)


def bits_per_dim(nats, dimensions):
    """A negative log-likelihood in nats per example as bits per dimension: nats / (D ln 2)."""
    return nats / (dimensions * math.log(2.0))


def combine_log_mean_exp(chunk_log_sum_exps, total_count):
    """log p(x) from per-chunk logsumexps of log weights: logsumexp over chunks - log K.

    Args:
      chunk_log_sum_exps: `[num_chunks, batch]`, each row a logsumexp over one chunk
        of samples.
      total_count: K, the number of samples over all chunks.
    """
    return tf.reduce_logsumexp(chunk_log_sum_exps, axis=0) - math.log(total_count)
