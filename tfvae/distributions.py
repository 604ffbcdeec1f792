"""Keras 3 layers whose outputs are `tfp.distributions` objects.

`tfp.layers` only works with Keras 2, so these layers build the distributions
themselves: a network produces an unconstrained parameter tensor, and the layer maps
it to a distribution whose batch shape is the leading dimensions of that tensor.
"""

import math

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.errors import ConfigError
from tfvae.pixelcnn import PixelCNN, column
from tfvae.seeding import standard_normal

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
        raise ConfigError(f"`{name}` must be a positive int; got {value!r}.")
    return value


def _event_shape(value):
    shape = tuple(int(d) for d in value)
    if not shape or any(d <= 0 for d in shape):
        raise ConfigError(f"`event_shape` must be a non-empty tuple of positive ints, e.g. (784,); got {value!r}.")
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
            raise ConfigError(f"`covariance` must be one of {COVARIANCES}; got {covariance!r}.")
        if not scale_floor >= 0:
            raise ConfigError(f"`scale_floor` must be >= 0; got {scale_floor!r}.")
        if off_diagonal_scale is None:
            off_diagonal_scale = 1.0 / math.sqrt(self.latent_dim)
        if not off_diagonal_scale > 0:
            raise ConfigError(f"`off_diagonal_scale` must be > 0; got {off_diagonal_scale!r}.")
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

    def base(self, params):
        """The Gaussian a VampPrior mixes over its pseudo-inputs: a Gaussian posterior is its own
        (an `IAFPosterior`'s is the Gaussian before its flow)."""
        return self(params)

    def parameters_of(self, posterior):
        """The deterministic parameters of a posterior this layer made, by name
        (`gaussian_parameters`). Exported encoders return these, and a client samples
        z = loc + scale · ε itself."""
        return gaussian_parameters(posterior)

    def sample_of_noise(self, posterior, noise):
        """`(z, log q(z))` for the sample z = loc + scale · ε of a posterior this layer made,
        given the noise ε `[batch, latent_dim]`, draws of N(0, I): what an exported encoder
        computes when a client brings the noise.

        Written from the parameters: TFP's `sample` and `log_prob` build shapes with
        BroadcastArgs, which tf2onnx cannot convert. With z − loc = scale · ε,
        log q(z) = log N(ε; 0, I) − log |det scale|.
        """
        params = self.parameters_of(posterior)
        if self.covariance == "diagonal":
            z = params["loc"] + params["scale"] * noise
            return z, log_prob_of_noise(noise, params["scale"])
        z = params["loc"] + tf.linalg.matvec(params["scale_tril"], noise)
        return z, log_prob_of_noise(noise, tf.linalg.diag_part(params["scale_tril"]))

    def get_config(self):
        config = super().get_config()
        config.update(
            latent_dim=self.latent_dim,
            covariance=self.covariance,
            scale_floor=self.scale_floor,
            off_diagonal_scale=self.off_diagonal_scale,
        )
        return config


def gaussian_parameters(gaussian):
    """A Gaussian's deterministic parameters by name: `{"loc", "scale"}` (the diagonal of
    the scale) for a `tfd.MultivariateNormalDiag`, `{"loc", "scale_tril"}` for a
    `tfd.MultivariateNormalTriL`; each `[batch, ...]`."""
    if isinstance(gaussian, tfd.MultivariateNormalDiag):
        return {"loc": gaussian.loc, "scale": gaussian.scale.diag_part()}
    return {"loc": gaussian.loc, "scale_tril": gaussian.scale.to_dense()}


def log_prob_of_noise(noise, scale_diag):
    """log N(z; loc, scale scaleᵀ) at z = loc + scale · ε, from ε alone: log N(ε; 0, I) minus
    log |det scale|, the sum of the log of `scale_diag` (a triangular scale's diagonal).
    Over the last axis."""
    size = tf.cast(tf.shape(noise)[-1], noise.dtype)
    log_standard_normal = -0.5 * tf.reduce_sum(tf.square(noise), axis=-1) - 0.5 * size * np.log(2 * np.pi)
    return log_standard_normal - tf.reduce_sum(tf.math.log(scale_diag), axis=-1)


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
      seed: a `[2]` integer stateless seed, or `tfvae.seeding.ExampleNoise` (then the
        draws are `[num_samples, batch, latent_dim]`, keyed per example).

    Returns:
      `[num_samples, *batch_shape, latent_dim]` (`[*batch_shape, latent_dim]` for None).
    """
    if isinstance(posterior.distribution, tfd.TransformedDistribution):
        return posterior.bijector.forward(reparameterized_sample(posterior.distribution, num_samples, seed))
    sample_shape = [] if num_samples is None else [num_samples]
    shape = tf.concat(
        [tf.constant(sample_shape, tf.int32), posterior.batch_shape_tensor(), posterior.event_shape_tensor()], axis=0
    )
    return posterior.bijector.forward(standard_normal(shape, seed, posterior.dtype))


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
    # Whether log_prob is a probability of discrete values (then nats convert to bits/dim);
    # False for densities on continuous data.
    discrete = False
    # Decoder outputs per dimension of x: the decoder's output is `[batch, *event_shape]`
    # for 1, `[batch, *event_shape, params_per_dimension]` otherwise.
    params_per_dimension = 1
    # `(mean, variance)` the encoder standardises x with first (scalars or arrays of
    # event_shape), or None: 8-bit levels are read as x / 255, a standardised Gaussian's
    # data in the units it learns in.
    input_normalization = None
    # The range of x as the encoder reads it (after `input_normalization`), or None when
    # unbounded: where a VampPrior's pseudo-inputs are kept by default.
    encoder_input_range = (0.0, 1.0)
    # The integer levels x takes (256 for 8-bit data: 0 .. 255), or None.
    data_levels = None
    # The shape of the uniforms one x is drawn from where x is drawn one pixel at a time
    # (a PixelCNN), else None: the exported generator then takes them as its `noise` input.
    noise_shape = None

    @property
    def autoregressive(self):
        """Whether p(x|z) makes x's dimensions depend on each other (a PixelCNN): x is then
        drawn pixel by pixel from uniforms (`noise_shape`), and its mean is no one-pass
        function of z, so the exported generator gives a drawn x rather than a mean."""
        return self.noise_shape is not None

    @property
    def values_per_sample(self):
        """Float32 values held per (z sample, example) pair when `log_prob` runs: by
        default the decoder's output that this layer reads."""
        return math.prod(self.params_shape)

    @property
    def likelihood_of(self):
        """What `log_prob` measures: "probability" of discrete data (so nats convert to
        bits/dim), "density" on continuous data (nats that change with the scale of x),
        or "cross_entropy" (grey levels read as Bernoulli probabilities)."""
        return "probability" if self.discrete else "density"

    @property
    def params_shape(self):
        """The shape of one example's decoder output that this layer reads."""
        if self.params_per_dimension == 1:
            return self.event_shape
        return (*self.event_shape, self.params_per_dimension)

    def context_of(self, x, training=False):
        """What this likelihood's densities compute of x alone, whatever the z: None here,
        a PixelCNN's masked-network features. A model computes it once for many samples
        of z and gives it back to `call` (as `context=`) with each decoder output."""
        return None

    def likelihood_of_data(self, x):
        """What `log_prob` measures on the examples `x`: `likelihood_of`, unless the data
        decide it (a Bernoulli's is a probability of binary data only)."""
        return self.likelihood_of

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


class _GreyLevelBernoulli(tfd.Bernoulli):
    """Bernoulli(logits) over x / (num_levels - 1): grey levels 0 .. 255 read as the
    probabilities [0, 1] the Bernoulli cross-entropy takes, with mean and samples in
    the levels' own units."""

    def __init__(self, logits, num_levels, validate_args=False, allow_nan_stats=True, name="GreyLevelBernoulli"):
        parameters = dict(locals())
        self._top = float(num_levels - 1)
        super().__init__(
            logits=logits, dtype=logits.dtype, validate_args=validate_args, allow_nan_stats=allow_nan_stats, name=name
        )
        self._parameters = parameters  # with num_levels, so copies and slices keep it

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        # Its own, not Bernoulli's (logits or probs): TFP logs a 30-line warning each time
        # a subclass that takes other arguments inherits them, four times in every `fit`
        # on 8-bit images with this likelihood.
        return {"logits": tfp.util.ParameterProperties()}

    def _log_prob(self, x):
        return super()._log_prob(x / self._top)

    def _mean(self):
        return self._top * super()._mean()

    def _sample_n(self, n, seed=None):
        return self._top * super()._sample_n(n, seed=seed)


@keras.saving.register_keras_serializable(package="tfvae")
class BernoulliLikelihood(Likelihood):
    """p(x|z) = Π Bernoulli(x_i; logits_i), for binary (or [0, 1]) data.

    With `num_levels` (256 for 8-bit images), x is read in grey levels 0 .. 255: the
    encoder and `log_prob` see x / 255, and `mean` (so `decode`, `sample` and the
    exported decoder) answers in levels again. `log_prob` is then the Bernoulli
    cross-entropy of grey levels read as probabilities, as VAEs on greyscale images
    commonly train, but no normalised likelihood of the 256 levels: no bits/dim are
    reported for it (a discretised logistic gives them).

    Args:
      event_shape: shape of one example x, e.g. `(784,)`.
      num_levels: None (x in [0, 1]), or the number of integer levels x takes.

    Returns:
      `tfd.Independent(tfd.Bernoulli(logits))` with event shape `event_shape`;
      `.mean()` is the pixel probabilities (times `num_levels - 1` with levels).

    Example:
      >>> p = BernoulliLikelihood((784,))(tf.zeros([8, 784]))
      >>> p.log_prob(tf.ones([8, 784])).shape
      TensorShape([8])
      >>> BernoulliLikelihood((2,), num_levels=256)(tf.zeros([1, 2])).mean().numpy()
      array([[127.5, 127.5]], dtype=float32)
    """

    family = "bernoulli"
    discrete = True

    def __init__(self, event_shape, num_levels=None, **kwargs):
        super().__init__(event_shape, **kwargs)
        if num_levels is not None:
            _positive_int("num_levels", num_levels)
            if num_levels < 2:
                raise ConfigError(f"`num_levels` must be at least 2 (or None for [0, 1] data); got {num_levels}.")
            self.data_levels = num_levels
            self.input_normalization = (0.0, float(num_levels - 1) ** 2)
            self.discrete = False  # not a probability of the levels: no bits/dim
        self.num_levels = num_levels

    @property
    def likelihood_of(self):
        return "probability" if self.num_levels is None else "cross_entropy"

    def likelihood_of_data(self, x):
        """On values strictly between 0 and 1 (intensities scaled to [0, 1]) the
        Bernoulli's log_prob is a cross-entropy, no probability of the data."""
        x = np.asarray(x)
        if self.num_levels is None and not np.all((x == 0) | (x == 1)):
            return "cross_entropy"
        return self.likelihood_of

    def call(self, logits):
        if self.num_levels is None:
            return self._independent(tfd.Bernoulli(logits=logits, dtype=logits.dtype))
        return self._independent(_GreyLevelBernoulli(logits, self.num_levels))

    def parameters_of(self, likelihood):
        return {"logits": likelihood.distribution.logits}

    def get_config(self):
        config = super().get_config()
        config.update(num_levels=self.num_levels)
        return config


@keras.saving.register_keras_serializable(package="tfvae")
class GaussianLikelihood(Likelihood):
    """p(x|z) = Π N(x_i; loc_i, scale_i²), for continuous data.

    With `data_loc` and `data_scale` (per-dimension statistics of the training data,
    which `tfvae train` computes), the model works in standardised units
    u = (x - data_loc) / data_scale: the encoder reads u, the decoder's output is the
    mean of u and the learned scale is in units of data_scale, and this layer maps both
    back, so `log_prob`, `mean` and `decode` answer in the data's own units (a table's,
    say) and a fresh model's scale is the data's spread. The statistics are saved with
    the layer.

    Args:
      event_shape: shape of one example x.
      scale: a fixed positive standard deviation (in the data's units), or None to
        learn one per dimension of x (softplus of a trainable parameter plus
        `scale_floor`, starting at 1 standardised unit).
      scale_floor: smallest learned scale (standardised units).
      data_loc, data_scale: arrays of `event_shape` (or None: no standardisation);
        every `data_scale` must be positive.

    Returns:
      `tfd.Independent(tfd.Normal(loc, scale))` with event shape `event_shape`.

    Example:
      >>> p = GaussianLikelihood((3,), scale=0.5)(tf.zeros([8, 3]))
      >>> p.stddev()[0].numpy()
      array([0.5, 0.5, 0.5], dtype=float32)
    """

    family = "gaussian"

    def __init__(self, event_shape, scale=None, scale_floor=1e-3, data_loc=None, data_scale=None, **kwargs):
        super().__init__(event_shape, **kwargs)
        if scale is not None and not (isinstance(scale, (int, float)) and scale > 0):
            raise ConfigError(f"`scale` must be a positive number or None (learned); got {scale!r}.")
        self.scale = None if scale is None else float(scale)
        self.scale_floor = float(scale_floor)
        if (data_loc is None) != (data_scale is None):
            raise ConfigError("Give both `data_loc` and `data_scale`, or neither.")
        self.data_loc = None if data_loc is None else np.asarray(data_loc, np.float32).reshape(self.event_shape)
        self.data_scale = None if data_scale is None else np.asarray(data_scale, np.float32).reshape(self.event_shape)
        if self.data_scale is not None:
            if not np.all(self.data_scale > 0):
                raise ConfigError(
                    "`data_scale` must be positive in every dimension (use 1 where the data are constant)."
                )
            self.input_normalization = (self.data_loc, np.square(self.data_scale))
            self.encoder_input_range = None  # standardised columns
        if self.scale is None:
            # softplus(0.5413) = 1: the learned scale starts at one (standardised) unit.
            self.raw_scale = self.add_weight(
                shape=self.event_shape,
                initializer=keras.initializers.Constant(math.log(math.expm1(1.0))),
                name="raw_scale",
            )

    def call(self, loc):
        if self.scale is None:
            scale = tf.nn.softplus(self.raw_scale) + self.scale_floor
            if self.data_scale is not None:
                scale = scale * self.data_scale
        else:
            scale = tf.constant(self.scale, dtype=loc.dtype)
        if self.data_loc is not None:
            loc = self.data_loc + self.data_scale * loc
        return self._independent(tfd.Normal(loc=loc, scale=scale + tf.zeros_like(loc)))

    def parameters_of(self, likelihood):
        return {"loc": likelihood.distribution.loc, "scale": likelihood.distribution.scale}

    def get_config(self):
        config = super().get_config()
        config.update(
            scale=self.scale,
            scale_floor=self.scale_floor,
            data_loc=None if self.data_loc is None else self.data_loc.tolist(),
            data_scale=None if self.data_scale is None else self.data_scale.tolist(),
        )
        return config


NUM_LEVELS = 256  # 8-bit data


class _DiscretizedLogistic(tfd.QuantizedDistribution):
    """`tfd.QuantizedDistribution` of a logistic on the levels 0 .. L-1, with its mean.

    TFP's quantized distribution has no `mean`; on the integers low .. high it is
    low + Σ_{k=low}^{high-1} P(Y > k), which this computes exactly (one term per level).
    """

    def _mean(self):
        logistic = self.distribution
        levels = tf.range(self.low, self.high, dtype=self.dtype)  # [L - 1]
        # P(Y > k) = 1 - F(k) = σ((loc - k) / scale), [..., L - 1]
        survival = tf.sigmoid((logistic.loc[..., None] - levels) / logistic.scale[..., None])
        return self.low + tf.reduce_sum(survival, axis=-1)


class _DiscretizedLogisticMixture(tfd.MixtureSameFamily):
    """`tfd.MixtureSameFamily` of discretised logistics per dimension, with its mean
    Σ_k π_k · mean_k written out: TFP's builds its shapes with BroadcastArgs, which
    tf2onnx cannot convert, so the exported decoder's `mean` could not be written."""

    def _mean(self):
        probs = tf.nn.softmax(self.mixture_distribution.logits, axis=-1)  # [..., K]
        return tf.reduce_sum(probs * self.components_distribution.mean(), axis=-1)


def discretized_logistic(loc, scale, num_levels=NUM_LEVELS):
    """P(x = k) = σ((k + ½ - loc)/scale) - σ((k - ½ - loc)/scale) for k = 1 .. L-2, with the
    tails on the edges: P(0) = σ((½ - loc)/scale), P(L-1) = 1 - σ((L - 1.5 - loc)/scale).

    TFP's `QuantizedDistribution` assigns P(k) = F(k) - F(k - 1); a logistic at loc - ½
    centres each level's bin on it, as in PixelCNN++ (Salimans et al. 2017).
    """
    return _DiscretizedLogistic(
        tfd.Logistic(loc=loc - 0.5, scale=scale),
        low=tf.constant(0.0, loc.dtype),
        high=tf.constant(num_levels - 1.0, loc.dtype),
    )


@keras.saving.register_keras_serializable(package="tfvae")
class DiscretizedLogisticLikelihood(Likelihood):
    """p(x|z) = Π_i DiscretizedLogistic(x_i; loc_i, scale_i), for 8-bit data (levels 0 .. 255).

    Each dimension of x is one of `num_levels` integer levels (x holds them as floats,
    0 .. 255); its probability is the mass of a logistic over the level's bin of width
    one (`discretized_logistic`), so log_prob is a log-probability of the data and
    nats convert to bits per dimension. The decoder gives two numbers (a, b) per
    dimension, read in units of half the range as PixelCNN++ reads x in [-1, 1]:
    loc = 127.5 · (1 + a) and scale = 127.5 · (softplus(b) + `scale_floor`) levels, so a
    fresh decoder (a = b = 0) predicts a broad bump (scale ≈ 88 levels) rather than a
    spike, and the sharpest scale is 0.13 levels. The encoder reads x / 255.

    Args:
      event_shape: shape of one example x.
      num_levels: values per dimension (256 for 8-bit data).
      scale_floor: smallest scale, in units of half the range (127.5 levels).

    Returns:
      `tfd.Independent` over `event_shape` of discretised logistics.

    Example:
      >>> layer = DiscretizedLogisticLikelihood((3,))
      >>> p = layer(tf.zeros([8, 3, 2]))
      >>> p.log_prob(tf.fill([8, 3], 128.0)).shape
      TensorShape([8])
    """

    family = "discretized_logistic"
    discrete = True
    params_per_dimension = 2
    data_levels = NUM_LEVELS

    def __init__(self, event_shape, num_levels=NUM_LEVELS, scale_floor=1e-3, **kwargs):
        super().__init__(event_shape, **kwargs)
        self.num_levels = _positive_int("num_levels", num_levels)
        self.scale_floor = float(scale_floor)
        self.input_normalization = (0.0, float(self.num_levels - 1) ** 2)

    def _locs(self, raw):
        return (self.num_levels - 1) / 2.0 * (1.0 + raw)

    def _scales(self, raw):
        return (self.num_levels - 1) / 2.0 * (tf.nn.softplus(raw) + self.scale_floor)

    def call(self, params):
        loc, raw_scale = params[..., 0], params[..., 1]
        return self._independent(discretized_logistic(self._locs(loc), self._scales(raw_scale), self.num_levels))

    def parameters_of(self, likelihood):
        logistic = likelihood.distribution.distribution
        return {"loc": logistic.loc + 0.5, "scale": logistic.scale}

    def get_config(self):
        config = super().get_config()
        config.update(num_levels=self.num_levels, scale_floor=self.scale_floor)
        return config


@keras.saving.register_keras_serializable(package="tfvae")
class DiscretizedLogisticMixtureLikelihood(DiscretizedLogisticLikelihood):
    """p(x_i|z) = Σ_k π_ik DiscretizedLogistic(x_i; loc_ik, scale_ik), per dimension, for 8-bit data.

    The mixture of PixelCNN++ and NVAE with the channels of a pixel independent given z
    (no autoregressive coupling between R, G and B). The decoder gives 3K numbers per
    dimension: K mixture logits, K locs and K scales (mapped as in
    `DiscretizedLogisticLikelihood`). One component is the single discretised logistic.

    Args:
      event_shape: shape of one example x.
      num_components: K.
      num_levels, scale_floor: as for `DiscretizedLogisticLikelihood`.

    Returns:
      `tfd.Independent` over `event_shape` of `tfd.MixtureSameFamily`s.
    """

    family = "discretized_logistic_mixture"

    def __init__(self, event_shape, num_components=5, num_levels=NUM_LEVELS, scale_floor=1e-3, **kwargs):
        super().__init__(event_shape, num_levels=num_levels, scale_floor=scale_floor, **kwargs)
        self.num_components = _positive_int("num_components", num_components)
        self.params_per_dimension = 3 * self.num_components

    def call(self, params):
        logits, loc, raw_scale = tf.split(params, 3, axis=-1)  # each [..., *event, K]
        components = discretized_logistic(self._locs(loc), self._scales(raw_scale), self.num_levels)
        return self._independent(_DiscretizedLogisticMixture(tfd.Categorical(logits=logits), components))

    def parameters_of(self, likelihood):
        mixture = likelihood.distribution
        logistic = mixture.components_distribution.distribution
        return {"logits": mixture.mixture_distribution.logits, "loc": logistic.loc + 0.5, "scale": logistic.scale}

    def get_config(self):
        config = super().get_config()
        config.update(num_components=self.num_components)
        return config


class CoupledLogisticMixture(tfd.Distribution):
    """A mixture of discretised logistics over the C channels of a pixel, the channels
    coupled through the means (PixelCNN++, Salimans et al. 2017; NVAE):

        p(x) = Σ_k π_k Π_c DiscretizedLogistic(x_c; μ_ck + Σ_{j<c} a_cjk (x_j - m), s_ck),

    with m = (L - 1)/2 the middle of the levels. One component k is drawn per pixel and
    shared by its channels; given it, each channel's loc moves linearly with the values
    of the channels before it (for RGB: G with R, B with R and G), so what the latent
    code leaves unexplained in one channel is predicted in the next. Entries a_cjk with
    j >= c are ignored.

    The batch shape is `logits.shape[:-1]` (one per pixel) and the event the C channels.
    `log_prob` is exact: a probability of the L^C values of a pixel. `mean` takes each
    channel's conditional mean at the means of the channels before it (per component);
    that is exact for the first channel and wherever the logistics' mass beyond the
    edge levels is negligible, where the discretised mean is linear in the loc.

    Args:
      logits: `[..., K]` mixture logits.
      loc: `[..., C, K]` locs μ, in levels.
      scale: `[..., C, K]` scales s > 0, in levels.
      coefficients: `[..., C, C, K]` coupling coefficients a (strictly lower triangle read).
      num_levels: L, values per channel (256 for 8-bit data).
    """

    def __init__(
        self,
        logits,
        loc,
        scale,
        coefficients,
        num_levels=NUM_LEVELS,
        validate_args=False,
        allow_nan_stats=True,
        name="CoupledLogisticMixture",
    ):
        parameters = dict(locals())
        with tf.name_scope(name):
            self._logits = tf.convert_to_tensor(logits)
            self._loc = tf.convert_to_tensor(loc, dtype=self._logits.dtype)
            self._scale = tf.convert_to_tensor(scale, dtype=self._logits.dtype)
            self._coefficients = tf.convert_to_tensor(coefficients, dtype=self._logits.dtype)
            self._num_levels = int(num_levels)
            channels = self._loc.shape[-2]
            # a_cjk for j < c only: [C, C, 1] broadcast over the components.
            self._mask = tf.constant(np.tril(np.ones([channels, channels]), -1)[..., None], self._logits.dtype)
            super().__init__(
                dtype=self._logits.dtype,
                reparameterization_type=tfd.NOT_REPARAMETERIZED,
                validate_args=validate_args,
                allow_nan_stats=allow_nan_stats,
                parameters=parameters,
                name=name,
            )

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return dict(
            logits=tfp.util.ParameterProperties(event_ndims=1),
            loc=tfp.util.ParameterProperties(event_ndims=2),
            scale=tfp.util.ParameterProperties(event_ndims=2),
            coefficients=tfp.util.ParameterProperties(event_ndims=3),
        )

    @property
    def logits(self):
        return self._logits

    @property
    def loc(self):
        return self._loc

    @property
    def scale(self):
        return self._scale

    @property
    def coefficients(self):
        return self._coefficients * self._mask

    @property
    def num_levels(self):
        return self._num_levels

    def _event_shape(self):
        return tf.TensorShape(self._loc.shape[-2:-1])

    def _event_shape_tensor(self):
        return tf.shape(self._loc)[-2:-1]

    def _centred(self, x):
        return x - (self._num_levels - 1) / 2.0

    def _components(self, loc):
        return discretized_logistic(loc, self._scale, self._num_levels)

    def _log_prob(self, x):
        # Each channel's loc given the channels before it: [..., C, K].
        loc = self._loc + tf.einsum("...cjk,...j->...ck", self.coefficients, self._centred(x))
        log_probs = self._components(loc).log_prob(x[..., None])  # [..., C, K]
        joint = tf.nn.log_softmax(self._logits, axis=-1) + tf.reduce_sum(log_probs, axis=-2)  # [..., K]
        return tf.reduce_logsumexp(joint, axis=-1)

    def _sample_n(self, n, seed=None):
        shape = tf.concat([[n], self.batch_shape_tensor(), [self._loc.shape[-2] + 1]], 0)
        noise = tf.random.stateless_uniform(shape, tfp.random.sanitize_seed(seed), dtype=self.dtype)
        return self.sample_of_noise(noise)[0]

    def sample_of_noise(self, noise, given=None):
        """The draw that uniforms `noise` `[..., C + 1]` on (0, 1) map to, by inverse CDFs:
        the component is the first k with u_0 < π_1 + ... + π_k, and channel c is
        ceil(y_c) clipped to the levels, y_c = μ_ck + Σ_{j<c} a_cjk (x_j - m) - ½ + s_ck ·
        logit(u_{c+1}) (the logistic's inverse CDF; ceil as `QuantizedDistribution` bins).
        `sample` draws the uniforms and calls this, so a seeded draw and a client's noise
        (an exported generator's input) take one path.

        Args:
          noise: `[..., C + 1]` uniforms, broadcast against the batch shape.
          given: None, or values `[..., C]` whose channels before c shift channel c in
            place of the draw's own: the draws another runtime's values would have got.

        Returns:
          `(values [..., C], near_boundary [...])`: `near_boundary` marks the pixels
          whose draw float rounding elsewhere could move (u_0 within 1e-4 of a cumulative
          weight, or some y_c within 0.01 levels of an integer), which a comparison of two
          runtimes' draws leaves out.
        """
        channels = self._loc.shape[-2]
        cumulative = tf.math.cumsum(tf.nn.softmax(self._logits, axis=-1), axis=-1)[..., :-1]  # [..., K - 1]
        chosen = noise[..., :1]
        component = tf.reduce_sum(tf.cast(cumulative < chosen, tf.int32), axis=-1)  # [...]
        near = tf.reduce_any(tf.abs(cumulative - chosen) < 1e-4, axis=-1)
        one_hot = tf.one_hot(component, tf.shape(self._logits)[-1], dtype=self.dtype)[..., None, :]
        loc = tf.reduce_sum(self._loc * one_hot, axis=-1)  # [..., C]
        scale = tf.reduce_sum(self._scale * one_hot, axis=-1)
        coefficients = tf.reduce_sum(self.coefficients * one_hot[..., None, :], axis=-1)  # [..., C, C]
        values = []
        for c in range(channels):
            before = values if given is None else [given[..., j] for j in range(c)]
            shift = sum(coefficients[..., c, j] * self._centred(before[j]) for j in range(c))
            u = noise[..., c + 1]
            # log(1 - u), not log1p(-u): ONNX has no Log1p, and 1 - u is exact for u >= 1/2.
            y = loc[..., c] + shift - 0.5 + scale[..., c] * (tf.math.log(u) - tf.math.log(1.0 - u))
            near = near | (tf.abs(y - tf.round(y)) < 0.01)
            # abs: the ceiling of a y in (-1, 0] is -0.0, which JSON answers would spell out.
            values.append(tf.abs(tf.clip_by_value(tf.math.ceil(y), 0.0, self._num_levels - 1.0)))
        return tf.stack(values, axis=-1), near

    def _mean(self):
        means = []  # per channel, [..., K]
        for c in range(self._loc.shape[-2]):
            shift = sum(self.coefficients[..., c, j, :] * self._centred(means[j]) for j in range(c))
            logistic = discretized_logistic(self._loc[..., c, :] + shift, self._scale[..., c, :], self._num_levels)
            means.append(logistic.mean())
        weights = tf.nn.softmax(self._logits, axis=-1)[..., None, :]  # [..., 1, K]
        return tf.reduce_sum(tf.stack(means, axis=-2) * weights, axis=-1)


@keras.saving.register_keras_serializable(package="tfvae")
class CoupledLogisticMixtureLikelihood(DiscretizedLogisticMixtureLikelihood):
    """p(x|z) = Π_pixels CoupledLogisticMixture(x_pixel; ...), for 8-bit colour images.

    The likelihood of PixelCNN++ and NVAE: per pixel, a mixture of K discretised
    logistics shared by its channels, each channel's loc shifted linearly by the
    channels before it (see `CoupledLogisticMixture`). The decoder gives K(C + 2)
    numbers per channel of each pixel: K logits (a pixel's mixture logits are their
    sum over its channels), K locs and K scales (mapped as in
    `DiscretizedLogisticLikelihood`), and K(C - 1) coupling coefficients, tanh'd to
    (-1, 1) as in PixelCNN++; channel c reads its first c (the rest are unused, so the
    decoder's last layer stays one map per dimension). With one channel it is the
    mixture of `DiscretizedLogisticMixtureLikelihood` with one component per pixel
    drawn for the pixel.

    Args:
      event_shape: `(height, width, channels)` of one image.
      num_components: K.
      num_levels, scale_floor: as for `DiscretizedLogisticLikelihood`.

    Returns:
      `tfd.Independent` over height and width of `CoupledLogisticMixture`s.

    Example:
      >>> layer = CoupledLogisticMixtureLikelihood((4, 4, 3), num_components=2)
      >>> p = layer(tf.zeros([8, 4, 4, 3, 2 * 5]))
      >>> p.log_prob(tf.fill([8, 4, 4, 3], 128.0)).shape
      TensorShape([8])
    """

    family = "discretized_logistic_mixture_coupled"

    def __init__(self, event_shape, num_components=5, num_levels=NUM_LEVELS, scale_floor=1e-3, **kwargs):
        super().__init__(event_shape, num_components, num_levels=num_levels, scale_floor=scale_floor, **kwargs)
        if len(self.event_shape) != 3:
            raise ConfigError(
                f"A {self.family} likelihood couples the channels of image pixels: `event_shape` must be "
                f"(height, width, channels); got {self.event_shape}. Give the data as [N, height, width, "
                "channels], or use discretized_logistic_mixture for uncoupled dimensions."
            )
        self.channels = self.event_shape[-1]
        self.params_per_dimension = self.num_components * (self.channels + 2)

    def call(self, params):
        return tfd.Independent(self.pixels_of(params), reinterpreted_batch_ndims=2)

    def pixels_of(self, params):
        """The `CoupledLogisticMixture` of each pixel from its raw parameters `[..., C, K(C + 2)]`."""
        k, channels = self.num_components, self.channels
        logits, loc, raw_scale, raw_coefficients = tf.split(params, [k, k, k, k * (channels - 1)], axis=-1)
        # Slot j of channel c couples it to channel j; pad j to C (never read: j < c <= C - 1).
        coefficients = tf.reshape(tf.tanh(raw_coefficients), tf.concat([tf.shape(loc)[:-1], [channels - 1, k]], 0))
        coefficients = tf.pad(coefficients, [[0, 0]] * (coefficients.shape.rank - 2) + [[0, 1], [0, 0]])
        return CoupledLogisticMixture(
            tf.reduce_sum(logits, axis=-2),  # [..., K]
            self._locs(loc),
            self._scales(raw_scale),
            coefficients,
            self.num_levels,
        )

    def parameters_of(self, likelihood):
        pixels = likelihood.distribution
        return {
            "logits": pixels.logits,
            "loc": pixels.loc,
            "scale": pixels.scale,
            "coefficients": pixels.coefficients,
        }


class AutoregressiveImage(tfd.Distribution):
    """p(x | z) = Π_(i, j) p(x_ij | x_<ij, z): an image's pixels in raster order, each a
    `CoupledLogisticMixture` whose parameters depend on the pixels before it (through
    a `PixelCNN`) and on per-pixel features of z (the decoder's output).

    `log_prob` is exact and runs the masked network once per image, whatever the number
    of z samples the features carry. `sample` draws the pixels one at a time
    (`PixelCNN.draw`: each layer of the network computed once at each pixel, from the
    outputs it reads kept as the image is drawn), and `mean` is the greedy
    mean: each pixel at its conditional mean given the means before it (the exact mean
    of an autoregressive image has no closed form).

    Args:
      conditioning: `[..., H, W, F]` features of z per pixel; the batch shape is `...`.
      likelihood: the `PixelCNNLikelihood` whose network and head give the pixels' mixtures.
      training: whether the network runs in training mode (its dropout).
      context: the masked network's features of the images whose `log_prob` will be
        taken (`PixelCNNLikelihood.context_of`), computed once for several samples of z;
        None runs the network in `log_prob`.
    """

    def __init__(
        self, conditioning, likelihood, training=False, context=None, validate_args=False, name="AutoregressiveImage"
    ):
        parameters = dict(locals())
        with tf.name_scope(name):
            self._conditioning = tf.convert_to_tensor(conditioning)
            self._likelihood = likelihood
            self._training = training
            self._context = context
            super().__init__(
                dtype=self._conditioning.dtype,
                reparameterization_type=tfd.NOT_REPARAMETERIZED,
                validate_args=validate_args,
                allow_nan_stats=True,
                parameters=parameters,
                name=name,
            )

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return dict(conditioning=tfp.util.ParameterProperties(event_ndims=3))

    @property
    def conditioning(self):
        return self._conditioning

    def _event_shape(self):
        return tf.TensorShape(self._likelihood.event_shape)

    def _event_shape_tensor(self):
        return tf.constant(self._likelihood.event_shape, tf.int32)

    def _log_prob(self, x):
        context = self._context
        if context is None:
            context = self._likelihood.context_of(x, self._training)  # [*x_batch, H, W, filters]
        pixels = self._likelihood.pixel_mixture(context, self._conditioning)  # batch [..., H, W]
        return tf.reduce_sum(pixels.log_prob(x), axis=[-2, -1])

    def _sample_n(self, n, seed=None):
        conditioning = tf.broadcast_to(self._conditioning, tf.concat([[n], tf.shape(self._conditioning)], 0))
        shape = tf.concat([tf.shape(conditioning)[:-3], self._likelihood.noise_shape], 0)
        noise = tf.random.stateless_uniform(shape, tfp.random.sanitize_seed(seed), dtype=self.dtype)
        return self._likelihood.autoregress(conditioning, noise)

    def sample_of_noise(self, noise):
        """The image that uniforms `noise` `[..., H, W, C + 1]` on (0, 1) map to, pixel by
        pixel (`CoupledLogisticMixture.sample_of_noise` of each pixel given the ones
        drawn before it); `sample` draws the uniforms and calls the same loop."""
        return self._likelihood.autoregress(self._conditioning, noise)

    def draws_given(self, x, noise):
        """What each pixel of `x` would be drawn as from `noise` given the pixels of `x`
        before it, in one pass of the network: `(values [..., H, W, C], near_boundary
        [..., H, W])`. Where `x` is this distribution's `sample_of_noise(noise)`, values
        equal x but where `near_boundary`: how another runtime's draw is checked
        against this one's without the drift of a pixel-by-pixel comparison."""
        context = self._likelihood.context_of(x, self._training)
        pixels = self._likelihood.pixel_mixture(context, self._conditioning)
        return pixels.sample_of_noise(noise, given=x)

    def _mean(self):
        return self._likelihood.autoregress(self._conditioning, None)


@keras.saving.register_keras_serializable(package="tfvae")
class PixelCNNLikelihood(CoupledLogisticMixtureLikelihood):
    """p(x|z) = Π_(i, j) CoupledLogisticMixture(x_ij; θ_ij(x_<ij, z)), for 8-bit images: a
    PixelCNN decoder (PixelVAE, Gulrajani et al. 2017; the variational lossy autoencoder,
    Chen et al. 2017).

    A `PixelCNN` reads x and gives causal features c_ij (of the pixels before (i, j));
    the decoder gives features h_ij of z per pixel (`latent_features` per channel, so
    its output is `[batch, H, W, C, latent_features]`), and a per-pixel head mixes them:

        θ_ij = W_out elu(W_c c_ij + W_h h_ij + b),

    the raw parameters of `CoupledLogisticMixtureLikelihood` (K mixture logits, locs and
    scales and the channel couplings). The masked network reads x alone, so an
    importance-sampled log p(x) with K draws of z runs it once per image and only the
    head K times. The network's receptive field is local (3 + 2·`num_blocks` rows above,
    as many columns either side): texture comes from the pixels before, what lies
    beyond the field (the patch's colours, its scene) from z.

    `log_prob` is a probability of the 256^(H·W·C) images, so nats convert to bits/dim.
    Drawing an image takes H·W sequential steps (`AutoregressiveImage`, `PixelCNN.draw`),
    each computing the network at one pixel; `mean` is the greedy mean, each pixel at
    its conditional mean given the means before it.

    Args:
      event_shape: `(height, width, channels)` of one image.
      num_components: K, mixture components per pixel.
      num_levels, scale_floor: as for `DiscretizedLogisticLikelihood`.
      filters: channels of the masked network.
      num_blocks: its gated residual blocks per stack.
      latent_features: the decoder's features of z per channel of a pixel.
      hidden_units: width of the per-pixel head.
      dropout: dropout rate inside the masked network's blocks.
      initial_scale: the logistics' scale, in levels, that a fresh head predicts.

    Returns:
      `AutoregressiveImage` with event shape `(height, width, channels)`.

    Example:
      >>> layer = PixelCNNLikelihood((8, 8, 3), filters=16, num_blocks=1)
      >>> p = layer(tf.zeros([2, 8, 8, 3, 8]))
      >>> p.log_prob(tf.fill([2, 8, 8, 3], 128.0)).shape
      TensorShape([2])
    """

    family = "pixelcnn_logistic_mixture"

    def __init__(
        self,
        event_shape,
        num_components=5,
        num_levels=NUM_LEVELS,
        scale_floor=1e-3,
        filters=64,
        num_blocks=4,
        latent_features=8,
        hidden_units=64,
        dropout=0.0,
        initial_scale=8.0,
        **kwargs,
    ):
        super().__init__(event_shape, num_components, num_levels=num_levels, scale_floor=scale_floor, **kwargs)
        self.filters = _positive_int("filters", filters)
        self.num_blocks = _positive_int("num_blocks", num_blocks)
        self.latent_features = _positive_int("latent_features", latent_features)
        self.hidden_units = _positive_int("hidden_units", hidden_units)
        if not 0.0 <= float(dropout) < 1.0:
            raise ConfigError(f"`dropout` must be in [0, 1); got {dropout!r}.")
        self.dropout = float(dropout)
        self.mixture_params_per_channel = self.params_per_dimension  # K(C + 2)
        self.params_per_dimension = self.latent_features
        policy = self.dtype_policy
        self.network = PixelCNN(self.filters, self.num_blocks, self.dropout, self.num_levels, dtype=policy)
        self.context_projection = keras.layers.Dense(self.hidden_units, dtype=policy, name="context_projection")
        self.latent_projection = keras.layers.Dense(
            self.hidden_units, use_bias=False, dtype=policy, name="latent_projection"
        )
        self.initial_scale = float(initial_scale)
        if not 0.0 < self.initial_scale < (self.num_levels - 1) / 2.0:
            raise ConfigError(
                f"`initial_scale` is in levels and must lie in (0, {(self.num_levels - 1) / 2.0}); "
                f"got {initial_scale!r}."
            )
        self.head = keras.layers.Dense(
            self.channels * self.mixture_params_per_channel,
            bias_initializer=keras.initializers.Constant(self._initial_bias()),
            dtype=policy,
            name="head",
        )
        self._autoregress_graph = tf.function(self._autoregress, reduce_retracing=True)

    def _initial_bias(self):
        """The head's bias: zeros but for the raw scales, which start at `initial_scale`.

        The scales are what a PixelCNN learns first and moves furthest: from the
        broad default (88 levels at a raw 0) to a few levels, a raw value near -4, that
        Adam at 1e-3 takes thousands of steps to reach.
        """
        k = self.num_components
        raw_scale = np.log(np.expm1(self.initial_scale / ((self.num_levels - 1) / 2.0) - self.scale_floor))
        per_channel = np.zeros(self.mixture_params_per_channel, np.float32)
        per_channel[2 * k : 3 * k] = raw_scale  # [logits K, locs K, raw scales K, couplings K(C - 1)]
        return np.tile(per_channel, self.channels)

    @property
    def values_per_sample(self):
        """Float32 values held per (z sample, example) pair when `log_prob` runs: the
        head's hidden layer and outputs. The mixture's per-channel temporaries, once
        counted here 4 times over, are freed as the density is summed: on
        `make bench-photo-pixelcnn48`'s model the peak grew by 0.85 MB per sample of
        a step (45 to 180 samples), where this count says 2.3 MB."""
        height, width, channels = self.event_shape
        per_pixel = self.hidden_units + channels * self.mixture_params_per_channel
        return height * width * per_pixel

    def build(self, params_shape):
        if self.built:  # a `.keras` file builds it from its config, then the model again
            return
        height, width, channels = self.event_shape
        self.network.build((None, height, width, channels))
        self.context_projection.build((None, height, width, self.filters))
        self.latent_projection.build((None, height, width, channels * self.latent_features))
        self.head.build((None, height, width, self.hidden_units))
        self.built = True

    def call(self, params, training=None, context=None):
        # [..., H, W, C, latent_features] -> [..., H, W, C * latent_features]
        conditioning = tf.reshape(params, tf.concat([tf.shape(params)[:-2], [-1]], 0))
        return AutoregressiveImage(conditioning, self, training=bool(training), context=context)

    def context_of(self, x, training=False):
        """The masked network's features of images x `[..., H, W, C]`, `[..., H, W, filters]`."""
        leading = tf.shape(x)[:-3]
        flat = tf.reshape(x, tf.concat([[-1], self.event_shape], 0))
        features = self.network(flat, training=training)
        return tf.reshape(features, tf.concat([leading, tf.shape(features)[1:]], 0))

    def pixel_mixture(self, context, conditioning):
        """The `CoupledLogisticMixture` of each pixel from the masked network's features
        `context` and the features of z `conditioning` (broadcast against each other)."""
        hidden = tf.nn.elu(self.context_projection(context) + self.latent_projection(conditioning))
        raw = self.head(hidden)  # [..., C * K(C + 2)]
        raw = tf.reshape(raw, tf.concat([tf.shape(raw)[:-1], [self.channels, self.mixture_params_per_channel]], 0))
        return self.pixels_of(raw)

    @property
    def noise_shape(self):
        """`(H, W, C + 1)`: the uniforms one image is drawn from (`AutoregressiveImage.sample_of_noise`)."""
        return (*self.event_shape[:2], self.channels + 1)

    def autoregress(self, conditioning, noise):
        """Images pixel by pixel for features of z `[..., H, W, F]`: drawn from uniforms
        `noise` `[..., H, W, C + 1]`, or at their greedy means where `noise` is None."""
        leading = tf.shape(conditioning)[:-3]
        flat = tf.reshape(conditioning, tf.concat([[-1], tf.shape(conditioning)[-3:]], 0))
        if noise is not None:
            noise = tf.broadcast_to(noise, tf.concat([leading, self.noise_shape], 0))
            noise = tf.reshape(noise, [-1, *self.noise_shape])
        images = self._autoregress_graph(flat, noise)
        return tf.reshape(images, tf.concat([leading, self.event_shape], 0))

    def _autoregress(self, conditioning, noise):
        def pixel_of(features, i, j):
            pixel = self.pixel_mixture(features, at_pixel(conditioning, i, j))  # batch [N]
            return pixel.mean() if noise is None else pixel.sample_of_noise(at_pixel(noise, i, j))[0]

        def at_pixel(x, i, j):  # x[:, i, j]; row i taken outside the columns' loop once exported
            return column(column(x, i), j)

        return self.network.draw(tf.shape(conditioning)[0], self.event_shape, pixel_of)

    def parameters_of(self, likelihood):
        return {"conditioning": likelihood.conditioning}

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            num_blocks=self.num_blocks,
            latent_features=self.latent_features,
            hidden_units=self.hidden_units,
            dropout=self.dropout,
            initial_scale=self.initial_scale,
        )
        return config


LIKELIHOODS = {
    "bernoulli": BernoulliLikelihood,
    "gaussian": GaussianLikelihood,
    "discretized_logistic": DiscretizedLogisticLikelihood,
    "discretized_logistic_mixture": DiscretizedLogisticMixtureLikelihood,
    "discretized_logistic_mixture_coupled": CoupledLogisticMixtureLikelihood,
    "pixelcnn_logistic_mixture": PixelCNNLikelihood,
}


def get_likelihood(likelihood, event_shape, scale=None):
    """A likelihood layer from a family name (a key of `LIKELIHOODS`) or a layer."""
    if isinstance(likelihood, Likelihood):
        return likelihood
    if likelihood == "gaussian":
        return GaussianLikelihood(event_shape, scale=scale)
    if likelihood in LIKELIHOODS:
        return LIKELIHOODS[likelihood](event_shape)
    raise ConfigError(
        f"`likelihood` must be one of {sorted(LIKELIHOODS)} or a `tfvae.Likelihood` layer; got {likelihood!r}."
    )
