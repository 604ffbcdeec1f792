"""The posterior families q(z|x) by name: the one place `VAE`, the CLI and configs look them up."""

from tfvae.distributions import COVARIANCES, GaussianPosterior
from tfvae.errors import ConfigError
from tfvae.flows import IAFPosterior

POSTERIORS = (*COVARIANCES, "iaf")


def get_posterior(posterior, latent_dim, flow_steps=2):
    """The posterior layer for a family name.

    Args:
      posterior: "diagonal" or "full" (a `GaussianPosterior` of that covariance), or
        "iaf" (an `IAFPosterior` with `flow_steps` steps).
      latent_dim: size of z.
      flow_steps: IAF steps (read for "iaf" only).

    Returns:
      A layer whose `num_params` is the encoder output size it needs.
    """
    if posterior == "iaf":
        return IAFPosterior(latent_dim, flow_steps=flow_steps)
    if posterior in COVARIANCES:
        return GaussianPosterior(latent_dim, covariance=posterior)
    raise ConfigError(f"`posterior` must be one of {POSTERIORS}; got {posterior!r}.")
