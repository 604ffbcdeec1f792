"""Training data streamed from TFRecord shards (`tfvae.records`)."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfvae
from tfvae import DataError, cli, records
from tfvae.training import TrainConfig, load_run, read_config, train

pytestmark = pytest.mark.slow  # trainings, servers and subprocesses: `make test-fast` leaves them out


def write_digits(folder, digits, train_shard=2000, labels=True):
    """digits' train and valid as uint8 records (valid in memory, train streamed)."""
    for split in ("train", "valid"):
        examples, split_labels = digits.split(split)
        records.write_records(
            folder,
            split,
            examples.astype(np.uint8),
            labels=split_labels if labels else None,
            examples_per_shard=train_shard,
        )
    return str(folder)


def test_a_streamed_run_repeats_the_in_memory_run_when_the_data_fit_one_window(tmp_path, digits):
    # The same examples, as uint8 records on disk and as a float32 .npz in memory: the
    # first window is keyed like the in-memory shuffle, so every batch and so the whole
    # epoch's loss agree exactly; a wrong decoding, scaling or order would not.
    streamed = write_digits(tmp_path / "records", digits, labels=False)
    in_memory = str(tmp_path / "digits.npz")
    np.savez(in_memory, train=digits.train, valid=digits.valid)
    histories = [
        train(
            TrainConfig(data=data, out=str(tmp_path / name), epochs=2, hidden_units=(32,), latent_dim=4, seed=3),
            verbose=0,
            pictures=False,
        ).history
        for name, data in (("memory", in_memory), ("stream", streamed))
    ]
    assert histories[0]["train"] == histories[1]["train"]
    assert histories[0]["valid"] == histories[1]["valid"]


def test_fit_streams_a_record_split_as_it_would_the_same_examples_in_memory(tmp_path, digits):
    splits = tfvae.load_dataset(write_digits(tmp_path / "records", digits, labels=False))
    assert splits.streamed

    def fitted(x):
        keras.utils.set_random_seed(5)  # the shuffle's seed, drawn alike by both paths
        model = tfvae.VAE((64,), 3, hidden_units=(16,), seed=0)
        model.compile(jit_compile=False)
        return model.fit(x, epochs=2, batch_size=64, verbose=0).history

    # One window holds every example, keyed like the in-memory shuffle: the same batches.
    assert fitted(splits.train) == fitted(digits.train)
    conditional = tfvae.ConditionalVAE((64,), num_classes=10, latent_dim=3, hidden_units=(16,))
    conditional.compile()
    with pytest.raises(DataError, match="the records have no `label`"):
        conditional.fit(splits.train, verbose=0)
    # Records of 8-bit levels load (a run would read them as grey levels), but a model
    # built for [0, 1] is told so by the batch check, not trained on them.
    records.write_records(tmp_path / "levels", "train", (digits.train * 255).astype(np.uint8))
    bernoulli = tfvae.VAE((64,), 3, hidden_units=(16,))
    bernoulli.compile()
    with pytest.raises(DataError, match=r"fit's dataset, batch 0: \d+ values lie outside \[0, 1\] \(e\.g\. 255"):
        bernoulli.fit(records.open_records(str(tmp_path / "levels"), "train", lambda where, x: None), verbose=0)


def test_every_epoch_streams_each_example_once_in_an_order_set_by_seed_and_epoch(tmp_path):
    n = 1000
    ids = np.arange(n)
    records.write_records(tmp_path, "train", np.zeros((n, 2), np.uint8), labels=ids, examples_per_shard=150)
    records.write_records(tmp_path, "valid", np.zeros((10, 2), np.uint8), labels=ids[:10])
    stream = tfvae.load_dataset(str(tmp_path), likelihood="gaussian").train
    assert len(stream.files) == 7 and stream.count == n and stream.num_classes == n

    def epoch_order(epoch, seed=0):
        # A fresh pipeline per call, as a resumed process builds one.
        dataset, callback = stream.batches(64, seed, labels=True, window=200)
        callback.on_epoch_begin(epoch)
        return np.concatenate([y for _, y in dataset.as_numpy_iterator()])

    first = epoch_order(0)
    assert sorted(first) == list(ids) and len(list(stream.batches(64, 0, window=200)[0])) == 16
    np.testing.assert_array_equal(first, epoch_order(0))
    assert not np.array_equal(first, epoch_order(1)) and sorted(epoch_order(1)) == list(ids)
    assert not np.array_equal(first, epoch_order(0, seed=1))
    # Shards are read in a shuffled order and windows are mixed: the first batch
    # is not drawn from the first shard alone.
    assert len(set(first[:64] // 150)) > 1


def test_conditional_training_from_records_on_the_command_line(tmp_path, digits):
    folder = write_digits(tmp_path / "records", digits)
    out = tmp_path / "run"
    assert (
        cli.main(
            [
                "train",
                "--data",
                folder,
                "--conditional",
                "--epochs",
                "1",
                "--hidden-units",
                "16",
                "--latent-dim",
                "2",
                "--shuffle-window",
                "500",
                "--out",
                str(out),
                "--quiet",
                "--no-pictures",
            ]
        )
        == 0
    )
    assert read_config(str(out)).shuffle_window == 500
    model = load_run(str(out))
    assert model.conditional and model.num_classes == 10


def write_raw(path, payloads):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for payload in payloads:
            writer.write(payload)


def example(x, label=None):
    feature = {"x": tf.train.Feature(bytes_list=tf.train.BytesList(value=[tf.io.serialize_tensor(x).numpy()]))}
    if label is not None:
        feature["label"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.mark.parametrize(
    "payloads, message",
    [
        (
            [example(np.zeros(4, np.uint8))] * 5 + [example(np.zeros(5, np.uint8))],
            r"train.tfrecord, record 5: an example of shape \(5,\) and dtype uint8, but the first record has \(4,\)",
        ),
        ([example(np.zeros(4, np.uint8))] * 3 + [b"not a protobuf"], r"train.tfrecord, record 3: not a record"),
        ([b"\x00garbage"], r"train.tfrecord, record 0: not a record of the tfvae format"),
        (
            [example(np.zeros(4, np.uint8), 1), example(np.zeros(4, np.uint8))],
            r"record 1: no 'label', but the first record has one",
        ),
        ([example(np.full(4, 1.5, np.float32))], r"train.tfrecord, records 0..0: values span \[1.5, 1.5\]"),
        ([example(np.zeros(4, np.uint8), -2)], "label -2 is negative"),
    ],
    ids=["shape", "corrupt", "corrupt-first", "label-missing", "range", "negative-label"],
)
def test_bad_records_are_named_by_shard_and_record(tmp_path, payloads, message):
    write_raw(tmp_path / "train.tfrecord", payloads)
    write_raw(tmp_path / "valid.tfrecord", [example(np.zeros(4, np.uint8))])
    with pytest.raises(DataError, match=message):
        tfvae.load_dataset(str(tmp_path))


def test_a_record_dataset_needs_its_own_validation_shards_and_shards_are_never_overwritten(tmp_path):
    records.write_records(tmp_path, "train", np.zeros((3, 4), np.uint8))
    with pytest.raises(DataError, match=r"needs validation shards of its own \(valid-\*.tfrecord\)"):
        tfvae.load_dataset(str(tmp_path))
    with pytest.raises(DataError, match="already holds train shards"):
        records.write_records(tmp_path, "train", np.zeros((3, 4), np.uint8))
    assert sorted(os.listdir(tmp_path)) == ["train-00000-of-00001.tfrecord"]


def test_standardisation_statistics_of_a_stream_equal_those_of_the_array(tmp_path):
    rows = np.random.default_rng(0).normal(3.0, 2.0, (500, 3)).astype(np.float32)
    records.write_records(tmp_path, "train", rows, examples_per_shard=130)
    records.write_records(tmp_path, "valid", rows[:5])
    stream = tfvae.load_dataset(str(tmp_path), likelihood="gaussian").train
    loc, scale = tfvae.data.standardization(rows)
    np.testing.assert_allclose(stream.loc, loc, rtol=1e-6)
    np.testing.assert_allclose(stream.scale, scale, rtol=1e-5)
