import numpy as np
import pytest

import tfvae
from tfvae import DataError


def test_bundled_digits_are_binary_and_split(digits):
    assert digits.train.shape == (1437, 64) and digits.valid.shape == (180, 64) and digits.test.shape == (180, 64)
    assert set(np.unique(digits.train)) == {0.0, 1.0} and digits.train.dtype == np.float32
    assert digits.image_shape == (8, 8, 1) and digits.valid_source == "file"
    assert "digits" in tfvae.available_datasets()


def save(tmp_path, **arrays):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return str(path)


def test_npz_without_valid_holds_out_a_seeded_fraction(tmp_path):
    train = np.random.default_rng(0).random((100, 4, 4)).astype(np.float32)
    splits = tfvae.load_dataset(save(tmp_path, train=train), validation_fraction=0.2)
    assert splits.train.shape == (80, 4, 4) and splits.valid.shape == (20, 4, 4) and splits.test is None
    assert splits.image_shape == (4, 4, 1) and "held out" in splits.valid_source
    again = tfvae.load_dataset(save(tmp_path, train=train), validation_fraction=0.2)
    np.testing.assert_array_equal(splits.valid, again.valid)


@pytest.mark.parametrize(
    "arrays, message",
    [
        (dict(valid=np.zeros((3, 4))), r"no 'train' array \(found keys \['valid'\]\)"),
        (dict(train=np.zeros(5)), r"\['train'\]: shape \(5,\) has rank 1"),
        (dict(train=np.zeros((0, 4))), "holds no examples"),
        (dict(train=np.full((3, 4), 255, np.uint8)), r"values span \[255, 255\].*x / 255"),
        (dict(train=np.array([[0.0, np.nan]])), "1 NaN or infinite values"),
        (dict(train=np.zeros((3, 4)), test=np.zeros((3, 5))), r"\['test'\]: examples have shape \(5,\)"),
        (dict(train=np.array([["a", "b"]])), "not numeric"),
    ],
    ids=["missing-train", "rank", "empty", "range", "nan", "shape-mismatch", "dtype"],
)
def test_bad_files_name_the_file_key_and_fix(tmp_path, arrays, message):
    path = save(tmp_path, **arrays)
    with pytest.raises(DataError, match=message) as error:
        tfvae.load_dataset(path)
    assert path in str(error.value)


def test_range_is_only_enforced_for_bernoulli_data(tmp_path):
    path = save(tmp_path, train=np.full((10, 2), 3.5))
    assert tfvae.load_dataset(path, likelihood="gaussian").train.max() == 3.5


def test_missing_file_and_unknown_name():
    with pytest.raises(DataError, match="does not exist.*digits"):
        tfvae.load_dataset("/no/such/file.npz")
    with pytest.raises(DataError, match="Unknown dataset 'mnist-typo'"):
        tfvae.load_dataset("mnist-typo")


def test_labels_travel_with_their_examples(tmp_path, digits):
    assert digits.num_classes == 10 and digits.labels["train"].shape == (1437,)
    train = np.random.default_rng(0).random((50, 4)).astype(np.float32)
    labels = np.arange(50) % 3
    splits = tfvae.load_dataset(save(tmp_path, train=train, train_labels=labels), validation_fraction=0.2)
    assert splits.num_classes == 3 and splits.labels["valid"].shape == (10,)
    for split in ("train", "valid"):  # the hold-out keeps each example with its label
        x, y = splits.split(split)
        rows = [int(np.flatnonzero((train == row).all(axis=1))[0]) for row in x]
        np.testing.assert_array_equal(y, labels[rows])


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.zeros(4, np.int64), r"\['train_labels'\]: shape \(4,\); expected one class id per example, \[5\]"),
        (np.array([0, 1, 0.5, 1, 0]), "must be integer ids"),
        (np.array([0, 1, -1, 1, 0]), "negative"),
    ],
    ids=["length", "fractional", "negative"],
)
def test_bad_labels_name_the_key_and_fix(tmp_path, labels, message):
    with pytest.raises(DataError, match=message):
        tfvae.load_dataset(save(tmp_path, train=np.zeros((5, 4)), train_labels=labels))


def test_conditional_training_needs_labels_for_every_split(tmp_path):
    splits = tfvae.load_dataset(save(tmp_path, train=np.zeros((20, 4)), test=np.zeros((3, 4))))
    with pytest.raises(DataError, match="train_labels, valid_labels, test_labels missing"):
        splits.require_labels()
