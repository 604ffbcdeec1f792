"""Seeds for TFP's stateless samplers."""

import tensorflow as tf


def stateless_seed(seed):
    """Turns an int, a `[2]` seed tensor or None into something TFP samples with.

    TFP treats a Python int as a seed for *stateful* sampling, which does not repeat
    from call to call; an explicit `[2]` int32 pair does, so ints become pairs.

    Args:
      seed: None (fresh randomness), a Python int, or a shape `[2]` integer tensor.

    Returns:
      None or a shape `[2]` int32 tensor.
    """
    if seed is None:
        return None
    if isinstance(seed, int):
        return tf.constant([0, seed], dtype=tf.int32)
    return tf.cast(seed, tf.int32)


def fold_in(seed, data):
    """A new stateless seed derived from `seed` and the integer `data`."""
    return tf.random.experimental.stateless_fold_in(seed, data)
