"""Training data streamed from TFRecord shards, for datasets larger than memory.

A record dataset is a folder of shards named by split: `train-00000-of-00008.tfrecord`
... (and `valid-*.tfrecord`, `test-*.tfrecord`), or one `train.tfrecord`. Each record
is a `tf.train.Example` with the feature `x`, one example serialised with
`tf.io.serialize_tensor` (any numeric dtype: uint8 images stay 8-bit on disk), and for
labelled data `label`, an int64 class id. `write_records` writes this format.

`train` is streamed: at most a shuffle window of examples is in memory. `valid` and
`test` are read into memory, since evaluation (importance sampling, pictures) visits
them many times; they must be shards of their own, because a stream cannot be drawn
from at random to hold examples out.

Every epoch's order depends only on (seed, epoch), so a resumed run repeats the
uninterrupted one: the shards are read in a stateless permutation keyed by both, and
each window of `window` consecutive examples is shuffled by a stateless permutation
keyed by them and the window's position. The first window's key is the in-memory
shuffle's (`input_pipeline.shuffled_batches`), so data that fits in one window is
batched exactly as it would be from memory.
"""

import dataclasses
import glob
import math
import os

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

from tfvae import files
from tfvae.errors import DataError
from tfvae.input_pipeline import EpochKeyedShuffle

SHARD_PATTERN = "{split}-*.tfrecord"
DEFAULT_WINDOW = 10_000  # examples shuffled together; memory is about 3 windows of float32
_FEATURES = {"x": tf.io.FixedLenFeature([], tf.string)}
_LABEL = {"label": tf.io.FixedLenFeature([], tf.int64)}
_READ_BATCH = 1024  # records parsed and checked at a time while opening a split


def record_files(directory, split):
    """The shards of `split` in `directory`, sorted (empty when it has none)."""
    single = os.path.join(directory, f"{split}.tfrecord")
    shards = sorted(glob.glob(os.path.join(glob.escape(directory), SHARD_PATTERN.format(split=split))))
    return ([single] if os.path.exists(single) else []) + shards


def is_record_dataset(path):
    """Whether `path` is a folder holding `train` TFRecord shards."""
    return os.path.isdir(path) and bool(record_files(path, "train"))


def write_records(directory, split, examples, labels=None, examples_per_shard=10_000):
    """Writes `examples` (and `labels`) as `split` shards in `directory`.

    Each shard is written under a temporary name and renamed into place, so a killed
    writer leaves whole shards only.

    Args:
      directory: the dataset folder (created if missing).
      split: "train", "valid" or "test".
      examples: an iterable of examples `[*example_shape]` (an array `[N, ...]`, or a
        generator for data that does not fit in memory), all of one shape and dtype.
      labels: None, or an iterable of integer class ids, one per example.
      examples_per_shard: records per shard.

    Returns:
      The number of examples written.

    Raises:
      DataError: `directory` already has shards of `split`.

    Example:
      >>> write_records("data/faces", "train", images_uint8, examples_per_shard=5000)
    """
    if record_files(directory, split):
        raise DataError(f"{directory} already holds {split} shards; remove them before writing new ones.")
    os.makedirs(directory, exist_ok=True)
    labels = iter(labels) if labels is not None else None
    written, chunk, count = [], [], 0
    for example in examples:
        chunk.append((np.asarray(example), None if labels is None else int(next(labels))))
        count += 1
        if len(chunk) == examples_per_shard:
            written.append(_write_shard(directory, split, len(written), chunk))
            chunk = []
    if chunk or not written:
        written.append(_write_shard(directory, split, len(written), chunk))
    # The shard count is known only at the end: name the shards "-of-N" last.
    for index, temporary in enumerate(written):
        os.replace(temporary, os.path.join(directory, f"{split}-{index:05d}-of-{len(written):05d}.tfrecord"))
    return count


def _write_shard(directory, split, index, chunk):
    path = os.path.join(directory, f"{files.TEMPORARY_PREFIX}{split}-{index:05d}.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for example, label in chunk:
            feature = {
                "x": tf.train.Feature(bytes_list=tf.train.BytesList(value=[tf.io.serialize_tensor(example).numpy()]))
            }
            if label is not None:
                feature["label"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    files.fsync(path)
    return path


@dataclasses.dataclass(frozen=True)
class RecordStream:
    """The `train` split of a record dataset: read as training goes, never whole.

    Attributes:
      files: the shards, sorted.
      count: examples in all shards.
      example_shape: the shape of one example.
      dtype: the dtype the examples were written with.
      labelled: whether every record has a `label`.
      num_classes: 1 + the largest label, or None when unlabelled.
      loc, scale: per-dimension mean and standard deviation (1 where constant), found
        while the split was checked; a Gaussian likelihood standardises with them.
      high: the largest value in the split.
    """

    files: tuple
    count: int
    example_shape: tuple
    dtype: tf.DType
    labelled: bool
    num_classes: int
    loc: np.ndarray
    scale: np.ndarray
    high: float

    @property
    def shape(self):
        return (self.count, *self.example_shape)

    def __len__(self):
        return self.count

    def batches(self, batch_size, seed, labels=False, window=DEFAULT_WINDOW):
        """Batches reshuffled each epoch by (seed, epoch), streamed from the shards.

        Args:
          batch_size: examples per batch (the last may be smaller).
          seed: an int.
          labels: yield `(x, label)` pairs instead of `x`.
          window: examples shuffled together (memory holds about three windows).

        Returns:
          `(dataset, callback)`: pass both to `fit`; the callback sets the epoch.
        """
        shards = tf.constant(self.files)
        epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        parse = _parser(self.dtype, self.example_shape, labels)
        window = min(window, self.count)

        def one_epoch(_):
            key = tf.stack([tf.constant(seed, tf.int64), epoch.read_value()])
            order = tf.random.experimental.stateless_shuffle(
                tf.range(len(self.files), dtype=tf.int64), seed=tf.random.experimental.stateless_fold_in(key, -1)
            )
            records = tf.data.Dataset.from_tensor_slices(tf.gather(shards, order)).interleave(
                tf.data.TFRecordDataset, cycle_length=min(4, len(self.files))
            )
            return (
                records.map(parse)
                .batch(window)
                .enumerate()
                .flat_map(
                    lambda index, window: _shuffled_window(
                        window, tf.where(index == 0, key, tf.random.experimental.stateless_fold_in(key, index))
                    )
                )
            )

        dataset = (
            tf.data.Dataset.from_tensors(0)
            .flat_map(one_epoch)
            .batch(batch_size)
            .apply(tf.data.experimental.assert_cardinality(math.ceil(self.count / batch_size)))
            .prefetch(2)
        )
        return dataset, EpochKeyedShuffle(epoch)


def _shuffled_window(window, key):
    """The examples of one window (`x`, or `(x, label)`) in a permutation keyed by `key`."""
    size = tf.shape(tf.nest.flatten(window)[0], out_type=tf.int64)[0]
    order = tf.random.experimental.stateless_shuffle(tf.range(size), seed=key)
    return tf.data.Dataset.from_tensor_slices(tf.nest.map_structure(lambda t: tf.gather(t, order), window))


def _parser(dtype, example_shape, labels):
    """`serialized record -> x [*example_shape] float32` (or `(x, label)` with labels)."""
    features = {**_FEATURES, **_LABEL} if labels else _FEATURES

    def parse(serialized):
        parsed = tf.io.parse_single_example(serialized, features)
        x = tf.ensure_shape(tf.cast(tf.io.parse_tensor(parsed["x"], dtype), tf.float32), example_shape)
        return (x, parsed["label"]) if labels else x

    return parse


def open_records(directory, split, check):
    """Checks every record of `split` once and describes it.

    Args:
      directory: the dataset folder.
      split: "train", "valid" or "test".
      check: `check(where, array)` raising a DataError for values the model cannot
        take (`tfvae.data.check_values` with the likelihood bound in).

    Returns:
      A `RecordStream`, or None when `directory` has no shards of `split`.

    Raises:
      DataError: naming the shard and record that is not an example of the format,
        differs in shape or dtype from the first, lacks a label when the first has
        one, or holds values `check` refuses.
    """
    shards = record_files(directory, split)
    if not shards:
        return None
    dtype, example_shape, labelled = _first_record(shards[0])
    parse = _parser(dtype, example_shape, labelled)
    count, total, total_sq, largest, high = 0, 0.0, 0.0, -1, -np.inf
    for shard in shards:
        position = 0
        batches = tf.data.TFRecordDataset(shard).map(parse).batch(_READ_BATCH).as_numpy_iterator()
        while True:
            try:
                batch = next(batches, None)
            except tf.errors.InvalidArgumentError as error:
                raise _bad_record(shard, position, dtype, example_shape, labelled, error) from error
            if batch is None:
                break
            x = (batch[0] if labelled else batch).astype(np.float64)
            where = f"{shard}, records {position}..{position + len(x) - 1}"
            check(where, x.astype(np.float32))
            if labelled:
                if batch[1].min() < 0:
                    raise DataError(f"{where}: label {batch[1].min()} is negative; class ids start at 0.")
                largest = max(largest, int(batch[1].max()))
            total, total_sq, high = total + x.sum(axis=0), total_sq + (x * x).sum(axis=0), max(high, float(x.max()))
            count, position = count + len(x), position + len(x)
    loc = total / count
    scale = np.sqrt(np.maximum(total_sq / count - loc * loc, 0.0))
    return RecordStream(
        files=tuple(shards),
        count=count,
        example_shape=example_shape,
        dtype=dtype,
        labelled=labelled,
        num_classes=largest + 1 if labelled else None,
        loc=loc.astype(np.float32),
        scale=np.where(scale > 0, scale, 1.0).astype(np.float32),
        high=high,
    )


def read_records(stream):
    """`(examples float32 [N, ...], labels int64 [N] or None)`: a whole split in memory."""
    parse = _parser(stream.dtype, stream.example_shape, stream.labelled)
    records = tf.data.Dataset.from_tensor_slices(list(stream.files)).flat_map(tf.data.TFRecordDataset)
    parts = list(records.map(parse).batch(_READ_BATCH).as_numpy_iterator())
    if stream.labelled:
        return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts]).astype(np.int64)
    return np.concatenate(parts), None


_FORMAT = (
    "Each record must be a tf.train.Example whose bytes feature 'x' is tf.io.serialize_tensor(example) "
    "(and optionally an int64 'label'); tfvae.records.write_records writes it."
)


def _describe(serialized, where):
    """`(dtype, example shape, has a label)` of one serialised record, or a DataError naming `where`."""
    try:
        example = tf.train.Example.FromString(serialized.numpy())
        tensor = tensor_pb2.TensorProto.FromString(example.features.feature["x"].bytes_list.value[0])
    except Exception as error:  # protobuf's DecodeError, IndexError for a missing 'x'
        raise DataError(f"{where}: not a record of the tfvae format ({type(error).__name__}). {_FORMAT}") from error
    shape = tuple(d.size for d in tensor.tensor_shape.dim)
    return tf.as_dtype(tensor.dtype), shape, "label" in example.features.feature


def _first_record(shard):
    for serialized in tf.data.TFRecordDataset(shard).take(1):
        return _describe(serialized, f"{shard}, record 0")
    raise DataError(f"{shard}: the shard holds no records; remove it or write examples into it.")


def _bad_record(shard, start, dtype, example_shape, labelled, error):
    """The DataError for the first record from `start` on that the fast parser refused."""
    # Only a failing batch is re-read one record at a time, to name the record.
    for offset, serialized in enumerate(tf.data.TFRecordDataset(shard).skip(start).take(_READ_BATCH)):
        where = f"{shard}, record {start + offset}"
        try:
            found_dtype, found_shape, has_label = _describe(serialized, where)
        except DataError as decode_error:
            return decode_error
        if (found_dtype, found_shape) != (dtype, example_shape):
            return DataError(
                f"{where}: an example of shape {found_shape} and dtype {found_dtype.name}, but the first record "
                f"has {example_shape} and {dtype.name}; every example of a dataset must have one shape and dtype."
            )
        if labelled and not has_label:
            return DataError(f"{where}: no 'label', but the first record has one; label every record or none.")
    message = str(error).splitlines()[0]
    return DataError(f"{shard}, records from {start}: cannot be read ({message}). {_FORMAT}")
