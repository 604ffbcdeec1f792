"""Seeds for TFP's stateless samplers, the one place where "no seed given" draws one (and
`fit`'s shuffles theirs), and the draws keyed by example that evaluation uses
(`ExampleNoise`)."""

import random
import typing

import numpy as np
import tensorflow as tf

from tfvae.errors import ConfigError


def fresh_seed():
    """A new int seed, for every call that was given none.

    Drawn from Python's `random`, which `keras.utils.set_random_seed` seeds (Keras draws
    its own default seeds there too), so a script that sets the global seed repeats.
    Training never draws from it once a model is built: its noise comes from the
    model's stateless `sampler_seed`, and `fit`'s shuffle from NumPy's generator, so an
    unseeded evaluation or sample between two `fit` calls leaves training as it was.
    """
    return random.randrange(2**31)


def shuffle_seed():
    """The seed of `fit`'s shuffles of in-memory examples and record streams.

    Drawn from NumPy's global generator, which `keras.utils.set_random_seed` seeds (as
    Keras' own shuffle follows the global seed), and which no unseeded evaluation or
    sample draws from (they use `fresh_seed`), so neither moves the other.
    """
    return np.random.randint(2**31 - 1)


def stateless_seed(seed):
    """Turns an int, a `[2]` seed tensor or None into the `[2]` seed TFP samples with.

    TFP treats a Python int as a seed for *stateful* sampling, which does not repeat
    from call to call; an explicit `[2]` int32 pair does, so ints become pairs: s in
    [-2^31, 2^31) the pair (0, s), as it always was; a larger s < 2^63 (a NumPy entropy
    draw, a time in microseconds) the pair (s >> 31, s mod 2^31), whose first half is
    never 0, so no two ints share a pair.

    Args:
      seed: None (a `fresh_seed`), a Python or NumPy int, or a shape `[2]` integer tensor.

    Returns:
      A shape `[2]` int32 tensor.

    Raises:
      ConfigError: any other seed (a string, a float, an int outside [-2^31, 2^63)).
    """
    if seed is None:
        seed = fresh_seed()
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):  # np.bool_ is no np.integer
        seed = int(seed)
        if -(2**31) <= seed < 2**31:
            return tf.constant([0, seed], dtype=tf.int32)
        if 2**31 <= seed < 2**63:
            high = seed >> 31  # in [1, 2^32): as int32, wrapped, still never 0
            return tf.constant([high - 2**32 if high >= 2**31 else high, seed % 2**31], dtype=tf.int32)
    elif tf.is_tensor(seed):
        if seed.dtype.is_integer and seed.shape.is_compatible_with([2]):
            return tf.cast(seed, tf.int32)
    elif isinstance(seed, (np.ndarray, list, tuple)) and np.shape(seed) == (2,):
        if np.asarray(seed).dtype.kind in "iu":
            return tf.constant(np.asarray(seed), dtype=tf.int32)
    raise ConfigError(
        f"seed must be None, an int in [-2**31, 2**63) or a [2] integer tensor (a stateless seed); got {seed!r}."
    )


def fold_in(seed, data):
    """A new stateless seed derived from `seed` (a `[2]` seed or `ExampleNoise`) and the integer `data`."""
    if isinstance(seed, ExampleNoise):
        return seed._replace(seed=tf.random.experimental.stateless_fold_in(seed.seed, data))
    return tf.random.experimental.stateless_fold_in(seed, data)


def standard_normal(shape, seed, dtype):
    """N(0, I) draws of `shape` from a `[2]` seed (Philox), or keyed per example by `ExampleNoise`."""
    if isinstance(seed, ExampleNoise):
        return seed.normal(shape, dtype)
    return tf.random.stateless_normal(shape, seed=seed, dtype=dtype, alg="philox")


# Samples of one example are drawn in blocks of this many, each keyed by the example and
# the block's index, so that a chunk of samples is the same draws whatever the chunking.
# Keying costs a loop over (example, block) pairs: with 250 (and 64 blocks drawn at once)
# `tfvae.evaluate` took 2-5 % longer than with one draw per batch on a 784-d model (3.14
# and 3.23 s against 3.07 s, 200 examples, K = 1000) and 10 % on a 64-d one; blocks of 100
# drawn 10 at a time cost 20 %.
SAMPLE_BLOCK = 250
# 2^31 - 1, a prime: example keys are a random linear hash of the values modulo it.
_KEY_MODULUS = 2**31 - 1
_HASH_SEED = (20261127, 4099)


class ExampleNoise(typing.NamedTuple):
    """N(0, I) draws keyed by each example's values instead of by its batch.

    Evaluation passes this where training passes a `[2]` seed (`reparameterized_sample`
    reads both): sample k of an example is the same draw whichever batch the example is
    in, wherever it sits in it, and however the samples are chunked, so its
    importance-sampled log p(x) (an anomaly score) and its ELBO do not depend on the
    rows estimated beside it. Two examples with equal values (and labels) get equal draws.

    Attributes:
      seed: the `[2]` stateless seed of the whole estimate.
      keys: `[batch]` int64, one per example (`example_keys`).
      first_sample: the index, among each example's samples, of the first one drawn.
    """

    seed: tf.Tensor
    keys: tf.Tensor
    first_sample: tf.Tensor

    @classmethod
    def of(cls, seed, x, labels=None):
        """The noise of the examples `x` (and `labels`) under `seed` (None, an int or `[2]`),
        from their first sample (`_replace(first_sample=...)` moves on to a later chunk)."""
        return cls(stateless_seed(seed), example_keys(x, labels), tf.constant(0, tf.int32))

    def normal(self, shape, dtype):
        """Draws of shape `[num_samples, batch, size]`: samples `first_sample` onwards of each example."""
        return tf.cast(_keyed_normal(self.seed, self.keys, self.first_sample, shape[0], shape[2]), dtype)


def example_keys(x, labels=None):
    """A key per example from its values (and label): `[batch]` int64 in [0, 2^31 - 1).

    A random linear hash of the float32 bits (in 16-bit halves, with 15-bit weights, so
    that the sums stay exact in int64) modulo a prime: works inside `tf.function` too.
    """
    flat = tf.reshape(tf.cast(x, tf.float32), [tf.shape(x)[0], -1])
    bits = tf.bitcast(flat, tf.int32)
    halves = tf.concat([tf.bitwise.right_shift(bits, 16) & 0xFFFF, bits & 0xFFFF], axis=1)
    if labels is not None:
        halves = tf.concat([halves, tf.reshape(tf.cast(labels, tf.int32) & 0xFFFF, [-1, 1])], axis=1)
    weights = tf.random.stateless_uniform(tf.shape(halves)[1:], _HASH_SEED, 1, 2**15, dtype=tf.int32)
    return tf.math.floormod(tf.reduce_sum(tf.cast(halves * weights, tf.int64), axis=1), _KEY_MODULUS)


@tf.function(reduce_retracing=True)
def _keyed_normal(seed, keys, first_sample, num_samples, size):
    first_block = first_sample // SAMPLE_BLOCK
    blocks = tf.range(first_block, (first_sample + num_samples - 1) // SAMPLE_BLOCK + 1)
    batch, block_count = tf.size(keys), tf.size(blocks)
    pairs = tf.stack([tf.repeat(keys, block_count), tf.tile(tf.cast(blocks, tf.int64), [batch])], axis=1)

    def block(pair):  # one example's SAMPLE_BLOCK draws
        key = tf.random.experimental.stateless_fold_in(tf.random.experimental.stateless_fold_in(seed, pair[0]), pair[1])
        return tf.random.stateless_normal([SAMPLE_BLOCK, size], seed=key, alg="philox")

    draws = tf.map_fn(
        block, pairs, fn_output_signature=tf.TensorSpec([SAMPLE_BLOCK, None], tf.float32), parallel_iterations=64
    )
    draws = tf.reshape(draws, [batch, block_count * SAMPLE_BLOCK, size])
    start = first_sample - first_block * SAMPLE_BLOCK
    return tf.transpose(draws[:, start : start + num_samples], [1, 0, 2])  # [num_samples, batch, size]
