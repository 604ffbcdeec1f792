"""Seeds for TFP's stateless samplers, and the one place where "no seed given" draws one."""

import random

import tensorflow as tf


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
    from call to call; an explicit `[2]` int32 pair does, so ints become pairs.

    Args:
      seed: None (a `fresh_seed`), a Python int, or a shape `[2]` integer tensor.

    Returns:
      A shape `[2]` int32 tensor.
    """
    if seed is None:
        seed = fresh_seed()
    if isinstance(seed, int):
        return tf.constant([0, seed], dtype=tf.int32)
    return tf.cast(seed, tf.int32)


def fold_in(seed, data):
    """A new stateless seed derived from `seed` and the integer `data`."""
    return tf.random.experimental.stateless_fold_in(seed, data)
