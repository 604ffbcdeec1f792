"""Seeds for TFP's stateless samplers, and the one place where "no seed given" draws one."""

import random

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
    """A new stateless seed derived from `seed` and the integer `data`."""
    return tf.random.experimental.stateless_fold_in(seed, data)
