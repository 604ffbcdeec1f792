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

from typing import NamedTuple

import keras
import tensorflow as tf
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


class _RowState(NamedTuple):
    """What drawing keeps from one row to the next: each layer's output where the next
    row's layers read it, so that each layer is computed once at each pixel (the caching
    of Fast PixelCNN++, Ramachandran et al. 2017).

    The vertical stack's tensors hold the row being drawn, `[N, W, F]`; the horizontal
    stack's hold the row above it, with the zero column of its "down_right" kernels'
    padding at the left, `[N, W + 1, F]`.
    """

    vertical: tuple  # u_0 .. u_B: the vertical stack's state after each block
    vertical_gates: tuple  # c_1 .. c_B: each vertical block's first convolution
    above: tf.Tensor  # the horizontal stack's input from the row above
    pixels_above: tf.Tensor  # x's row above, scaled as the network reads it: [N, W, C + 1]
    horizontal: tuple  # ul_0 .. ul_{B-1}: the horizontal stack's input to each block
    horizontal_gates: tuple  # c_1 .. c_B: each horizontal block's first convolution


class _Left(NamedTuple):
    """What drawing pixel (i, j) reads of pixel (i, j - 1): its value `[N, C]` and its
    horizontal-stack tensors `[N, F]` (zeros at column 0: the padding)."""

    pixel: tf.Tensor
    horizontal: tuple
    horizontal_gates: tuple


class _PixelKernel(NamedTuple):
    """A `ShiftedConv2D` at one pixel: `matrix` `[kh·kw·F, F_out]` multiplies the patch
    of its kernel's size, flattened."""

    matrix: tf.Tensor
    bias: tf.Tensor

    def __call__(self, flat_patch):
        return tf.matmul(flat_patch, self.matrix) + self.bias


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

    def build(self, input_shape):
        with_ones = (*input_shape[:-1], input_shape[-1] + 1)
        for layer in (self.vertical_in, self.horizontal_in_above, self.horizontal_in_left):
            layer.build(with_ones)
        features = (*input_shape[:-1], self.filters)
        for block in (*self.vertical_blocks, *self.horizontal_blocks):
            block.build(features)

    def _scaled(self, x):
        """x in [-1, 1] with a channel of ones, the input of the first layers."""
        x = ops.cast(x, self.compute_dtype) / ((self.num_levels - 1) / 2.0) - 1.0
        return ops.concatenate([x, ops.ones_like(x[..., :1])], axis=-1)

    def call(self, x, training=None):
        x = self._scaled(x)
        u = down_shift(self.vertical_in(x))
        ul = down_shift(self.horizontal_in_above(x)) + right_shift(self.horizontal_in_left(x))
        for vertical, horizontal in zip(self.vertical_blocks, self.horizontal_blocks):
            u = vertical(u, training=training)
            ul = horizontal(ul, auxiliary=u, training=training)
        return keras.activations.elu(ul)

    def draw(self, count, image_shape, pixel_of):
        """Images drawn pixel by pixel in raster order, each pixel from its features.

        Equal, up to float rounding, to drawing pixel (i, j) from `self(x)[:, i, j]` of
        the image x drawn so far, at a fraction of the arithmetic: the vertical stack reads
        only the rows above, so it runs once a row on the whole row; the horizontal stack
        runs once a pixel on that pixel alone, from the outputs its kernels read at the
        pixel to the left and in the row above, kept as the image is drawn. Running the
        whole network on the window of rows and columns each pixel reads instead made
        drawing 9-23 times slower (`make bench-generator`'s model, batches of 1 and 8).

        Args:
          count: N, the number of images (a scalar tensor).
          image_shape: `(H, W, C)`.
          pixel_of: `(features [N, F], i, j) -> values [N, C]`: pixel (i, j) of each image.

        Returns:
          The images, `[N, H, W, C]`.

        Example:
          >>> network = PixelCNN(8, num_blocks=1)
          >>> network.build((None, 4, 4, 1))
          >>> def pixel_of(features, i, j):  # `PixelCNNLikelihood` draws from a mixture here
          ...     return tf.fill([2, 1], 128.0)
          >>> network.draw(tf.constant(2), (4, 4, 1), pixel_of).shape
          TensorShape([2, 4, 4, 1])
        """
        height, width, channels = image_shape
        blocks = self.num_blocks

        def zeros(*shape):
            return tf.zeros(tf.stack(shape), self.compute_dtype)

        def row(i, canvas, state):
            state = self._next_row(state, canvas, i)

            def next_pixel(j, left, drawn):
                features, left = self._features_at(state, left, j, kernels)
                value = pixel_of(features, i, j)  # [N, C]
                left = left._replace(pixel=value)
                drawn = tuple(d.write(j, v) for d, v in zip(drawn, (value, *left.horizontal, *left.horizontal_gates)))
                return j + 1, left, drawn

            # TensorArrays: writing a pixel's outputs costs their size, not the row's.
            drawn = tuple(
                tf.TensorArray(self.compute_dtype, size=width, element_shape=v.shape)
                for v in (first_column.pixel, *first_column.horizontal, *first_column.horizontal_gates)
            )
            _, _, drawn = tf.while_loop(lambda j, *_: j < width, next_pixel, (tf.constant(0), first_column, drawn))
            pixels, *rows = (tf.transpose(d.stack(), [1, 0, 2]) for d in drawn)  # [N, W, ·]
            rows = [ops.pad(r, [[0, 0], [1, 0], [0, 0]]) for r in rows]
            where = tf.one_hot(i, height, dtype=canvas.dtype)[None, :, None, None]  # [1, H, 1, 1]
            state = state._replace(horizontal=tuple(rows[:blocks]), horizontal_gates=tuple(rows[blocks:]))
            return i + 1, canvas + where * pixels[:, None], state

        # The horizontal stack's kernels as the matrices one pixel's patch multiplies, made
        # out here since TensorFlow's loops run every op of their bodies at each pass.
        kernels = (
            _flat(self.horizontal_in_left),
            tuple(
                (_on_patch_row(block.convolution_in), _on_patch_row(block.convolution_out))
                for block in self.horizontal_blocks
            ),
        )
        # Made out here: zeros made inside a loop's body lose the static batch size.
        zero_features = zeros(count, self.filters)
        first_column = _Left(zeros(count, channels), (zero_features,) * blocks, (zero_features,) * blocks)
        row_of_zeros, rows_of_zeros = zeros(count, width, self.filters), zeros(count, width + 1, self.filters)
        state = _RowState(
            (row_of_zeros,) * (blocks + 1),
            (row_of_zeros,) * blocks,
            row_of_zeros,
            zeros(count, width, channels + 1),
            (rows_of_zeros,) * blocks,
            (rows_of_zeros,) * blocks,
        )
        _, canvas, _ = tf.while_loop(
            lambda i, *_: i < height, row, (tf.constant(0), zeros(count, height, width, channels), state)
        )
        return canvas

    def _next_row(self, state, x, i):
        """The vertical stack's tensors at row i of x `[N, H, W, C]`, whose rows above are
        drawn: u_0 from x's rows i - 2 and i - 1, then each block from its input's and its
        first convolution's rows i - 1 (the state's) and i; and the horizontal stack's
        input from row i - 1 and that row of x."""
        rows = tf.range(i - 2, i)
        above = self._scaled(tf.gather(x, tf.maximum(rows, 0), axis=1))  # rows i - 2, i - 1
        above = above * ops.cast(rows >= 0, above.dtype)[None, :, None, None]  # rows -2, -1: the zero padding
        above = ops.pad(above, [[0, 0], [0, 0], [1, 1], [0, 0]])  # [N, 2, W + 2, C + 1]
        below_top = ops.cast(i > 0, self.compute_dtype)  # row 0's shifted-down inputs are the zero padding
        u = below_top * self.vertical_in.convolution(above)[:, 0]  # [N, W, F]
        from_above = below_top * self.horizontal_in_above.convolution(above[:, 1:])[:, 0]
        vertical, gates = [u], []
        for block, u_above, c_above in zip(self.vertical_blocks, state.vertical, state.vertical_gates):
            c = _row_convolution(block.convolution_in, u_above, u)
            gate_input, gate = ops.split(_row_convolution(block.convolution_out, c_above, c), 2, axis=-1)
            u = u + gate_input * ops.sigmoid(gate)
            vertical.append(u)
            gates.append(c)
        return state._replace(
            vertical=tuple(vertical), vertical_gates=tuple(gates), above=from_above, pixels_above=above[:, 1, 1:-1]
        )

    def _features_at(self, state, left, j, kernels):
        """The features of pixel (i, j), `[N, F]`, and its horizontal-stack tensors as a
        `_Left` (its pixel still the left one's), from the row's `_RowState`, pixel
        (i, j - 1)'s `_Left` and the horizontal stack's `_PixelKernel`s: its input's, and
        each block's two."""
        left_kernel, block_kernels = kernels
        # The horizontal stack's input from the left reads column j - 1 of rows i - 1 and
        # i, shifted right: column 0 reads the zero padding.
        right_of_edge = ops.cast(j > 0, self.compute_dtype)
        patch = ops.concatenate([column(state.pixels_above, tf.maximum(j - 1, 0)), self._scaled(left.pixel)], -1)
        ul = column(state.above, j) + right_of_edge * left_kernel(patch)  # patch: [N, 2(C + 1)], rows i - 1, i
        horizontal, gates = [], []
        for block, (kernel_in, kernel_out), u, rows, gate_rows, ul_left, c_left in zip(
            self.horizontal_blocks,
            block_kernels,
            state.vertical[1:],
            state.horizontal,
            state.horizontal_gates,
            left.horizontal,
            left.horizontal_gates,
        ):
            c = _pixel_convolution(kernel_in, rows, ul_left, ul, j)
            c = c + block.auxiliary_projection(concat_elu(column(u, j)))
            gate_input, gate = ops.split(_pixel_convolution(kernel_out, gate_rows, c_left, c, j), 2, axis=-1)
            horizontal.append(ul)
            gates.append(c)
            ul = ul + gate_input * ops.sigmoid(gate)
        return keras.activations.elu(ul), left._replace(horizontal=tuple(horizontal), horizontal_gates=tuple(gates))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters, num_blocks=self.num_blocks, dropout=self.dropout, num_levels=self.num_levels
        )
        return config


def column(x, j):
    """`x[:, j]` for a tensor index j, as one gather: tf2onnx turns the strided slice into
    some 12 ONNX nodes that build its bounds, which ONNX Runtime then runs at every pixel
    that `PixelCNN.draw` draws."""
    return tf.gather(x, j, axis=1)


def _row_convolution(layer, above, row):
    """A "down" `ShiftedConv2D` of kernel (2, 3) at one row, `[N, W, F_out]`, from its
    input's rows above and at it (`[N, W, F]`, before the layer's concat_elu)."""
    rows = concat_elu(ops.stack([above, row], axis=1))
    return layer.convolution(ops.pad(rows, [[0, 0], [0, 0], [1, 1], [0, 0]]))[:, 0]


def _pixel_convolution(kernel, rows_above, left, value, j):
    """A "down_right" `ShiftedConv2D` of kernel (2, 2) at column j, `[N, F_out]`, from
    its input's row above (`[N, W + 1, F]`, padded) and its values at columns j - 1
    and j (`[N, F]`), all before the layer's concat_elu; `kernel` from `_on_patch_row`."""
    above = tf.gather(rows_above, tf.range(j, j + 2), axis=1)  # columns j - 1, j: [N, 2, F]
    # The patch as one row, [p, -p] with p its four pixels (above, then left and value),
    # not stacked to [N, 2, 2, F] and concat_elu'd there: 5 ONNX nodes more a call, which
    # ONNX Runtime runs at every pixel.
    patch = ops.concatenate([tf.reshape(above, [-1, 2 * value.shape[-1]]), left, value], axis=-1)
    return kernel(concat_elu(patch))  # [N, 8F] @ [8F, F_out]


def _flat(layer):
    """A `ShiftedConv2D` as the `_PixelKernel` of a patch of its kernel's size, flattened:
    one matrix product, 75 µs a call against 96 µs for the convolution op (which plans
    for larger inputs) on a [64, 2, 2, 96] patch and 96 filters."""
    kernel = layer.convolution.kernel  # [kh, kw, F, F_out]
    return _PixelKernel(tf.reshape(kernel, [-1, kernel.shape[3]]), layer.convolution.bias)


def _on_patch_row(layer):
    """A "down_right" `ShiftedConv2D` of kernel (2, 2) as the `_PixelKernel` of
    `_pixel_convolution`'s patch row: the kernel's rows, which run (kh, kw, sign, F)
    for its concat_elu'd input, put in the row's order (sign, kh, kw, F)."""
    kernel = layer.convolution.kernel  # [2, 2, 2F, F_out]
    kernel = tf.reshape(kernel, [4, 2, kernel.shape[2] // 2, kernel.shape[3]])
    return _PixelKernel(tf.reshape(tf.transpose(kernel, [1, 0, 2, 3]), [-1, kernel.shape[3]]), layer.convolution.bias)
