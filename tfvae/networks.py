"""Encoder and decoder builders (MLP and convolutional) from a small config.

An encoder maps x `[batch, *input_shape]` to the posterior's parameter tensor
`[batch, params_size]`; a decoder maps z `[batch, latent_dim]` to the likelihood's
parameters `[batch, *input_shape]`. Users may pass any Keras models with those
signatures instead.
"""
import dataclasses
import math

import keras

from tfvae.errors import ConfigError

ARCHITECTURES = ("mlp", "conv")


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """What the builders need.

    Args:
      input_shape: shape of one example x, e.g. `(784,)` or `(28, 28, 1)`.
      latent_dim: size of z.
      arch: "mlp" or "conv".
      hidden_units: widths of the MLP's hidden layers (encoder order; the decoder
        mirrors them). For "conv", the last one is the dense layer after the convolutions.
      filters: channels of the stride-2 convolutions ("conv" only).
      activation: any Keras activation name.
      image_shape: `(height, width, channels)` the conv nets reshape x to; inferred
        from `input_shape` when None (a square number of pixels is a square image).
    """

    input_shape: tuple
    latent_dim: int
    arch: str = "mlp"
    hidden_units: tuple = (512, 256)
    filters: tuple = (32, 64)
    activation: str = "relu"
    image_shape: tuple = None

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
                f"`activation` {self.activation!r} is not a Keras activation; use e.g. "
                "'relu', 'gelu', 'tanh' or 'elu'."
            ) from None
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        object.__setattr__(self, "hidden_units", tuple(self.hidden_units))
        object.__setattr__(self, "filters", tuple(self.filters))
        if self.image_shape is None:
            object.__setattr__(self, "image_shape", infer_image_shape(self.input_shape))
        else:
            object.__setattr__(self, "image_shape", tuple(self.image_shape))
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


def build_encoder(config, output_size, name="encoder"):
    """x `[batch, *input_shape]` to parameters `[batch, output_size]`."""
    inputs = keras.Input(config.input_shape, name="x")
    if config.arch == "conv":
        h = keras.layers.Reshape(config.image_shape)(inputs)
        for filters in config.filters:
            h = keras.layers.Conv2D(
                filters, 3, strides=2, padding="same", activation=config.activation
            )(h)
        h = keras.layers.Flatten()(h)
        h = keras.layers.Dense(config.hidden_units[-1], activation=config.activation)(h)
    else:
        h = keras.layers.Flatten()(inputs) if len(config.input_shape) > 1 else inputs
        for units in config.hidden_units:
            h = keras.layers.Dense(units, activation=config.activation)(h)
    outputs = keras.layers.Dense(output_size, name="posterior_params")(h)
    return keras.Model(inputs, outputs, name=name)


def build_decoder(config, name="decoder"):
    """z `[batch, latent_dim]` to likelihood parameters `[batch, *input_shape]`."""
    inputs = keras.Input((config.latent_dim,), name="z")
    if config.arch == "conv":
        height, width, channels = config.image_shape
        stride = 2 ** len(config.filters)
        h = keras.layers.Dense(config.hidden_units[-1], activation=config.activation)(inputs)
        h = keras.layers.Dense(
            (height // stride) * (width // stride) * config.filters[-1],
            activation=config.activation,
        )(h)
        h = keras.layers.Reshape((height // stride, width // stride, config.filters[-1]))(h)
        for filters in reversed(config.filters):
            h = keras.layers.Conv2DTranspose(
                filters, 3, strides=2, padding="same", activation=config.activation
            )(h)
        h = keras.layers.Conv2D(channels, 3, padding="same")(h)
    else:
        h = inputs
        for units in reversed(config.hidden_units):
            h = keras.layers.Dense(units, activation=config.activation)(h)
        h = keras.layers.Dense(math.prod(config.input_shape))(h)
    outputs = keras.layers.Reshape(config.input_shape, name="likelihood_params")(h)
    return keras.Model(inputs, outputs, name=name)
