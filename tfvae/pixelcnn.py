"""A masked convolutional network over images: PixelCNN++'s two causal stacks as Keras 3 layers.

`PixelCNN` maps an image x `[batch, H, W, C]` (8-bit levels) to features
`[batch, H, W, filters]` whose value at pixel (i, j) depends only on the pixels before
it in raster order: the rows above, and the pixels to the left in row i. It is the
network of PixelCNN++ (Salimans et al. 2017) at one resolution: a vertical stack u that
sees the rows above (down-shifted 2×3 convolutions) and a horizontal stack ul that also
sees the current row's left part (down-right-shifted 2×2 convolutions) and reads u at
each block, so there is no blind spot; blocks are gated residual layers. TFP's
`tfd.PixelCNN` builds the same network from tf_keras layers, which a Keras 3 model does
not track; these layers are Keras 3 and round-trip through `.keras`.
"""

import keras
from keras import ops

DIRECTIONS = ("down", "down_right")


def down_shift(x):
    """x moved one row down, the top row zeros: pixel (i, j) then holds row i - 1's."""
    return ops.pad(x, [[0, 0], [1, 0], [0, 0], [0, 0]])[:, :-1]


def right_shift(x):
    """x moved one column right, the left column zeros."""
    return ops.pad(x, [[0, 0], [0, 0], [1, 0], [0, 0]])[:, :, :-1]


def concat_elu(x):
    """elu([x, -x]) on the channels: PixelCNN++'s nonlinearity, which keeps both signs."""
    return keras.activations.elu(ops.concatenate([x, -x], axis=-1))


@keras.saving.register_keras_serializable(package="tfvae")
class ShiftedConv2D(keras.layers.Layer):
    """A convolution whose output at (i, j) reads no pixel below row i, and, for
    "down_right", none to the right of column j either.

    "down": a (kh, kw) kernel over rows i - kh + 1 .. i and columns j - (kw - 1)/2 ..
    j + (kw - 1)/2 (kw odd). "down_right": rows i - kh + 1 .. i, columns j - kw + 1 .. j.
    Both read pixel (i, j) itself: `PixelCNN` shifts its first layers' outputs so that
    the features at (i, j) never see x at (i, j).

    Args:
      filters: output channels.
      kernel_size: `(rows, columns)`.
      direction: "down" or "down_right".
      kernel_initializer: any Keras initializer.

    Returns:
      `[batch, H, W, filters]`.

    Example:
      >>> ShiftedConv2D(8, (2, 3), "down")(np.zeros((1, 4, 4, 3), "float32")).shape
      (1, 4, 4, 8)
    """

    def __init__(self, filters, kernel_size, direction, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        if direction not in DIRECTIONS:
            raise ValueError(f"`direction` must be one of {DIRECTIONS}; got {direction!r}.")
        self.filters = int(filters)
        self.kernel_size = tuple(int(k) for k in kernel_size)
        self.direction = direction
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        rows, columns = self.kernel_size
        left = columns - 1 if direction == "down_right" else (columns - 1) // 2
        self.padding = [[0, 0], [rows - 1, 0], [left, columns - 1 - left], [0, 0]]
        self.convolution = keras.layers.Conv2D(
            self.filters,
            self.kernel_size,
            padding="valid",
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name="convolution",
        )

    def build(self, input_shape):
        height, width = input_shape[1], input_shape[2]
        rows, columns = self.kernel_size
        padded = (
            input_shape[0],
            None if height is None else height + rows - 1,
            None if width is None else width + columns - 1,
            input_shape[3],
        )
        self.convolution.build(padded)

    def call(self, x):
        return self.convolution(ops.pad(x, self.padding))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=list(self.kernel_size),
            direction=self.direction,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config


@keras.saving.register_keras_serializable(package="tfvae")
class GatedResidual(keras.layers.Layer):
    """PixelCNN++'s gated residual block with shifted convolutions:

        c = conv₁(concat_elu(x)) [+ W concat_elu(a)],   [a, b] = conv₂(dropout(concat_elu(c))),
        output = x + a ⊙ σ(b),

    where `a` (the auxiliary input) is the vertical stack's state that the horizontal
    stack reads. The second convolution starts small (scale 0.1), so a fresh block is
    near the identity.

    Args:
      filters: channels of x and of the output.
      kernel_size: `(rows, columns)` of both convolutions.
      direction: "down" (the vertical stack) or "down_right" (the horizontal one).
      dropout: rate of the dropout between the convolutions.
      auxiliary: whether the block reads an auxiliary input `[batch, H, W, filters]`.

    Returns:
      `[batch, H, W, filters]`.
    """

    def __init__(self, filters, kernel_size, direction, dropout=0.0, auxiliary=False, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = tuple(int(k) for k in kernel_size)
        self.direction = direction
        self.dropout = float(dropout)
        self.auxiliary = bool(auxiliary)
        policy = self.dtype_policy
        self.convolution_in = ShiftedConv2D(filters, kernel_size, direction, dtype=policy, name="convolution_in")
        self.convolution_out = ShiftedConv2D(
            2 * self.filters,
            kernel_size,
            direction,
            kernel_initializer=keras.initializers.VarianceScaling(0.01, mode="fan_avg"),
            dtype=policy,
            name="convolution_out",
        )
        self.auxiliary_projection = (
            keras.layers.Dense(self.filters, dtype=policy, name="auxiliary_projection") if self.auxiliary else None
        )
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=policy)

    def build(self, input_shape):
        doubled = (*input_shape[:-1], 2 * self.filters)
        self.convolution_in.build(doubled)
        self.convolution_out.build(doubled)
        if self.auxiliary_projection is not None:
            self.auxiliary_projection.build(doubled)

    def call(self, x, auxiliary=None, training=None):
        c = self.convolution_in(concat_elu(x))
        if self.auxiliary_projection is not None:
            c = c + self.auxiliary_projection(concat_elu(auxiliary))
        gate_input, gate = ops.split(
            self.convolution_out(self.dropout_layer(concat_elu(c), training=training)), 2, axis=-1
        )
        return x + gate_input * ops.sigmoid(gate)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=list(self.kernel_size),
            direction=self.direction,
            dropout=self.dropout,
            auxiliary=self.auxiliary,
        )
        return config


@keras.saving.register_keras_serializable(package="tfvae")
class PixelCNN(keras.layers.Layer):
    """Causal features of an image: output (i, j) reads only the pixels before (i, j).

    x (levels 0 .. L - 1) is read as x / ((L - 1)/2) - 1 with a channel of ones (so the
    zero padding marks the image's edges, as in PixelCNN++). The vertical stack u starts
    from a 2×3 convolution shifted one row down (rows above only); the horizontal stack
    ul from a 1×3 convolution of the row above plus a 2×1 convolution shifted one column
    right (the pixels to the left). Each of `num_blocks` blocks updates u with a
    "down" `GatedResidual` and ul with a "down_right" one that reads u. The output is
    elu(ul).

    Args:
      filters: channels of both stacks and of the output.
      num_blocks: gated residual blocks per stack (the receptive field grows by two rows
        and two columns per block).
      dropout: dropout rate inside the blocks.
      num_levels: L, the levels of x (256 for 8-bit images).

    Returns:
      `[batch, H, W, filters]`.

    Example:
      >>> PixelCNN(16, num_blocks=2)(np.zeros((2, 8, 8, 3), "float32")).shape
      (2, 8, 8, 16)
    """

    def __init__(self, filters=64, num_blocks=4, dropout=0.0, num_levels=256, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.num_blocks = int(num_blocks)
        self.dropout = float(dropout)
        self.num_levels = int(num_levels)
        policy = self.dtype_policy
        self.vertical_in = ShiftedConv2D(filters, (2, 3), "down", dtype=policy, name="vertical_in")
        self.horizontal_in_above = ShiftedConv2D(filters, (1, 3), "down", dtype=policy, name="horizontal_in_above")
        self.horizontal_in_left = ShiftedConv2D(filters, (2, 1), "down_right", dtype=policy, name="horizontal_in_left")
        self.vertical_blocks = [
            GatedResidual(filters, (2, 3), "down", dropout, dtype=policy, name=f"vertical_{b}")
            for b in range(self.num_blocks)
        ]
        self.horizontal_blocks = [
            GatedResidual(filters, (2, 2), "down_right", dropout, auxiliary=True, dtype=policy, name=f"horizontal_{b}")
            for b in range(self.num_blocks)
        ]

    @property
    def receptive_rows(self):
        """How many rows above pixel (i, j) its features can read: the vertical stack's
        first layer reads the two rows above and each of its blocks' two convolutions
        one more row each; the horizontal stack's last convolution reads the vertical
        state one row up, one more."""
        return 3 + 2 * self.num_blocks

    @property
    def receptive_columns(self):
        """`(left, right)`: how many columns left and right of pixel (i, j) its features
        can read. Right: the vertical stack's first convolution and each of its blocks'
        two reach one column right, and the horizontal stack reads no further right than
        the vertical state it is given. Left: the horizontal stack's first layers reach
        one column left, its blocks' two convolutions one more each, and it reads the
        vertical state (as far left as right) one column left more."""
        return 2 + 2 * self.num_blocks, 1 + 2 * self.num_blocks

    def build(self, input_shape):
        with_ones = (*input_shape[:-1], input_shape[-1] + 1)
        for layer in (self.vertical_in, self.horizontal_in_above, self.horizontal_in_left):
            layer.build(with_ones)
        features = (*input_shape[:-1], self.filters)
        for block in (*self.vertical_blocks, *self.horizontal_blocks):
            block.build(features)

    def call(self, x, training=None):
        x = ops.cast(x, self.compute_dtype) / ((self.num_levels - 1) / 2.0) - 1.0
        x = ops.concatenate([x, ops.ones_like(x[..., :1])], axis=-1)
        u = down_shift(self.vertical_in(x))
        ul = down_shift(self.horizontal_in_above(x)) + right_shift(self.horizontal_in_left(x))
        for vertical, horizontal in zip(self.vertical_blocks, self.horizontal_blocks):
            u = vertical(u, training=training)
            ul = horizontal(ul, auxiliary=u, training=training)
        return keras.activations.elu(ul)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters, num_blocks=self.num_blocks, dropout=self.dropout, num_levels=self.num_levels
        )
        return config
