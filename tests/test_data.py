import os

import numpy as np
import pytest

import tfvae
from tfvae import DataError
from tfvae.input_pipeline import mirrored_batches, shuffled_batches


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
    # 0 holds nothing out: train is the file's, whole and in order.
    whole = tfvae.load_dataset(save(tmp_path, train=train), validation_fraction=0)
    np.testing.assert_array_equal(whole.train, train)
    assert whole.valid is None and whole.held_out is None and whole.train_fingerprint is None


@pytest.mark.parametrize(
    "arrays, message",
    [
        (dict(valid=np.zeros((3, 4))), r"no 'train' array \(found keys \['valid'\]\)"),
        (dict(train=np.zeros(5)), r"\['train'\]: shape \(5,\) has rank 1"),
        (dict(train=np.zeros((0, 4))), "holds no examples"),
        (dict(train=np.full((3, 4), 300, np.int32)), r"values span \[300, 300\].*or 8-bit grey levels.*x / 255"),
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


def test_keras_npz_layout_is_read_with_its_own_keys_in_messages(tmp_path):
    rng = np.random.default_rng(0)
    x_train, x_test = rng.integers(0, 256, (40, 4, 4, 3), np.uint8), rng.integers(0, 256, (10, 4, 4, 3), np.uint8)
    y_train, y_test = rng.integers(0, 10, (40, 1)), rng.integers(0, 10, (10, 1))  # CIFAR's [N, 1] labels
    path = str(tmp_path / "cifar.npz")
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    splits = tfvae.load_dataset(path, likelihood="discretized_logistic", validation_fraction=0.25)
    np.testing.assert_array_equal(splits.test, x_test)
    np.testing.assert_array_equal(splits.labels["test"], y_test[:, 0])
    assert len(splits.train) + len(splits.valid) == 40 and splits.num_classes == 10
    # y as regression targets are no class ids: left out, the examples still load.
    np.savez(path, x_train=rng.random((40, 3)), y_train=rng.random(40))
    assert tfvae.load_dataset(path, likelihood="gaussian").labels == {}
    np.savez(path, x_train=rng.random((40, 3)), x_test=rng.random((5, 4)))
    with pytest.raises(DataError, match=r"\['x_test'\]: examples have shape \(4,\), but 'x_train' has \(3,\)"):
        tfvae.load_dataset(path, likelihood="gaussian")


def write_images(folder, count, size=(8, 6), mode="L", seed=0):
    """`count` random PNG images of `size` (width, height) in `folder`."""
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(os.path.join(folder, f"{i}.png"))


def test_an_image_folder_gives_8_bit_images_with_its_subfolders_as_classes(tmp_path):
    write_images(tmp_path / "cat", 12, seed=1)
    write_images(tmp_path / "dog", 8, seed=2)
    # What notebooks and macOS leave behind, skipped as Keras skips hidden folders: no
    # third class, and no AppleDouble "image" that is no image.
    os.makedirs(tmp_path / ".ipynb_checkpoints")
    (tmp_path / "cat" / "._0.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    splits = tfvae.load_dataset(str(tmp_path), likelihood="discretized_logistic", validation_fraction=0.25)
    assert splits.example_shape == (6, 8, 1) and splits.num_classes == 2
    assert len(splits.train) + len(splits.valid) == 20 and len(splits.valid) == 5
    everything = np.concatenate([splits.labels["train"], splits.labels["valid"]])
    assert sorted(everything.tolist()) == [0] * 12 + [1] * 8  # cat, dog in name order
    from PIL import Image

    first = np.asarray(Image.open(tmp_path / "cat" / "0.png"), np.float32)
    assert any(np.array_equal(image[..., 0], first) for image in np.concatenate([splits.train, splits.valid]))


def test_image_folders_with_split_subfolders_and_colour(tmp_path):
    for split, count in (("train", 6), ("test", 3)):
        for name in ("a", "b"):
            write_images(tmp_path / split / name, count, mode="RGB", seed=count)
    splits = tfvae.load_dataset(str(tmp_path), likelihood="discretized_logistic", validation_fraction=0.25)
    assert splits.example_shape == (6, 8, 3) and splits.test.shape == (6, 6, 8, 3)
    assert splits.labels["test"].tolist() == [0, 0, 0, 1, 1, 1]


def test_a_folder_is_colour_when_any_image_is_whatever_sorts_first(tmp_path):
    from PIL import Image

    write_images(tmp_path / "a_grey", 2, mode="L", seed=1)  # sorts first
    write_images(tmp_path / "b_colour", 3, mode="RGB", seed=2)
    Image.fromarray(np.full((6, 8, 4), 200, np.uint8), "RGBA").save(tmp_path / "b_colour" / "alpha.png")
    splits = tfvae.load_dataset(str(tmp_path), likelihood="discretized_logistic", validation_fraction=0)
    assert splits.train.shape == (6, 6, 8, 3)
    grey = np.asarray(Image.open(tmp_path / "a_grey" / "0.png"), np.float32)
    np.testing.assert_array_equal(splits.train[0], np.repeat(grey[..., None], 3, axis=-1))
    colour = np.asarray(Image.open(tmp_path / "b_colour" / "1.png"), np.float32)
    np.testing.assert_array_equal(splits.train[2 + 1], colour)  # sorted: 0, 1, 2, alpha
    np.testing.assert_array_equal(splits.train[5], np.full((6, 8, 3), 200.0))  # the alpha channel dropped


@pytest.mark.parametrize("likelihood", ["bernoulli", "discretized_logistic"])
def test_splits_on_two_scales_are_refused_at_load_not_scored_as_dark_levels(tmp_path, likelihood):
    images = (np.random.default_rng(0).random((40, 16)) > 0.5).astype(np.uint8) * 255
    path = str(tmp_path / "mixed.npz")
    np.savez(path, train=images, test=images[:10] / 255.0)  # a test split scaled, the rest not
    with pytest.raises(DataError, match=r"'train' holds levels up to 255, but 'test' lies in \[0, 1\]"):
        tfvae.load_dataset(path, likelihood=likelihood)
    np.savez(path, train=images, test=images[:10])
    assert tfvae.load_dataset(path, likelihood=likelihood).test.max() == 255
    np.savez(path, train=images / 255.0, test=images[:10] / 255.0)  # a table may do so: Gaussian reads it
    assert tfvae.load_dataset(path, likelihood="gaussian").test.max() == 1


@pytest.mark.slow
def test_evaluating_a_level_model_on_unit_scaled_data_is_refused(tmp_path, capsys):
    from tfvae import cli

    images = (np.random.default_rng(0).random((60, 16)) > 0.5).astype(np.uint8) * 255
    levels, unit, run = str(tmp_path / "levels.npz"), str(tmp_path / "unit.npz"), str(tmp_path / "run")
    np.savez(levels, train=images)
    np.savez(unit, train=images / 255.0)
    tiny = ["--epochs", "1", "--latent-dim", "2", "--hidden-units", "8", "--quiet", "--no-pictures"]
    assert cli.main(["train", "--data", levels, "--out", run, *tiny]) == 0
    assert cli.main(["evaluate", run, "--data", unit, "--split", "train", "--num-samples", "2"]) == 2
    assert "lies in [0, 1], but the model in" in capsys.readouterr().err  # not scored as near-black levels
    assert cli.main(["evaluate", run, "--data", levels, "--split", "train", "--num-samples", "2"]) == 0


def test_channels_first_images_are_refused_with_the_transpose(tmp_path):
    path = str(tmp_path / "torch.npz")
    images = np.random.default_rng(0).integers(0, 256, (10, 3, 16, 16), np.uint8)
    np.savez(path, train=images)
    with pytest.raises(DataError, match=r"3 pixels high with 16 channels.*channels first.*numpy.moveaxis\(x, 1, -1\)"):
        tfvae.load_dataset(path, likelihood="discretized_logistic")
    np.savez(path, train=np.moveaxis(images, 1, -1))
    assert tfvae.load_dataset(path, likelihood="discretized_logistic").example_shape == (16, 16, 3)


@pytest.mark.parametrize(
    "problem, message",
    [
        ("corrupt", r"b/1\.png: cannot be read as an image"),
        ("empty class", r"b: the class folder holds no images"),
        ("mixed sizes", r"images differ in size: .*is 8x6, .*is 5x5"),
    ],
)
def test_a_bad_image_folder_names_the_file_and_the_fix(tmp_path, problem, message):
    write_images(tmp_path / "a", 3)
    if problem == "corrupt":
        write_images(tmp_path / "b", 3)
        (tmp_path / "b" / "1.png").write_bytes(b"not a png")
    elif problem == "empty class":
        os.makedirs(tmp_path / "b")
    else:
        write_images(tmp_path / "b", 2, size=(5, 5))
    with pytest.raises(DataError, match=message):
        tfvae.load_dataset(str(tmp_path), likelihood="discretized_logistic")


def test_images_of_several_sizes_are_resized_to_image_size_as_they_are_read(tmp_path):
    write_images(tmp_path / "images" / "a", 4, size=(8, 6), mode="RGB", seed=1)
    write_images(tmp_path / "images" / "b", 4, size=(5, 9), mode="RGB", seed=2)
    folder = str(tmp_path / "images")
    with pytest.raises(DataError, match=r"images differ in size.*--image-size HEIGHT,WIDTH"):
        tfvae.load_dataset(folder)
    splits = tfvae.load_dataset(folder, likelihood="discretized_logistic", image_size=(3, 4), validation_fraction=0.25)
    assert splits.example_shape == (3, 4, 3) and splits.image_shape == (3, 4, 3)
    everything = np.concatenate([splits.train, splits.valid])
    np.testing.assert_array_equal(everything, np.round(everything))  # still 8-bit levels
    from PIL import Image

    expected = np.asarray(Image.open(tmp_path / "images" / "b" / "0.png").resize((4, 3), Image.BILINEAR), np.float32)
    assert any(np.array_equal(image, expected) for image in everything)  # PIL's bilinear, as Keras reads
    with pytest.raises(DataError, match="image_size resizes the images of a folder; 'digits' is no folder"):
        tfvae.load_dataset("digits", image_size=(3, 4))
    with pytest.raises(DataError, match=r"image_size must be \(height, width\), two positive integers; got \(3, 0\)"):
        tfvae.load_dataset(folder, image_size=(3, 0))


def test_16_bit_images_keep_their_levels_and_are_told_how_to_fit_an_8_bit_likelihood(tmp_path):
    from PIL import Image

    os.makedirs(tmp_path / "scans")
    levels = np.random.default_rng(0).integers(0, 4096, (3, 6, 5)).astype(np.uint16)
    for index, image in enumerate(levels):
        Image.fromarray(image).save(tmp_path / "scans" / f"{index}.png")  # mode I;16
    with pytest.raises(DataError, match=r"Gaussian likelihood.*may be 16-bit levels.*x // 256 gives 8 bits"):
        tfvae.load_dataset(str(tmp_path / "scans"), likelihood="discretized_logistic")
    splits = tfvae.load_dataset(str(tmp_path / "scans"), likelihood="gaussian", validation_fraction=0.34)
    everything = np.concatenate([splits.train, splits.valid])[..., 0]
    assert sorted(map(bytes, everything.astype(np.uint16))) == sorted(map(bytes, levels))  # every level kept


@pytest.mark.slow
def test_an_image_folder_trains_a_conditional_model_from_the_cli(tmp_path):
    from tfvae import cli

    for name, seed, size in (("zero", 0, (8, 6)), ("one", 1, (7, 7))):  # two sizes: read at --image-size
        write_images(tmp_path / "images" / name, 16, size=size, seed=seed)
    out = str(tmp_path / "run")
    assert (
        cli.main(
            [
                "train",
                "--data",
                str(tmp_path / "images"),
                "--conditional",
                "--likelihood",
                "discretized_logistic",
                "--latent-dim",
                "2",
                "--hidden-units",
                "16",
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--quiet",
                "--no-pictures",
                "--image-size",
                "6,8",
                "--out",
                out,
            ]
        )
        == 0
    )
    assert os.path.exists(os.path.join(out, "model.keras")) and os.path.exists(os.path.join(out, "split.json"))
    # evaluate reads the folder at the size the run recorded
    assert cli.main(["evaluate", out, "--num-samples", "3", "--json"]) == 0


@pytest.mark.parametrize("flat", [False, True], ids=["images", "flat_vectors"])
def test_hflip_flips_about_half_the_images_keyed_by_seed_epoch_and_batch(flat):
    images = np.random.default_rng(0).integers(0, 256, size=(64, 4, 6, 3)).astype(np.float32)
    x = images.reshape(64, -1) if flat else images
    batches, epochs = shuffled_batches(x, 16, seed=3, labels=np.arange(64))
    mirrored = mirrored_batches(batches, (4, 6, 3), epochs, seed=3)

    def flips(epoch):
        """Whether each image (by its label) came out flipped; every other change fails."""
        epochs.on_epoch_begin(epoch)
        flipped = np.zeros(64, bool)
        for batch, labels in mirrored:
            for image, label in zip(np.reshape(batch, (-1, 4, 6, 3)), labels.numpy()):
                flipped[label] = not np.array_equal(image, images[label])
                if flipped[label]:
                    np.testing.assert_array_equal(image, images[label][:, ::-1])  # left to right
        return flipped

    first = flips(0)
    assert 16 <= first.sum() <= 48  # Binomial(64, 1/2) within 4 standard deviations
    np.testing.assert_array_equal(flips(0), first)  # an epoch's flips repeat (resumed runs)
    assert not np.array_equal(flips(1), first)  # and the next epoch draws new ones
