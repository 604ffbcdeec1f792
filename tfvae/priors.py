"""Priors p(z): Keras layers so that a learned prior keeps its weights in `.keras` files."""

import math

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.distributions import _positive_int, float32_layer, gaussian_parameters
from tfvae.errors import ConfigError

tfd = tfp.distributions


class Prior(keras.layers.Layer):
    """Base class of priors over z.

    Subclasses implement `distribution()`, returning a distribution with event shape
    `[latent_dim]` and no batch shape. A VAE calls it once per step, so it may depend
    on trainable weights (as a VampPrior's pseudo-inputs do).

    Args:
      latent_dim: size of z.
    """

    # How a server draws z from this prior without tfvae, as an export's manifest names
    # it ("standard_normal", "gaussian_mixture"), or None when it cannot (clients then
    # sample with tfvae).
    served_as = None

    def __init__(self, latent_dim, **kwargs):
        super().__init__(**float32_layer(kwargs))
        self.latent_dim = _positive_int("latent_dim", latent_dim)

    def distribution(self):
        raise NotImplementedError(f"{type(self).__name__} must implement `distribution()`.")

    def mixture_components(self):
        """A mixture prior's Gaussian components as NumPy arrays (`loc` and `scale` or
        `scale_tril`, `[num_components, ...]`) that an export carries for servers to
        draw z from; None for a prior that is no such mixture."""
        return None

    @property
    def num_components(self):
        """Mixture components of p(z) (1 for a single distribution); sizes evaluation chunks."""
        return 1

    def attach(self, model, input_shape):
        """Called by the model that owns the prior; a prior that needs the encoder keeps it.

        Args:
          model: the `tfvae.VAE`.
          input_shape: the shape of one example x.
        """

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

    served_as = "standard_normal"

    def distribution(self):
        return tfd.MultivariateNormalDiag(loc=tf.zeros([self.latent_dim], dtype=self.compute_dtype))


class DiagonalGaussianMixture(tfd.MixtureSameFamily):
    """`tfd.MixtureSameFamily` of `tfd.MultivariateNormalDiag` components, with a cheaper `log_prob`.

    TFP's mixture evaluates every component at every point, which materialises
    `[..., num_components, event_size]` values: at 500 components, 40 latents and the
    thousands of samples of importance sampling that is gigabytes per step, and the
    time goes to memory traffic. Expanding the quadratic form,
    sum_d (z_d - m_kd)^2 / s_kd^2 = (z^2) . (1/s_k^2) - 2 z . (m_k/s_k^2) + sum_d m_kd^2/s_kd^2,
    turns it into two `[..., event] x [event, K]` products, `[..., K]` in memory.
    Everything else (sampling, mean, ...) is TFP's.
    """

    def _log_prob(self, x):
        components = self.components_distribution
        # The expanded terms are large and cancel (a scale of 0.02 weighs each by 2500),
        # so they are summed in float64: still two small matmuls, and float32-exact.
        loc = tf.cast(components.loc, tf.float64)  # [K, event]
        scale = tf.cast(components.stddev(), tf.float64)  # [K, event]
        z = tf.cast(x, tf.float64)
        precision = tf.math.reciprocal(tf.square(scale))
        quadratic = (
            tf.einsum("...d,kd->...k", tf.square(z), precision)
            - 2.0 * tf.einsum("...d,kd->...k", z, loc * precision)
            + tf.reduce_sum(tf.square(loc) * precision, axis=-1)
        )  # [..., K]
        log_normalizer = tf.reduce_sum(tf.math.log(scale), axis=-1) + 0.5 * math.log(2.0 * math.pi) * tf.cast(
            tf.shape(loc)[-1], tf.float64
        )
        log_components = tf.cast(-0.5 * quadratic - log_normalizer, x.dtype)
        log_mixture = tf.math.log_softmax(self.mixture_distribution.logits_parameter(), axis=-1)
        return tf.reduce_logsumexp(log_components + log_mixture, axis=-1)


@keras.saving.register_keras_serializable(package="tfvae")
class VampPrior(Prior):
    """The VampPrior of Tomczak & Welling (2018): p(z) = (1/K) sum_k q(z | u_k).

    A uniform mixture of the model's own posterior at K learned pseudo-inputs u_k,
    trained with the rest of the model. No closed-form KL exists against it, so the
    VAE estimates KL(q(z|x) || p(z)) by Monte Carlo with its samples of z.

    Under an IAF posterior the components are the flow's base Gaussians,
    p(z) = (1/K) sum_k N(z; mu(u_k), sigma(u_k)²): the flow's own density at z would
    need its inverse, one sequential network pass per dimension of z and step, for every
    component (160 passes over [samples, batch, K] rows per training step at 40
    dimensions, 4 steps and K = 500), while the base Gaussians keep the mixture's density
    in closed form and are what an export's servers draw z from. The encoder still
    places every component, so the prior is learned with the posterior, but it is no
    longer the flow posterior's average over the pseudo-inputs.

    Args:
      latent_dim: size of z.
      num_components: K, the number of pseudo-inputs.
      pseudo_input_range: `(low, high)`: pseudo-inputs are clipped to it as the
        paper's hardtanh does, or None for unbounded data, or "data": the range the
        model's likelihood reads its data in (`Likelihood.encoder_input_range`: (0, 1)
        for pixel intensities and 8-bit levels, unbounded for a standardised table).
      initial_mean, initial_stddev: the pseudo-inputs start as N(mean, stddev²)
        draws (the paper: 0.05 and 0.01 for binarised MNIST).

    The pseudo-inputs are learned in the units the encoder reads x in, after the
    likelihood's standardisation (`Likelihood.input_normalization`): 8-bit levels
    divided by 255, a table's columns standardised. The range and the initial draws
    apply there, so a VampPrior starts and stays on the data's scale whatever units x
    comes in; `pseudo_inputs` are in the data's own units.

    Returns (from `distribution()`):
      A `tfd.MixtureSameFamily` of K Gaussians, event shape `[latent_dim]`
      (`DiagonalGaussianMixture` for a diagonal posterior).

    Example:
      >>> vae = tfvae.VAE((784,), 40, prior=tfvae.VampPrior(40, num_components=500))
      >>> vae.prior.log_prob(tf.zeros([3, 40])).shape
      TensorShape([3])
    """

    served_as = "gaussian_mixture"

    def __init__(
        self,
        latent_dim,
        num_components=500,
        pseudo_input_range="data",
        initial_mean=0.05,
        initial_stddev=0.01,
        **kwargs,
    ):
        super().__init__(latent_dim, **kwargs)
        self.components = _positive_int("num_components", num_components)
        if not (pseudo_input_range is None or isinstance(pseudo_input_range, str) and pseudo_input_range == "data"):
            try:
                low, high = (float(v) for v in pseudo_input_range)
            except (TypeError, ValueError):
                low = high = math.nan
            if not low < high:
                raise ConfigError(
                    f'`pseudo_input_range` must be (low, high) with low < high, None or "data"; '
                    f"got {pseudo_input_range!r}."
                )
            pseudo_input_range = (low, high)
        self.pseudo_input_range = pseudo_input_range
        self.initial_mean = float(initial_mean)
        self.initial_stddev = float(initial_stddev)
        self._gaussian_of = None  # x -> the Gaussian q(z|x) (an IAF's base) that `attach` takes from the model
        # How the encoder's units map to the data's, and the range in them; `attach` sets
        # both from the model's likelihood.
        self._input_loc, self._input_scale = 0.0, 1.0
        self._clip_range = None if pseudo_input_range is None else (0.0, 1.0)

    @property
    def num_components(self):
        return self.components

    def attach(self, model, input_shape):
        if model.conditional:
            raise ConfigError(
                "A VampPrior mixes q(z|u) over pseudo-inputs u and has no labels to give a "
                "conditional encoder; use the standard normal prior with ConditionalVAE."
            )
        # The bound method, not the model: a layer attribute holding the model would make
        # Keras track the model as the prior's sub-layer, a cycle.
        self._gaussian_of = model._posterior_base
        likelihood = model.likelihood_layer
        if likelihood.input_normalization is not None:
            mean, variance = likelihood.input_normalization
            self._input_loc = np.asarray(mean, np.float32)
            self._input_scale = np.sqrt(np.asarray(variance, np.float32))
        if self.pseudo_input_range == "data":
            self._clip_range = likelihood.encoder_input_range
        elif self.pseudo_input_range is not None:
            self._clip_range = self.pseudo_input_range
        if not self.built:
            self.build(input_shape)

    def build(self, input_shape):
        self.raw_pseudo_inputs = self.add_weight(
            shape=(self.components, *input_shape),
            initializer=keras.initializers.RandomNormal(self.initial_mean, self.initial_stddev),
            name="pseudo_inputs",
        )
        self.built = True

    @property
    def pseudo_inputs(self):
        """u, `[num_components, *input_shape]`, in the data's units."""
        u = self.raw_pseudo_inputs
        if self._clip_range is not None:
            u = keras.ops.clip(u, *self._clip_range)
        return u * self._input_scale + self._input_loc  # tensor first: an ndarray on the left makes an ndarray

    def _component_gaussians(self):
        """The mixture's Gaussians q(z|u_k), batch `[num_components]`."""
        if self._gaussian_of is None:
            raise ConfigError("A VampPrior is used through its VAE: pass it as VAE(prior=...).")
        return self._gaussian_of(self.pseudo_inputs)

    def mixture_components(self):
        """The mixture's Gaussians at the pseudo-inputs (`gaussian_parameters`)."""
        return {name: value.numpy() for name, value in gaussian_parameters(self._component_gaussians()).items()}

    def distribution(self):
        components = self._component_gaussians()
        mixture = tfd.Categorical(logits=tf.zeros([self.components], dtype=self.compute_dtype))
        if isinstance(components, tfd.MultivariateNormalDiag):
            return DiagonalGaussianMixture(mixture, components)
        return tfd.MixtureSameFamily(mixture, components)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_components=self.components,
            pseudo_input_range=(
                list(self.pseudo_input_range) if isinstance(self.pseudo_input_range, tuple) else self.pseudo_input_range
            ),
            initial_mean=self.initial_mean,
            initial_stddev=self.initial_stddev,
        )
        return config


PRIORS = ("standard_normal", "vamp")


def get_prior(prior, latent_dim):
    """A prior layer from None / "standard_normal" / "vamp" or a `tfvae.Prior` instance."""
    if prior is None or prior == "standard_normal":
        return StandardNormalPrior(latent_dim)
    if prior == "vamp":
        return VampPrior(latent_dim)
    if isinstance(prior, Prior):
        if prior.latent_dim != latent_dim:
            raise ConfigError(
                f"The prior's latent_dim ({prior.latent_dim}) differs from the model's "
                f"latent_dim ({latent_dim}); build the prior with latent_dim={latent_dim}."
            )
        return prior
    raise ConfigError(f"`prior` must be None, one of {PRIORS} or a `tfvae.Prior`; got {prior!r}.")
