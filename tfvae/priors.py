"""Priors p(z): Keras layers so that a learned prior keeps its weights in `.keras` files."""
import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.distributions import _positive_int

tfd = tfp.distributions


class Prior(keras.layers.Layer):
    """Base class of priors over z.

    Subclasses implement `distribution()`, returning a distribution with event shape
    `[latent_dim]` and no batch shape. A VAE calls it once per step, so it may depend
    on trainable weights (as a VampPrior's pseudo-inputs do).

    Args:
      latent_dim: size of z.
    """

    def __init__(self, latent_dim, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = _positive_int("latent_dim", latent_dim)

    def distribution(self):
        raise NotImplementedError(f"{type(self).__name__} must implement `distribution()`.")

    def get_config(self):
        config = super().get_config()
        config.update(latent_dim=self.latent_dim)
        return config


@keras.saving.register_keras_serializable(package="tfvae")
class StandardNormalPrior(Prior):
    """p(z) = N(0, I).

    Returns (from `distribution()`):
      `tfd.MultivariateNormalDiag` with identity scale, which has a closed-form KL
      against both diagonal and full-covariance Gaussian posteriors.

    Example:
      >>> StandardNormalPrior(latent_dim=4).distribution().sample(3).shape
      TensorShape([3, 4])
    """

    def distribution(self):
        return tfd.MultivariateNormalDiag(loc=tf.zeros([self.latent_dim], dtype=self.compute_dtype))


def get_prior(prior, latent_dim):
    """A prior layer from None / "standard_normal" or a `tfvae.Prior` instance."""
    if prior is None or prior == "standard_normal":
        return StandardNormalPrior(latent_dim)
    if isinstance(prior, Prior):
        if prior.latent_dim != latent_dim:
            raise ValueError(
                f"The prior's latent_dim ({prior.latent_dim}) differs from the model's "
                f"latent_dim ({latent_dim}); build the prior with latent_dim={latent_dim}."
            )
        return prior
    raise ValueError(f"`prior` must be None, 'standard_normal' or a `tfvae.Prior`; got {prior!r}.")
