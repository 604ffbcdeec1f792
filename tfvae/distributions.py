"""Keras 3 layers whose outputs are `tfp.distributions` objects.

`tfp.layers` only works with Keras 2, so these layers build the distributions
themselves: a network produces an unconstrained parameter tensor, and the layer maps
it to a distribution whose batch shape is the leading dimensions of that tensor.
"""
import math

import keras
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions
tfb = tfp.bijectors

COVARIANCES = ("diagonal", "full")


def float32_layer(kwargs):
    """Layer kwargs with the dtype policy float32 unless the caller chose one.

    Densities, KLs and log-sum-exps lose too much in half precision, so the layers that
    build distributions (and the models, which cast x for `log_prob`) compute in
    float32 even under a mixed-precision policy; the networks follow the policy, and
    Keras casts their outputs on the way in.
    """
    return {"dtype": "float32", **kwargs}


def _positive_int(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"`{name}` must be a positive int; got {value!r}.")
    return value


def _event_shape(value):
    shape = tuple(int(d) for d in value)
    if not shape or any(d <= 0 for d in shape):
        raise ValueError(
            f"`event_shape` must be a non-empty tuple of positive ints, e.g. (784,); got {value!r}."
        )
    return shape


@keras.saving.register_keras_serializable(package="tfvae")
class GaussianPosterior(keras.layers.Layer):
    """The Gaussian posterior q(z|x) from an encoder's output.

    With `covariance="diagonal"` the last axis of the input holds `loc` and an
    unconstrained scale, mapped through softplus plus `scale_floor`; the output is a
    `tfd.MultivariateNormalDiag`. With `covariance="full"` it holds `loc` and the
    `latent_dim * (latent_dim + 1) / 2` entries of a lower-triangular matrix, mapped
    as `tfb.FillScaleTriL` does (softplus plus `scale_floor` on the diagonal) to
    `scale_tril`; the output is a
    `tfd.MultivariateNormalTriL`.

    Args:
      latent_dim: size of z, the event shape of the output.
      covariance: "diagonal" or "full".
      scale_floor: smallest scale (diagonal of `scale_tril`), which keeps log q(z|x)
        finite when the encoder pushes a scale towards zero.
      off_diagonal_scale: the factor on the entries below the diagonal (full
        covariance); None gives 1 / sqrt(latent_dim). Each z_i adds up to latent_dim
        noise terms, so unscaled O(1) entries from a freshly initialised encoder make
        q(z|x) far wider than the prior and training starts (and, measured on MNIST,
        ends) much worse than with a diagonal posterior; scaled, the noise of each z_i
        stays O(1) at any size and the posterior starts close to a diagonal one.

    Returns:
      A distribution with batch shape `params.shape[:-1]` and event shape
      `[latent_dim]`.

    Example:
      >>> layer = GaussianPosterior(latent_dim=2, covariance="full")
      >>> q = layer(tf.zeros([8, GaussianPosterior.params_size(2, "full")]))
      >>> q.sample(5).shape
      TensorShape([5, 8, 2])
    """

    def __init__(self, latent_dim, covariance="diagonal", scale_floor=1e-4, off_diagonal_scale=None, **kwargs):
        super().__init__(**float32_layer(kwargs))
        self.latent_dim = _positive_int("latent_dim", latent_dim)
        if covariance not in COVARIANCES:
            raise ValueError(f"`covariance` must be one of {COVARIANCES}; got {covariance!r}.")
        if not scale_floor >= 0:
            raise ValueError(f"`scale_floor` must be >= 0; got {scale_floor!r}.")
        if off_diagonal_scale is None:
            off_diagonal_scale = 1.0 / math.sqrt(self.latent_dim)
        if not off_diagonal_scale > 0:
            raise ValueError(f"`off_diagonal_scale` must be > 0; got {off_diagonal_scale!r}.")
        self.covariance = covariance
        self.scale_floor = float(scale_floor)
        self.off_diagonal_scale = float(off_diagonal_scale)
        diagonal = tfb.Chain([tfb.Shift(self.scale_floor), tfb.Softplus(), tfb.Scale(1.0 / self.off_diagonal_scale)])
        self._scale_tril_bijector = tfb.Chain(
            [tfb.TransformDiagonal(diagonal), tfb.Scale(self.off_diagonal_scale), tfb.FillTriangular()]
        )

    @staticmethod
    def params_size(latent_dim, covariance="diagonal"):
        """Size of the last axis of the parameter tensor this layer expects."""
        if covariance == "diagonal":
            return 2 * latent_dim
        return latent_dim + latent_dim * (latent_dim + 1) // 2

    @property
    def num_params(self):
        """The encoder output size this layer reads: `params_size(latent_dim, covariance)`."""
        return self.params_size(self.latent_dim, self.covariance)

    @property
    def scale_tril_bijector(self):
        """The map from unconstrained parameters to `scale_tril` (full covariance) as a
        TFP bijector; its `inverse` gives the parameters of a wanted `scale_tril`."""
        return self._scale_tril_bijector

    def call(self, params):
        loc = params[..., : self.latent_dim]
        raw_scale = params[..., self.latent_dim :]
        if self.covariance == "diagonal":
            scale_diag = tf.nn.softplus(raw_scale) + self.scale_floor
            return tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale_diag)
        return tfd.MultivariateNormalTriL(loc=loc, scale_tril=self._fill_scale_tril(raw_scale))

    def _fill_scale_tril(self, raw_scale):
        # The map of `scale_tril_bijector`, written with tf.where: the bijectors' graph
        # uses MatrixSetDiag and Log1p, which tf2onnx cannot convert, and exported
        # encoders must run in ONNX Runtime. tests/test_distributions.py checks the two agree.
        tril = tfp.math.fill_triangular(raw_scale)  # [..., latent_dim, latent_dim]
        on_diagonal = tf.eye(self.latent_dim, dtype=tf.bool)
        return tf.where(on_diagonal, tf.nn.softplus(tril) + self.scale_floor, self.off_diagonal_scale * tril)

    def parameters_of(self, posterior):
        """The deterministic parameters of a posterior this layer made, by name.

        `{"loc", "scale"}` (the diagonal of the scale) for a diagonal covariance,
        `{"loc", "scale_tril"}` for a full one; each `[batch, ...]`. Exported encoders
        return these, and a client samples z = loc + scale · ε itself.
        """
        if self.covariance == "diagonal":
            return {"loc": posterior.loc, "scale": posterior.scale.diag_part()}
        return {"loc": posterior.loc, "scale_tril": posterior.scale.to_dense()}

    def get_config(self):
        config = super().get_config()
        config.update(
            latent_dim=self.latent_dim, covariance=self.covariance, scale_floor=self.scale_floor,
            off_diagonal_scale=self.off_diagonal_scale,
        )
        return config


def reparameterized_sample(posterior, num_samples, seed):
    """z = loc + scale · ε, ε ~ N(0, I): `posterior.sample(num_samples, seed=seed)` with
    the noise drawn by Philox.

    TFP's `sample` leaves the generator to tf.random's "auto_select", which XLA on CPU
    draws 3x slower than Philox named (0.087 s against 0.029 s for an epoch's draws of
    bench-train's model). The noise goes through the distribution's own bijector, the
    map TFP's `sample` applies. XLA's Philox is not bit-identical to TensorFlow's
    kernels, so z under `jit_compile` differ from z without it for the same seed (the
    same holds for TFP's `sample`); each mode repeats itself.

    A `tfd.TransformedDistribution` of a Gaussian (an IAF posterior) draws the
    Gaussian's sample this way and pushes it through its flow; the flow's bijectors
    cache the pair, so `log_prob` of the result needs no inverse pass.

    Args:
      posterior: a `tfd.MultivariateNormalDiag` or `tfd.MultivariateNormalTriL`, or a
        `tfd.TransformedDistribution` of one.
      num_samples: draws per distribution in the batch, or None for one draw without
        a sample axis.
      seed: a `[2]` integer stateless seed, or None for fresh noise.

    Returns:
      `[num_samples, *batch_shape, latent_dim]` (`[*batch_shape, latent_dim]` for None).
    """
    if isinstance(posterior.distribution, tfd.TransformedDistribution):
        return posterior.bijector.forward(reparameterized_sample(posterior.distribution, num_samples, seed))
    sample_shape = [] if num_samples is None else [num_samples]
    shape = tf.concat(
        [tf.constant(sample_shape, tf.int32), posterior.batch_shape_tensor(), posterior.event_shape_tensor()], axis=0
    )
    if seed is None:
        noise = tf.random.normal(shape, dtype=posterior.dtype)
    else:
        noise = tf.random.stateless_normal(shape, seed=seed, dtype=posterior.dtype, alg="philox")
    return posterior.bijector.forward(noise)


def posterior_code(posterior):
    """A deterministic code of q(z|x): E[z] for a Gaussian; for a Gaussian pushed through a
    flow (whose mean has no closed form), the flow applied to the Gaussian's mean."""
    if isinstance(posterior.distribution, tfd.TransformedDistribution):
        return posterior.bijector.forward(posterior_code(posterior.distribution))
    return posterior.mean()


class Likelihood(keras.layers.Layer):
    """Base class of the likelihoods p(x|z): a decoder's output to a distribution over x.

    Subclasses set `family` (the name manifests and users see) and implement `call`,
    returning a `tfd.Independent` over `event_shape` so `log_prob` gives one number
    per example.
    """

    family = None

    def parameters_of(self, likelihood):
        """The raw parameters of a likelihood this layer made, by name, `[batch, *event_shape]`."""
        raise NotImplementedError(f"{type(self).__name__} must implement `parameters_of`.")

    def __init__(self, event_shape, **kwargs):
        super().__init__(**float32_layer(kwargs))
        self.event_shape = _event_shape(event_shape)

    def _independent(self, distribution):
        return tfd.Independent(distribution, reinterpreted_batch_ndims=len(self.event_shape))

    def get_config(self):
        config = super().get_config()
        config.update(event_shape=list(self.event_shape))
        return config


@keras.saving.register_keras_serializable(package="tfvae")
class BernoulliLikelihood(Likelihood):
    """p(x|z) = Π Bernoulli(x_i; logits_i), for binary (or [0, 1]) data.

    Args:
      event_shape: shape of one example x, e.g. `(784,)`.

    Returns:
      `tfd.Independent(tfd.Bernoulli(logits))` with event shape `event_shape`;
      `.mean()` is the pixel probabilities.

    Example:
      >>> p = BernoulliLikelihood((784,))(tf.zeros([8, 784]))
      >>> p.log_prob(tf.ones([8, 784])).shape
      TensorShape([8])
    """

    family = "bernoulli"

    def call(self, logits):
        return self._independent(tfd.Bernoulli(logits=logits, dtype=logits.dtype))

    def parameters_of(self, likelihood):
        return {"logits": likelihood.distribution.logits}


@keras.saving.register_keras_serializable(package="tfvae")
class GaussianLikelihood(Likelihood):
    """p(x|z) = Π N(x_i; loc_i, scale_i²), for continuous data.

    Args:
      event_shape: shape of one example x.
      scale: a fixed positive standard deviation, or None to learn one per dimension
        of x (softplus of a trainable parameter plus `scale_floor`, initialised at 1).
      scale_floor: smallest learned scale.

    Returns:
      `tfd.Independent(tfd.Normal(loc, scale))` with event shape `event_shape`.

    Example:
      >>> p = GaussianLikelihood((3,), scale=0.5)(tf.zeros([8, 3]))
      >>> p.stddev()[0].numpy()
      array([0.5, 0.5, 0.5], dtype=float32)
    """

    family = "gaussian"

    def __init__(self, event_shape, scale=None, scale_floor=1e-3, **kwargs):
        super().__init__(event_shape, **kwargs)
        if scale is not None and not (isinstance(scale, (int, float)) and scale > 0):
            raise ValueError(f"`scale` must be a positive number or None (learned); got {scale!r}.")
        self.scale = None if scale is None else float(scale)
        self.scale_floor = float(scale_floor)
        if self.scale is None:
            # softplus(0.5413) = 1: the learned scale starts at one.
            self.raw_scale = self.add_weight(
                shape=self.event_shape,
                initializer=keras.initializers.Constant(math.log(math.expm1(1.0))),
                name="raw_scale",
            )

    def call(self, loc):
        if self.scale is None:
            scale = tf.nn.softplus(self.raw_scale) + self.scale_floor
        else:
            scale = tf.constant(self.scale, dtype=loc.dtype)
        return self._independent(tfd.Normal(loc=loc, scale=scale + tf.zeros_like(loc)))

    def parameters_of(self, likelihood):
        return {"loc": likelihood.distribution.loc, "scale": likelihood.distribution.scale}

    def get_config(self):
        config = super().get_config()
        config.update(scale=self.scale, scale_floor=self.scale_floor)
        return config


LIKELIHOODS = {"bernoulli": BernoulliLikelihood, "gaussian": GaussianLikelihood}


def get_likelihood(likelihood, event_shape, scale=None):
    """A likelihood layer from a family name ("bernoulli", "gaussian") or a layer."""
    if isinstance(likelihood, Likelihood):
        return likelihood
    if likelihood == "bernoulli":
        return BernoulliLikelihood(event_shape)
    if likelihood == "gaussian":
        return GaussianLikelihood(event_shape, scale=scale)
    raise ValueError(
        f"`likelihood` must be one of {sorted(LIKELIHOODS)} or a `tfvae.Likelihood` layer; "
        f"got {likelihood!r}."
    )
