"""Training batches whose order (and augmentation) depends only on (seed, epoch), so
resumed runs repeat.

Keras' own shuffling of in-memory arrays draws from TensorFlow's stateful random ops,
whose sequence restarts in a new process: a run resumed at epoch 3 would see epoch 1's
order again and end elsewhere than the uninterrupted run. Here every epoch's order is a
stateless shuffle keyed by the run's seed and the epoch number, which a callback sets;
the random flips of `mirrored_batches` are keyed the same way, by batch.
"""

import math

import keras
import numpy as np
import tensorflow as tf


class EpochKeyedShuffle(keras.callbacks.Callback):
    """Sets the epoch number that keys the next epoch's shuffle (resumed runs included)."""

    def __init__(self, epoch_variable):
        super().__init__()
        self.epoch_variable = epoch_variable

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_variable.assign(epoch)


def shuffled_batches(x, batch_size, seed, labels=None):
    """Batches of `x` (or `(x, labels)` pairs), reshuffled each epoch by (seed, epoch).

    Args:
      x: `[N, ...]` examples.
      batch_size: examples per batch (the last may be smaller).
      seed: an int.
      labels: None, or `[N]` integer class ids that go with the examples.

    Returns:
      `(dataset, callback)`: pass both to `fit`; the callback sets the epoch.
    """
    table = tf.constant(np.asarray(x, dtype=np.float32))
    label_table = None if labels is None else tf.constant(np.asarray(labels, dtype=np.int64))
    count = int(table.shape[0])
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)

    def order(_):
        key = tf.stack([tf.constant(seed, tf.int64), epoch.read_value()])
        return tf.random.experimental.stateless_shuffle(tf.range(count, dtype=tf.int64), seed=key)

    dataset = (
        tf.data.Dataset.from_tensors(0)
        .map(order)
        .unbatch()
        .batch(batch_size)
        .map(
            lambda index: (
                tf.gather(table, index)
                if label_table is None
                else (tf.gather(table, index), tf.gather(label_table, index))
            )
        )
        .apply(tf.data.experimental.assert_cardinality(math.ceil(count / batch_size)))
        .prefetch(2)
    )
    return dataset.with_options(_one_thread_options()), EpochKeyedShuffle(epoch)


AUGMENTATIONS = ("none", "hflip")
# `fold_in` data that separates the flips' stream from the shuffles' keys (a record
# stream's windows fold in their indices 0, 1, ... and its shard order -1).
_FLIP_STREAM = -2


def mirrored_batches(batches, image_shape, epoch_callback, seed):
    """`batches` with each image flipped left to right with probability 1/2, the training
    augmentation NVAE uses on natural images (`TrainConfig.augment="hflip"`).

    A flip is drawn per image by `tf.image.stateless_random_flip_left_right`, keyed by
    the run's seed, the epoch (which `epoch_callback` sets) and the batch's index in the
    epoch, so a resumed run draws the flips the uninterrupted run drew. Labels pass
    through.

    Args:
      batches: a dataset of `x` or `(x, labels)` batches, x `[batch, *example_shape]`
        with `prod(example_shape) == prod(image_shape)` (flat vectors are images too).
      image_shape: `(height, width, channels)` of one example.
      epoch_callback: the `EpochKeyedShuffle` that goes with `batches`.
      seed: an int.

    Returns:
      The dataset of the flipped batches.
    """
    epoch = epoch_callback.epoch_variable
    image_shape = [int(d) for d in image_shape]

    def flipped(index, batch):
        key = tf.random.experimental.stateless_fold_in(
            tf.stack([tf.constant(seed, tf.int64), epoch.read_value()]), _FLIP_STREAM
        )
        key = tf.random.experimental.stateless_fold_in(key, index)
        x = batch[0] if isinstance(batch, tuple) else batch
        images = tf.reshape(x, [-1, *image_shape])  # [batch, height, width, channels]
        x = tf.reshape(tf.image.stateless_random_flip_left_right(images, seed=key), tf.shape(x))
        return (x, *batch[1:]) if isinstance(batch, tuple) else x

    return batches.enumerate().map(flipped)  # with the options (threads) `batches` has


def _one_thread_options():
    # A batch costs one gather, which a single thread keeps ahead of the train step.
    # tf.data's default pool and autotuning add threads that take cores from the
    # step's own thread pool: on 2 cores, epochs then alternated between 1.5 s and
    # 2.5 s (README, "Training throughput").
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    options.autotune.enabled = False
    return options
