"""Inverse autoregressive flows: masked (MADE) layers in Keras 3 and the IAF posterior.

TFP's `tfb.AutoregressiveNetwork` is a tf_keras layer, which a Keras 3 model can
neither track nor save, so the masked layers are written here; the flow itself is
TFP's `tfb.MaskedAutoregressiveFlow`, inverted (Kingma et al. 2016: an IAF computes
every output in one pass from its input, so sampling z ~ q(z|x) is parallel).
"""

import functools

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.distributions import _positive_int, float32_layer, log_prob_of_noise
from tfvae.errors import ConfigError, ExportError

tfd = tfp.distributions
tfb = tfp.bijectors

INPUT_ORDERS = ("left-to-right", "right-to-left")


def input_degrees(event_size, order="left-to-right"):
    """The MADE degree of each input: output d may depend on inputs of smaller degree."""
    degrees = np.arange(1, event_size + 1)
    return degrees if order == "left-to-right" else degrees[::-1].copy()


def hidden_degrees(units, event_size):
    """Degrees of a hidden layer's units, cycling through 1 .. event_size - 1 (Germain et al. 2015)."""
    return np.arange(units) % max(1, event_size - 1) + 1


@keras.saving.register_keras_serializable(package="tfvae")
class MaskedDense(keras.layers.Layer):
    """y = activation(x (W ⊙ M) + b), with the binary mask M of MADE (Germain et al. 2015).

    M[i, j] = 1 when unit j may see input i: `output_degrees[j] >= input_degrees[i]`
    (hidden layers), or `>` with `strict=True` (the output layer, so output d sees only
    inputs of degree below d's).

    Args:
      input_degrees, output_degrees: ints per input and per output unit.
      strict: compare degrees with `>` instead of `>=`.
      activation: a Keras activation.
      kernel_initializer: of W ("zeros" makes the layer output its bias).

    Returns:
      `[..., len(output_degrees)]`.

    Example:
      >>> layer = MaskedDense(input_degrees=[1, 2, 3], output_degrees=[1, 2, 3], strict=True)
      >>> layer(np.ones((4, 3), "float32")).shape
      (4, 3)
    """

    def __init__(
        self,
        input_degrees,
        output_degrees,
        strict=False,
        activation=None,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.input_degrees = [int(d) for d in input_degrees]
        self.output_degrees = [int(d) for d in output_degrees]
        self.strict = bool(strict)
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        compare = np.greater if self.strict else np.greater_equal
        self.mask = compare(np.array(self.output_degrees)[None, :], np.array(self.input_degrees)[:, None]).astype(
            "float32"
        )  # [inputs, units]

    def build(self, input_shape):
        inputs, units = self.mask.shape
        self.kernel = self.add_weight(shape=(inputs, units), initializer=self.kernel_initializer, name="kernel")
        self.bias = self.add_weight(shape=(units,), initializer="zeros", name="bias")

    def call(self, inputs):
        mask = keras.ops.convert_to_tensor(self.mask, dtype=self.compute_dtype)
        return self.activation(keras.ops.matmul(inputs, self.kernel * mask) + self.bias)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], len(self.output_degrees))

    def get_config(self):
        config = super().get_config()
        config.update(
            input_degrees=self.input_degrees,
            output_degrees=self.output_degrees,
            strict=self.strict,
            activation=keras.activations.serialize(self.activation),
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config


@keras.saving.register_keras_serializable(package="tfvae")
class AutoregressiveNetwork(keras.layers.Layer):
    """A MADE network: `params` outputs per dimension of z, output d a function of z_<d only.

    The Keras 3 counterpart of `tfb.AutoregressiveNetwork`, with a context vector h
    (unmasked: it is not part of z) added to the first hidden layer, as the IAF of
    Kingma et al. (2016) conditions each step on the encoder's h. The output layer
    starts at zero, so a fresh network outputs zeros.

    Args:
      event_size: size of z.
      hidden_units: widths of the masked hidden layers.
      params: outputs per dimension (2: a shift and a log-scale).
      context_size: size of h (0: no context).
      input_order: "left-to-right" or "right-to-left" (alternate between flow steps).
      activation: of the hidden layers.

    Returns:
      `params` tensors `[..., event_size]` from `call(z, context)`.

    Example:
      >>> made = AutoregressiveNetwork(4, hidden_units=(16,), context_size=3)
      >>> shift, log_scale = made(np.zeros((2, 4), "float32"), np.zeros((2, 3), "float32"))
    """

    def __init__(
        self,
        event_size,
        hidden_units=(64,),
        params=2,
        context_size=0,
        input_order="left-to-right",
        activation="elu",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.event_size = _positive_int("event_size", event_size)
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.params = _positive_int("params", params)
        self.context_size = int(context_size)
        if input_order not in INPUT_ORDERS:
            raise ConfigError(f"`input_order` must be one of {INPUT_ORDERS}; got {input_order!r}.")
        if not self.hidden_units or min(self.hidden_units) <= 0:
            raise ConfigError(f"`hidden_units` must be positive widths; got {hidden_units!r}.")
        self.input_order = input_order
        self.activation = keras.activations.get(activation)
        degrees = input_degrees(self.event_size, input_order)
        self.hidden = []
        previous = degrees
        for units in self.hidden_units:
            current = hidden_degrees(units, self.event_size)
            self.hidden.append(MaskedDense(previous, current))
            previous = current
        self.context_projection = (
            keras.layers.Dense(self.hidden_units[0], use_bias=False) if self.context_size else None
        )
        self.output_layer = MaskedDense(
            previous, np.tile(degrees, self.params), strict=True, kernel_initializer="zeros"
        )

    def build(self, z_shape, context_shape=None):
        shape = z_shape
        for layer in self.hidden:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        if self.context_projection is not None:
            self.context_projection.build((None, self.context_size))
        self.output_layer.build(shape)

    def call(self, z, context=None):
        h = self.hidden[0](z)
        if self.context_projection is not None:
            h = h + self.context_projection(context)
        h = self.activation(h)
        for layer in self.hidden[1:]:
            h = self.activation(layer(h))
        return tuple(keras.ops.split(self.output_layer(h), self.params, axis=-1))

    def get_config(self):
        config = super().get_config()
        config.update(
            event_size=self.event_size,
            hidden_units=list(self.hidden_units),
            params=self.params,
            context_size=self.context_size,
            input_order=self.input_order,
            activation=keras.activations.serialize(self.activation),
        )
        return config


def _shift_and_log_scale(network, context, z):
    # Under a mixed-precision policy the MADE computes in half precision, like every
    # network; the flow's arithmetic stays in z's float32.
    return tuple(tf.cast(params, z.dtype) for params in network(z, context))


@keras.saving.register_keras_serializable(package="tfvae")
class IAFPosterior(keras.layers.Layer):
    """q(z|x) as a diagonal Gaussian pushed through inverse autoregressive flow steps.

    The encoder's output holds `loc`, an unconstrained scale and a context vector h.
    With z_0 ~ N(loc, diag(scale²)) and, for each step t, (m_t, s_t) = MADE_t(z_{t-1}, h):

        z_t = (z_{t-1} - m_t) · exp(-s_t),
        log q(z_T|x) = log N(z_0; loc, scale) + Σ_t Σ_d s_t,d

    (the Jacobian of each step is triangular, because MADE's output d sees only
    z_<d). Consecutive steps reverse the order of the dimensions. Each step is TFP's
    `tfb.Invert(tfb.MaskedAutoregressiveFlow(...))`, so the result is a
    `tfd.TransformedDistribution` whose `log_prob` of its own samples reuses the
    forward pass (TFP caches it) instead of inverting the flow dimension by dimension.
    The MADE networks start at zero, so a fresh IAF posterior is the Gaussian.

    Args:
      latent_dim: size of z.
      flow_steps: number of IAF steps T (>= 1).
      context_size: size of h.
      hidden_units: widths of each step's MADE network.
      scale_floor: smallest scale of the base Gaussian.

    Returns:
      A `tfd.TransformedDistribution` with batch shape `params.shape[:-1]` and event
      shape `[latent_dim]`.

    Example:
      >>> layer = IAFPosterior(latent_dim=2, flow_steps=2, context_size=4)
      >>> q = layer(tf.zeros([8, IAFPosterior.params_size(2, context_size=4)]))
      >>> q.log_prob(q.sample(5)).shape
      TensorShape([5, 8])
    """

    covariance = "iaf"

    def __init__(self, latent_dim, flow_steps=2, context_size=None, hidden_units=None, scale_floor=1e-4, **kwargs):
        super().__init__(**float32_layer(kwargs))
        self.latent_dim = _positive_int("latent_dim", latent_dim)
        self.flow_steps = _positive_int("flow_steps", flow_steps)
        self.context_size = int(context_size if context_size is not None else default_context_size(latent_dim))
        self.hidden_units = tuple(hidden_units or default_flow_hidden_units(latent_dim))
        self.scale_floor = float(scale_floor)
        self.steps = [
            AutoregressiveNetwork(
                self.latent_dim,
                self.hidden_units,
                context_size=self.context_size,
                input_order=INPUT_ORDERS[step % 2],
                name=f"made_{step}",
            )
            for step in range(self.flow_steps)
        ]

    @staticmethod
    def params_size(latent_dim, context_size=None):
        """Size of the last axis of the parameter tensor this layer expects."""
        return 2 * latent_dim + (context_size if context_size is not None else default_context_size(latent_dim))

    @property
    def num_params(self):
        """The encoder output size this layer reads."""
        return self.params_size(self.latent_dim, self.context_size)

    def parameters_of(self, posterior):
        raise ExportError(
            "An IAF posterior is not a Gaussian with parameters a client could sample from; "
            "`posterior_sample_outputs(x, noise)` gives the sample of q(z|x) for N(0, I) noise "
            "and its log density (what the exported encoder returns)."
        )

    def sample_of_noise(self, posterior, noise):
        """`(z, log q(z))` for the sample z that the noise ε `[batch, latent_dim]` (draws of
        N(0, I)) gives: z_0 = loc + scale · ε, then the flow,
        log q(z) = log N(z_0; loc, scale) − log |det ∂z/∂z_0|. What an exported encoder
        computes (the base Gaussian's density written from its parameters, as
        `GaussianPosterior.sample_of_noise` explains)."""
        base = posterior.distribution
        scale = base.scale.diag_part()
        z_0 = base.loc + scale * noise
        log_q_0 = log_prob_of_noise(noise, scale)
        return posterior.bijector.forward(z_0), log_q_0 - posterior.bijector.forward_log_det_jacobian(z_0, 1)

    def build(self, input_shape):
        for step in self.steps:
            step.build((None, self.latent_dim))

    def base(self, params):
        """The Gaussian q(z_0|x) before the flow (what a VampPrior mixes over its pseudo-inputs)."""
        params = tf.cast(params, self.compute_dtype)  # called directly, past Layer.__call__'s autocast
        loc = params[..., : self.latent_dim]
        scale = tf.nn.softplus(params[..., self.latent_dim : 2 * self.latent_dim]) + self.scale_floor
        return tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale)

    def call(self, params):
        context = params[..., 2 * self.latent_dim :]
        # tfb.Chain applies its last bijector first: step 0 acts on z_0.
        flow = tfb.Chain(
            [
                tfb.Invert(
                    tfb.MaskedAutoregressiveFlow(
                        shift_and_log_scale_fn=functools.partial(_shift_and_log_scale, step, context)
                    )
                )
                for step in reversed(self.steps)
            ]
        )
        return tfd.TransformedDistribution(self.base(params), flow)

    def get_config(self):
        config = super().get_config()
        config.update(
            latent_dim=self.latent_dim,
            flow_steps=self.flow_steps,
            context_size=self.context_size,
            hidden_units=list(self.hidden_units),
            scale_floor=self.scale_floor,
        )
        return config


def default_context_size(latent_dim):
    """h as wide as z: enough for the encoder to steer each step, little extra cost."""
    return latent_dim


def default_flow_hidden_units(latent_dim):
    """Two masked layers, 8 units per dimension of z (at least 64)."""
    width = max(64, 8 * latent_dim)
    return (width, width)
