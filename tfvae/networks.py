"""Encoder and decoder builders (MLP and convolutional) from a small config.

An encoder maps x `[batch, *input_shape]` to the posterior's parameter tensor
`[batch, params_size]`; a decoder maps z `[batch, latent_dim]` to the likelihood's
parameters `[batch, *input_shape]`. Users may pass any Keras models with those
signatures instead.
"""

import dataclasses
import math

import keras
import numpy as np

from tfvae.errors import ConfigError

ARCHITECTURES = ("mlp", "gated", "conv")


@keras.saving.register_keras_serializable(package="tfvae")
class GatedDense(keras.layers.Layer):
    """A gated dense layer: h = activation(W x + b) * sigmoid(V x + c).

    The layer of Dauphin et al. (2017) that Tomczak & Welling (2018) use in the MLP
    VAEs of the VampPrior paper. One `Dense` of width 2 * units computes both halves,
    so a gated layer costs one matmul.

    Args:
      units: width of h.
      activation: applied to the linear half; None (the paper's choice) keeps it linear.

    Returns:
      `[batch, units]`.

    Example:
      >>> GatedDense(300)(np.zeros((2, 784), "float32")).shape
      (2, 300)
    """

    def __init__(self, units, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation = keras.activations.get(activation)
        self.projection = keras.layers.Dense(2 * self.units, name="projection")

    def build(self, input_shape):
        self.projection.build(input_shape)

    def call(self, inputs):
        linear, gate = keras.ops.split(self.projection(inputs), 2, axis=-1)
        return self.activation(linear) * keras.ops.sigmoid(gate)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, activation=keras.activations.serialize(self.activation))
        return config


@keras.saving.register_keras_serializable(package="tfvae")
class DropoutAfter(keras.layers.Wrapper):
    """A layer whose outputs go through dropout in training (Srivastava et al. 2014).

    In training each output is zeroed with probability `rate` and the others scaled by
    1 / (1 - rate); otherwise the wrapper is the wrapped layer itself, so evaluation,
    sampling and exports run the whole network. The mask's random stream belongs to the
    wrapper's `keras.layers.Dropout`, which run checkpoints keep (`tfvae.checkpointing`).

    Args:
      layer: the layer whose outputs are dropped.
      rate: the probability of dropping each output, in [0, 1).

    Returns:
      `layer`'s outputs, some zeroed in training.

    Example:
      >>> hidden = DropoutAfter(GatedDense(300), rate=0.1)
      >>> hidden(np.ones((2, 784), "float32"), training=False).shape
      (2, 300)
    """

    def __init__(self, layer, rate, **kwargs):
        super().__init__(layer, **kwargs)
        self.rate = float(rate)
        self.dropout = keras.layers.Dropout(self.rate)

    def call(self, inputs, training=False):
        return self.dropout(self.layer(inputs), training=training)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate)
        return config


def hidden_layer(config, units, rate=None):
    """One hidden layer of the "mlp" or "gated" architecture, followed in training by
    dropout at `rate` (None: `config.dropout`) when that is not 0."""
    if config.arch == "gated":
        layer = GatedDense(units, activation=config.activation)
    else:
        layer = keras.layers.Dense(units, activation=config.activation)
    rate = config.dropout if rate is None else rate
    return DropoutAfter(layer, rate) if rate else layer


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """What the builders need.

    Args:
      input_shape: shape of one example x, e.g. `(784,)` or `(28, 28, 1)`.
      latent_dim: size of z.
      arch: "mlp", "gated" (an MLP of `GatedDense` layers) or "conv".
      hidden_units: widths of the MLP's hidden layers (encoder order; the decoder
        mirrors them). For "conv", the last one is the dense layer after the convolutions.
      filters: channels of the stride-2 convolutions ("conv" only).
      activation: any Keras activation name.
      image_shape: `(height, width, channels)` the conv nets reshape x to; inferred
        from `input_shape` when None (a square number of pixels is a square image).
      residual_blocks: "conv" only: residual blocks after each stride-2 convolution of
        the encoder and each transposed convolution of the decoder, at that resolution
        (`residual_block`); 0 for none.
      params_per_dimension: the likelihood's parameters per dimension of x; the
        decoder outputs `[batch, *input_shape]` for 1, `[batch, *input_shape, k]` for k.
      input_normalization: `(mean, variance)` the encoder standardises x with first
        (scalars, or arrays of `input_shape`), or None.
      dropout: "mlp" and "gated" only: the rate of the dropout after each hidden layer
        in training (`DropoutAfter`), in the hierarchy's conditionals too; 0 for none.
      decoder_dropout: the decoder's own rate where it differs from `dropout` (None:
        `dropout`): e.g. 0.1 with `dropout=0` regularises the generative network p(x|z)
        alone and leaves the encoder's q(z|x) its whole network.
    """

    input_shape: tuple
    latent_dim: int
    arch: str = "mlp"
    hidden_units: tuple = (512, 256)
    filters: tuple = (32, 64)
    activation: str = "relu"
    image_shape: tuple = None
    residual_blocks: int = 0
    params_per_dimension: int = 1
    input_normalization: tuple = None
    dropout: float = 0.0
    decoder_dropout: float = None

    @property
    def decoder_rate(self):
        """The dropout rate after the decoder's hidden layers."""
        return self.dropout if self.decoder_dropout is None else self.decoder_dropout

    def __post_init__(self):
        if self.arch not in ARCHITECTURES:
            raise ConfigError(f"`arch` must be one of {ARCHITECTURES}; got {self.arch!r}.")
        if self.latent_dim <= 0:
            raise ConfigError(f"`latent_dim` must be positive; got {self.latent_dim}.")
        if not self.hidden_units or any(u <= 0 for u in self.hidden_units):
            raise ConfigError(f"`hidden_units` must be positive ints; got {self.hidden_units!r}.")
        try:
            keras.activations.get(self.activation)
        except ValueError:
            raise ConfigError(
                f"`activation` {self.activation!r} is not a Keras activation; use e.g. 'relu', 'gelu', 'tanh' or 'elu'."
            ) from None
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        object.__setattr__(self, "hidden_units", tuple(self.hidden_units))
        object.__setattr__(self, "filters", tuple(self.filters))
        if self.image_shape is None:
            object.__setattr__(self, "image_shape", infer_image_shape(self.input_shape))
        else:
            object.__setattr__(self, "image_shape", tuple(self.image_shape))
        if not isinstance(self.residual_blocks, int) or self.residual_blocks < 0:
            raise ConfigError(f"`residual_blocks` must be an int >= 0; got {self.residual_blocks!r}.")
        if self.residual_blocks and self.arch != "conv":
            raise ConfigError(f"`residual_blocks` needs arch='conv'; got arch={self.arch!r}.")
        rates = {"dropout": self.dropout}
        if self.decoder_dropout is not None:
            rates["decoder_dropout"] = self.decoder_dropout
        for name, rate in rates.items():
            if not 0 <= rate < 1:
                raise ConfigError(f"`{name}` must be a rate in [0, 1) (0: none); got {rate!r}.")
            if rate and self.arch == "conv":
                raise ConfigError(f"`{name}` is for the MLPs (arch 'mlp' or 'gated'); got arch='conv'.")
        if self.arch == "conv":
            self._check_conv_shape()

    def _check_conv_shape(self):
        if self.image_shape is None or math.prod(self.image_shape) != math.prod(self.input_shape):
            raise ConfigError(
                f"arch='conv' needs an image shape (height, width, channels) with "
                f"{math.prod(self.input_shape)} values for input_shape {self.input_shape}; "
                f"got image_shape={self.image_shape}. Pass image_shape=... or use arch='mlp'."
            )
        stride = 2 ** len(self.filters)
        height, width = self.image_shape[:2]
        if height % stride or width % stride:
            raise ConfigError(
                f"arch='conv' halves the image {len(self.filters)} times, so height and width "
                f"must be multiples of {stride}; got image_shape={self.image_shape}. "
                "Use fewer `filters` or arch='mlp'."
            )


def infer_image_shape(input_shape):
    """`(height, width, channels)` for an example shape, or None when it is not an image."""
    if len(input_shape) == 1:
        side = math.isqrt(input_shape[0])
        return (side, side, 1) if side * side == input_shape[0] else None
    if len(input_shape) == 2:
        return (*input_shape, 1)
    if len(input_shape) == 3:
        return tuple(input_shape)
    return None


def residual_block(h, activation):
    """h + conv(act(conv(act(h)))): two 3x3 convolutions at h's resolution and channels,
    added to h (pre-activation, He et al. 2016). The second convolution starts at zero,
    so a fresh block is the identity and a deep stack trains like a shallow one."""
    filters = h.shape[-1]
    update = keras.layers.Activation(activation)(h)
    update = keras.layers.Conv2D(filters, 3, padding="same")(update)
    update = keras.layers.Activation(activation)(update)
    update = keras.layers.Conv2D(filters, 3, padding="same", kernel_initializer="zeros")(update)
    return keras.layers.Add()([h, update])


def _label_input(num_classes):
    """The one-hot class input of a conditional network, or None."""
    return keras.Input((num_classes,), name="labels_one_hot") if num_classes else None


def build_encoder(config, output_size, name="encoder", num_classes=None):
    """x `[batch, *input_shape]` to parameters `[batch, output_size]`.

    With `num_classes`, the network takes `[x, one_hot(labels)]` and joins the labels
    to the flattened features (the conditional VAE's q(z|x, y)).
    """
    inputs = keras.Input(config.input_shape, name="x")
    labels = _label_input(num_classes)
    x = inputs
    if config.input_normalization is not None:
        mean, variance = config.input_normalization
        # Per-dimension statistics normalise over every axis of an example.
        axis = tuple(range(1, len(config.input_shape) + 1)) if np.ndim(mean) else None
        x = keras.layers.Normalization(axis=axis, mean=mean, variance=variance, name="standardize")(inputs)
    if config.arch == "conv":
        h = keras.layers.Reshape(config.image_shape)(x)
        for filters in config.filters:
            h = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation=config.activation)(h)
            for _ in range(config.residual_blocks):
                h = residual_block(h, config.activation)
        h = keras.layers.Flatten()(h)
        if labels is not None:
            h = keras.layers.Concatenate()([h, labels])
        h = keras.layers.Dense(config.hidden_units[-1], activation=config.activation)(h)
    else:
        h = keras.layers.Flatten()(x) if len(config.input_shape) > 1 else x
        if labels is not None:
            h = keras.layers.Concatenate()([h, labels])
        for units in config.hidden_units:
            h = hidden_layer(config, units)(h)
    outputs = keras.layers.Dense(output_size, name="posterior_params")(h)
    return keras.Model(inputs if labels is None else [inputs, labels], outputs, name=name)


def build_decoder(config, name="decoder", num_classes=None):
    """z `[batch, latent_dim]` to likelihood parameters `[batch, *input_shape(, k)]`.

    With `num_classes`, the network takes `[z, one_hot(labels)]` (p(x|y, z)).
    """
    inputs = keras.Input((config.latent_dim,), name="z")
    labels = _label_input(num_classes)
    h = inputs if labels is None else keras.layers.Concatenate()([inputs, labels])
    if config.arch == "conv":
        height, width, channels = config.image_shape
        stride = 2 ** len(config.filters)
        h = keras.layers.Dense(config.hidden_units[-1], activation=config.activation)(h)
        h = keras.layers.Dense(
            (height // stride) * (width // stride) * config.filters[-1],
            activation=config.activation,
        )(h)
        h = keras.layers.Reshape((height // stride, width // stride, config.filters[-1]))(h)
        for filters in reversed(config.filters):
            h = keras.layers.Conv2DTranspose(filters, 3, strides=2, padding="same", activation=config.activation)(h)
            for _ in range(config.residual_blocks):
                h = residual_block(h, config.activation)
        h = keras.layers.Conv2D(channels * config.params_per_dimension, 3, padding="same")(h)
    else:
        for units in reversed(config.hidden_units):
            h = hidden_layer(config, units, config.decoder_rate)(h)
        h = keras.layers.Dense(math.prod(config.input_shape) * config.params_per_dimension)(h)
    per_dimension = () if config.params_per_dimension == 1 else (config.params_per_dimension,)
    outputs = keras.layers.Reshape((*config.input_shape, *per_dimension), name="likelihood_params")(h)
    return keras.Model(inputs if labels is None else [inputs, labels], outputs, name=name)
