"""The one registry of datasets, and the validation every dataset passes at load.

A dataset is named by a registered name (the bundled defaults "digits" and
"photo_patches"), by a path to an `.npz` file with a `train` array and optionally
`valid` and `test` arrays, `[N, *example_shape]`, and for conditional models
`train_labels` (and `valid_labels`, `test_labels`): integer class ids `[N]`, by a
`.csv` table of numbers, by a folder of images whose subfolders are the classes, or by
a folder of TFRecord shards whose `train` split is streamed (`tfvae.records`, for data
larger than memory). Loading checks what numeric code
would otherwise trip over later, and says which file, which key, what was found and
what to do.
"""

import contextlib
import dataclasses
import hashlib
import os
import re

import numpy as np
import tensorflow as tf

from tfvae import records
from tfvae.distributions import LIKELIHOODS
from tfvae.errors import DataError
from tfvae.input_pipeline import shuffled_batches
from tfvae.networks import infer_image_shape

SPLITS = ("train", "valid", "test")
LABEL_KEYS = tuple(f"{split}_labels" for split in SPLITS)
LIKELIHOOD_FAMILIES = tuple(LIKELIHOODS)
_REGISTRY = {}
# Marks a stream check's failure inside the TensorFlow error that carries it (`stream_errors`).
DATA_CHECK = "tfvae data check: "


@dataclasses.dataclass(frozen=True)
class DataSplits:
    """A dataset ready for training: float32 arrays `[N, *example_shape]`.

    Attributes:
      name: the registered name or the file path.
      train, valid, test: the splits (`test` may be None). `train` is a
        `tfvae.records.RecordStream` for a record dataset (`streamed`), read as
        training goes.
      image_shape: `(height, width, channels)` for pictures, or None.
      valid_source: "file" when the data had a validation split, otherwise a note
        on how it was held out of `train`.
      labels: `{split: int64 class ids [N]}` for the splits that have labels (empty
        for unlabelled data).
      held_out: when `valid` was held out of the file's `train`, the indices (into
        that array) of the held-out examples; None when the data had a `valid` split.
        A training run records them, so that later commands evaluate on exactly the
        examples it did not train on.
      train_fingerprint: with `held_out`, the SHA-256 of the file's whole `train` (and
        its labels) before the hold-out: a run records it, and a later command refuses a
        file whose `train` changed, where the recorded indices would pick other examples.
    """

    name: str
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    image_shape: tuple
    valid_source: str
    labels: dict = dataclasses.field(default_factory=dict)
    held_out: np.ndarray = None
    train_fingerprint: str = None

    @property
    def example_shape(self):
        return tuple(self.train.shape[1:])

    @property
    def streamed(self):
        """Whether `train` is streamed from TFRecord shards rather than held in memory."""
        return isinstance(self.train, records.RecordStream)

    @property
    def num_classes(self):
        """1 + the largest class id in any split, or None for unlabelled data."""
        largest = [int(v.max()) for v in self.labels.values()]
        if self.streamed and self.train.num_classes:
            largest.append(self.train.num_classes - 1)
        return max(largest) + 1 if largest else None

    @property
    def grey_levels(self):
        """256 when `train` holds 8-bit grey levels past [0, 1] (a Bernoulli likelihood then
        reads them as x / 255: `BernoulliLikelihood(num_levels=256)`), else None."""
        high = self.train.high if self.streamed else float(np.max(self.train))
        return 256 if high > 1.0 and high <= 255.0 else None

    def train_statistics(self):
        """`(loc, scale)` of `train` per dimension (see `standardization`)."""
        return (self.train.loc, self.train.scale) if self.streamed else standardization(self.train)

    def train_batches(self, batch_size, seed, labels=False, window=records.DEFAULT_WINDOW):
        """`(dataset, callback)` of `train`'s batches, reshuffled each epoch by (seed, epoch).

        In memory, each epoch is one permutation of all examples
        (`input_pipeline.shuffled_batches`); a streamed `train` is shuffled within
        windows of `window` examples (`RecordStream.batches`). With `labels`, batches
        are `(x, label)` pairs.
        """
        if self.streamed:
            return self.train.batches(batch_size, seed, labels=labels, window=window)
        return shuffled_batches(self.train, batch_size, seed, self.labels.get("train") if labels else None)

    def split(self, name):
        """`(examples, labels or None)` of the split `name` ("train", "valid" or "test")."""
        return getattr(self, name), self.labels.get(name)

    def require_labels(self):
        """Raises a DataError unless every split present has labels (conditional training)."""
        missing = [
            name
            for name in SPLITS
            if getattr(self, name) is not None
            and name not in self.labels
            and not (name == "train" and self.streamed and self.train.labelled)
        ]
        if missing:
            raise DataError(
                f"{self.name}: a conditional model needs class labels, but "
                f"{', '.join(f'{m}_labels' for m in missing)} missing. Add integer arrays "
                "train_labels (valid_labels, test_labels) to the .npz, or train without --conditional."
            )


def standardization(train):
    """`(loc, scale)` per dimension of `train`: its mean and standard deviation, with 1
    where a dimension is constant (nothing to scale)."""
    train = np.asarray(train, np.float64)
    scale = train.std(axis=0)
    return train.mean(axis=0).astype(np.float32), np.where(scale > 0, scale, 1.0).astype(np.float32)


def register_dataset(name):
    """Decorator: registers `fn() -> dict(split name -> array)` under `name`."""

    def decorate(fn):
        _REGISTRY[name] = fn
        return fn

    return decorate


def available_datasets():
    """Names that `load_dataset` accepts besides `.npz` paths."""
    return sorted(_REGISTRY)


@register_dataset("digits")
def _binarized_digits():
    """scikit-learn's 8x8 digits (1,797 images, shipped inside the package), binarised at 8/16.

    Split 1,437 / 180 / 180 with a fixed permutation, so every machine sees the same split.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.data / 16.0 > 0.5).astype(np.float32)  # [1797, 64]
    order = np.random.default_rng(0).permutation(len(images))
    images, labels = images[order], digits.target[order]
    bounds = {"train": (0, 1437), "valid": (1437, 1617), "test": (1617, 1797)}
    arrays = {split: images[a:b] for split, (a, b) in bounds.items()}
    arrays.update({f"{split}_labels": labels[a:b] for split, (a, b) in bounds.items()})
    return arrays


PATCH = 32  # photo_patches: side of a patch
PATCH_STRIDE = 16
# photo_patches_dense: its training patches are cut every 8 pixels, 4x as many from the
# same training columns (valid and test as photo_patches').
DENSE_TRAIN_STRIDE = 8
# Columns of each photograph (640 wide) that give train, valid and test patches: patches
# never cross a boundary, so no test (or valid) pixel appears in a training patch.
PATCH_COLUMNS = {"train": (0, 384), "valid": (384, 480), "test": (480, 640)}


@register_dataset("photo_patches")
def _photo_patches():
    """32×32 colour patches of scikit-learn's two sample photographs (china.jpg and
    flower.jpg, shipped inside the package), as 8-bit levels 0 .. 255 `[N, 32, 32, 3]`.

    Patches are cut every 16 pixels; training patches come from the left 384 columns of
    each photograph, validation patches from the next 96 and test patches from the last
    160, so held-out patches share no pixel with training ones: 1,150 / 250 / 450.
    Train with a discretised logistic likelihood (`--likelihood discretized_logistic`).
    """
    return photo_patch_splits(PATCH_STRIDE)


@register_dataset("photo_patches_dense")
def _photo_patches_dense():
    """`photo_patches` with its training patches cut every 8 pixels instead of 16: 4,500
    overlapping patches of the same 384 columns, each pixel in up to 16 of them at as many
    offsets (a translation augmentation that adds no pixel the photographs lack).
    Validation and test patches are `photo_patches`' own, so figures compare."""
    return photo_patch_splits(DENSE_TRAIN_STRIDE)


def photo_patch_splits(train_stride):
    """`{"train", "valid", "test"}` patches of the sample photographs, the training ones cut
    every `train_stride` pixels and the held-out ones every `PATCH_STRIDE`."""
    from sklearn.datasets import load_sample_images

    photographs = load_sample_images().images  # decoded once for the three splits
    arrays = {}
    for split, (left, right) in PATCH_COLUMNS.items():
        stride = train_stride if split == "train" else PATCH_STRIDE
        patches = [
            image[top : top + PATCH, column : column + PATCH]
            for image in photographs
            for top in range(0, image.shape[0] - PATCH + 1, stride)
            for column in range(left, right - PATCH + 1, stride)
        ]
        arrays[split] = np.stack(patches).astype(np.float32)  # [N, 32, 32, 3]
    return arrays


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def _image_files(folder):
    return [name for name in _visible(folder) if name.lower().endswith(IMAGE_EXTENSIONS)]


def _class_folders(folder):
    return [name for name in _visible(folder) if os.path.isdir(os.path.join(folder, name))]


def _visible(folder):
    """The names in `folder`, sorted, but hidden ones, as Keras' image_dataset_from_directory
    skips hidden class folders: Jupyter's .ipynb_checkpoints/ would otherwise be a class
    without images, and macOS' AppleDouble ._photo.png files images that are none."""
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


def _read_image_folder(path, image_size=None):
    """Arrays from a folder of images, read with `keras.utils.load_img` (resized to
    `image_size`, `(height, width)`, bilinearly as Keras' `image_dataset_from_directory`
    resizes, when given; else every image must have one size).

    `path/<class>/<image>` gives `train` with `train_labels` (class ids in the sorted
    order of the class folders' names); `path/train/<class>/...` (with `valid/`,
    `test/` beside it) gives those splits; images directly in `path` give an unlabelled
    `train`. Values are the 8-bit levels 0 .. 255, `[N, height, width, channels]`:
    1 channel when every image is grey, else 3 (grey images then repeat their level in
    each channel, as PIL converts them).
    """
    subfolders = _class_folders(path)
    split_folders = {split: os.path.join(path, split) for split in SPLITS if split in subfolders}
    if not split_folders:
        split_folders = {"train": path}
    listed = {split: _labelled_files(folder, path) for split, folder in split_folders.items()}
    class_sets = {split: tuple(classes) for split, (_, classes) in listed.items()}
    classes = class_sets.get("train", ())
    for split, names in class_sets.items():
        if names != classes:
            raise DataError(
                f"{path}: {split}/ has the class folders {list(names)}, but train/ has {list(classes)}; "
                "every split needs the same classes."
            )
    arrays, shapes = {}, {}
    for split, (files, _) in listed.items():
        images = []
        for file, _label in files:
            image = _load_image(file, image_size)
            shapes.setdefault(image.shape[:2], file)
            if len(shapes) > 1:
                (shape_a, file_a), (shape_b, file_b) = list(shapes.items())[:2]
                raise DataError(
                    f"{path}: images differ in size: {file_a} is {shape_a[1]}x{shape_a[0]}, {file_b} is "
                    f"{shape_b[1]}x{shape_b[0]} (width x height). Resize them to one size first, or have them "
                    "resized as they are read: image_size=(height, width) (--image-size HEIGHT,WIDTH)."
                )
            images.append(image)
        arrays[split] = images
        if classes:
            arrays[f"{split}_labels"] = np.array([label for _, label in files], np.int64)
    # Colour when any image is: deciding by the first image alone turned every later
    # photograph of a folder that sorts a grey one first into grey levels.
    grey = all(image.shape[-1] == 1 for split in listed for image in arrays[split])
    for split in listed:
        arrays[split] = np.stack(
            [image if grey else np.broadcast_to(image, (*image.shape[:2], 3)) for image in arrays[split]]
        )
    return arrays


def _labelled_files(folder, root):
    """`([(file, class id)], class names)` of a split folder: its class subfolders, or its images."""
    classes = _class_folders(folder)
    if not classes:
        files = _image_files(folder)
        if not files:
            raise DataError(
                f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) and no class subfolders. Put the "
                f"images in {root}/<class>/ (or {root}/train/<class>/, ...)."
            )
        return [(os.path.join(folder, name), None) for name in files], []
    files = []
    for label, name in enumerate(classes):
        images = _image_files(os.path.join(folder, name))
        if not images:
            raise DataError(
                f"{os.path.join(folder, name)}: the class folder holds no images ({', '.join(IMAGE_EXTENSIONS)}); "
                "add some or remove the folder."
            )
        files += [(os.path.join(folder, name, image), label) for image in images]
    return files, classes


def _load_image(file, size=None):
    """One image as `[height, width, 1]` levels when it is grey (R = G = B after PIL's
    conversion to RGB, which drops an alpha channel; 16-bit grey images keep their
    levels), else `[height, width, 3]` 8-bit levels."""
    import keras
    from PIL import Image

    try:
        with Image.open(file) as opened:
            # PIL's conversion to RGB clips 16-bit levels at 255; Keras' grey mode keeps them.
            deep = opened.mode.startswith("I") or opened.mode == "F"
        image = keras.utils.load_img(
            file, color_mode="grayscale" if deep else "rgb", target_size=size, interpolation="bilinear"
        )
    except Exception as error:  # PIL raises UnidentifiedImageError, OSError, ValueError...
        raise DataError(
            f"{file}: cannot be read as an image ({type(error).__name__}: {error}); replace or remove the file."
        ) from error
    image = keras.utils.img_to_array(image, dtype="float32")  # [height, width, 1 or 3]
    return image[..., :1] if np.all(image[..., :1] == image) else image


def _csv_rows(path):
    """The non-empty rows of a CSV file, as lists of cells, read as they are asked for."""
    import csv

    # utf-8-sig: Excel starts its CSV files with a byte-order mark, which would make the
    # first number of a table without a header no number, and that row a header.
    with open(path, newline="", encoding="utf-8-sig") as f:
        yield from (row for row in csv.reader(f) if row)


def table_columns(path, count):
    """The names of a CSV table's `count` columns: its header row's, or "column 1" ...
    where the file has no header, is gone, or no longer has `count` columns."""
    first = None
    if str(path).lower().endswith(".csv"):
        rows = _csv_rows(path)
        try:
            first = next(rows, None)  # the header alone: a table may be large
        except (OSError, UnicodeDecodeError):
            pass
        finally:
            rows.close()
    if first and len(first) == count and any(not _is_number(cell) for cell in first):
        return first
    return [f"column {i + 1}" for i in range(count)]


def _read_csv(path):
    """`{"train": [N, features]}` from a CSV table: numbers, with an optional header row."""
    if not os.path.exists(path):
        raise DataError(f"Dataset file {path!r} does not exist.")
    rows = list(_csv_rows(path))
    if not rows:
        raise DataError(f"{path}: the table is empty; expected rows of numbers, one example per row.")
    separator = next((s for s in (";", "\t") if len(rows[0]) == 1 and s in rows[0][0]), None)
    if separator:
        raise DataError(
            f"{path}, line 1: one cell, {rows[0][0]!r}, with {separator!r} in it: tables are read "
            "comma-separated, with '.' as the decimal point. Save it so (pandas: df.to_csv(path, index=False))."
        )
    header = None
    if any(not _is_number(cell) for cell in rows[0]):
        header, rows = rows[0], rows[1:]
    columns = header or [f"column {i + 1}" for i in range(len(rows[0]) if rows else 0)]
    values = np.empty((len(rows), len(columns)), np.float32)
    for index, row in enumerate(rows):
        line = index + (2 if header else 1)
        if len(row) != len(columns):
            raise DataError(f"{path}, line {line}: {len(row)} cells, but the table has {len(columns)} columns.")
        for column, cell in enumerate(row):
            if not _is_number(cell):
                raise DataError(
                    f"{path}, line {line}, column {columns[column]!r}: {cell!r} is not a number; every cell "
                    "must be numeric (impute or drop missing values, encode categories as numbers)."
                )
            values[index, column] = float(cell)
    if not len(values):
        raise DataError(f"{path}: the table has a header but no rows.")
    return {"train": values}


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return text.strip().lower() not in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity")


# Keras' own .npz layout (keras.datasets' mnist.npz, and what its users save): its keys
# and tfvae's. Its y arrays are taken as labels where they are class ids ([N] or [N, 1]
# integers); others (regression targets) are left out.
_KERAS_LAYOUT = {
    "x_train": "train",
    "y_train": "train_labels",
    "x_val": "valid",
    "y_val": "valid_labels",
    "x_valid": "valid",
    "y_valid": "valid_labels",
    "x_test": "test",
    "y_test": "test_labels",
}


def _read_npz(path):
    """`(arrays, names)`: the splits and labels under tfvae's keys, and the file's own key
    for each (they differ in Keras' layout), so messages name what the file holds."""
    if not os.path.exists(path):
        raise DataError(
            f"Dataset file {path!r} does not exist. Give a path to an .npz file or one of "
            f"the bundled datasets: {', '.join(available_datasets())}."
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "train" in archive.files:
                names = {key: key for key in (*SPLITS, *LABEL_KEYS) if key in archive.files}
            elif "x_train" in archive.files:
                names = {ours: theirs for theirs, ours in _KERAS_LAYOUT.items() if theirs in archive.files}
            else:
                raise DataError(
                    f"{path}: no 'train' array (found keys {sorted(archive.files)}). The .npz "
                    "needs 'train' and may have 'valid' and 'test', each [N, *example_shape] "
                    "(or Keras' x_train, y_train, x_test, y_test)."
                )
            arrays = {ours: archive[theirs] for ours, theirs in names.items()}
    except DataError:
        raise
    except (OSError, ValueError) as error:
        raise DataError(
            f"{path}: cannot be read as an .npz of numeric arrays ({error}). Save it with "
            "numpy.savez(path, train=..., valid=..., test=...)."
        ) from error
    for key in [key for key in arrays if key.endswith("_labels") and names[key].startswith("y_")]:
        labels = arrays[key]
        if labels.dtype.kind in "iu" and (labels.ndim == 1 or labels.shape[1:] == (1,)):
            arrays[key] = labels.reshape(-1)
        else:
            del arrays[key], names[key]
    return arrays, names


def examples_array(where, examples):
    """A Python list (or tuple) of examples as one float32 array `[N, *example_shape]`;
    a DataError naming the first example whose shape differs, or the value that is no
    number, where NumPy would only say the sequence is inhomogeneous."""
    try:
        return np.asarray(examples, np.float32)
    except (ValueError, TypeError) as error:
        first = _nested_shape(examples[0])  # NumPy takes an empty list: never raised for one
        for index, example in enumerate(examples):
            shape = _nested_shape(example)
            if shape is None or shape != first:
                found = "shapes that differ inside it" if shape is None else f"shape {shape}"
                raise DataError(
                    f"{where}: the list's examples differ in shape: example 0 has shape {first}, example {index} "
                    f"has {found}; resize or pad them to one shape, or give one array [N, ...]."
                ) from None
        raise DataError(
            f"{where}: the list holds values that are not numbers ({error}); give numeric examples."
        ) from None


def _nested_shape(example):
    """The shape of a nested list, None when ragged inside."""
    try:
        return np.shape(example)
    except ValueError:
        return None


def _validate(where, array, likelihood):
    if array.dtype.kind not in "biuf":
        raise DataError(f"{where}: dtype {array.dtype} is not numeric; expected floats or ints.")
    if array.ndim < 2 or array.ndim > 4:
        raise DataError(
            f"{where}: shape {array.shape} has rank {array.ndim}; expected [N, features], "
            "[N, height, width] or [N, height, width, channels]."
        )
    if array.shape[0] == 0 or array.size == 0:
        raise DataError(f"{where}: shape {array.shape} holds no examples; expected N > 0.")
    if array.ndim == 4 and array.shape[1] in (1, 3) and array.shape[3] not in (1, 3, 4) and min(array.shape[2:]) >= 8:
        # Images 1 or 3 pixels high with 8 or more channels are PyTorch's layout read as Keras'.
        raise DataError(
            f"{where}: shape {array.shape} reads as images {array.shape[1]} pixels high with {array.shape[3]} "
            f"channels; it looks like channels first, [N, channels, height, width] (PyTorch's layout). tfvae "
            "reads channels last, [N, height, width, channels]: save numpy.moveaxis(x, 1, -1)."
        )
    array = array.astype(np.float32)
    check_values(where, array, likelihood, eight_bit=True)
    return array


# How to fix values a likelihood does not model; shared by the in-memory and stream checks.
_LEVELS_FIX = (
    "Save 8-bit images as they are (uint8); for data scaled to [0, 1] multiply by 255 and round; "
    "for continuous data use a Gaussian likelihood (likelihood='gaussian', --likelihood gaussian)."
)
_SIXTEEN_BIT_FIX = "Integers above 255 may be 16-bit levels (16-bit PNGs keep them): x // 256 gives 8 bits."
_GREY_LEVELS_FIX = "Give it 8-bit images as they are, or build it without num_levels for data in [0, 1]."
_UNIT_RANGE_FIX = (
    "Scale the data (e.g. x / 255 for 8-bit pixels){grey}, model 8-bit levels as they are "
    "(likelihood='discretized_logistic', --likelihood discretized_logistic) or use a Gaussian "
    "likelihood (likelihood='gaussian', --likelihood gaussian)."
)
_GREY = ", read 8-bit images as grey levels (likelihood=tfvae.BernoulliLikelihood({shape}, num_levels=256))"


def check_values(where, array, likelihood, levels=None, eight_bit=False):
    """Raises a DataError when `array` holds NaN/Inf, or values outside what the
    likelihood family models (Bernoulli: [0, 1]; discretised: the 8-bit levels).

    Args:
      where: how to name the data in the message (a file and key, or an argument).
      array: float32 examples.
      likelihood: a key of `LIKELIHOODS` (or None, a user's likelihood: finite values only).
      levels: the grey levels a Bernoulli likelihood was built for (its `num_levels`):
        then every value must be an integer in [0, levels - 1].
      eight_bit: loading data for a run: a Bernoulli likelihood also takes 8-bit grey
        levels (the run then builds it for them; see `DataSplits.grey_levels`).
    """
    if array.size == 0:  # nothing to check; callers that need examples say so themselves
        return
    bad = ~np.isfinite(array)
    if bad.any():
        raise DataError(
            f"{where}: {int(bad.sum())} NaN or infinite values (first in example "
            f"{int(np.argwhere(bad)[0][0])}); remove or impute them."
        )
    if likelihood in LIKELIHOODS and LIKELIHOODS[likelihood].data_levels:
        levels = LIKELIHOODS[likelihood].data_levels - 1
        off_grid = (array != np.round(array)) | (array < 0) | (array > levels)
        if off_grid.any():
            value = float(array[off_grid].flat[0])
            sixteen_bit = bool(np.all(array == np.round(array)) and array.min() >= 0 and 255 < array.max() <= 65535)
            fix = f"{_LEVELS_FIX} {_SIXTEEN_BIT_FIX}" if sixteen_bit else _LEVELS_FIX
            raise DataError(
                f"{where}: a {likelihood} likelihood models 8-bit levels, integers in [0, {levels}], but "
                f"{int(off_grid.sum())} values are not (e.g. {value:g}). {fix}"
            )
    if likelihood == "bernoulli" and levels is not None:
        top = levels - 1
        off_grid = (array != np.round(array)) | (array < 0) | (array > top)
        if off_grid.any():
            raise DataError(
                f"{where}: this Bernoulli likelihood reads grey levels, integers in [0, {top}], but "
                f"{int(off_grid.sum())} values are not (e.g. {float(array[off_grid].flat[0]):g}). "
                f"{_GREY_LEVELS_FIX}"
            )
    elif likelihood == "bernoulli":
        low, high = float(array.min()), float(array.max())
        if (low < 0.0 or high > 1.0) and not (eight_bit and _on_8bit_grid(array)):
            needs = "[0, 1] or 8-bit grey levels (integers 0 .. 255)" if eight_bit else "[0, 1]"
            grey = "" if eight_bit else _GREY.format(shape=tuple(array.shape[1:]))
            raise DataError(
                f"{where}: values span [{low:g}, {high:g}], but a Bernoulli likelihood needs {needs}. "
                + _UNIT_RANGE_FIX.format(grey=grey)
            )


def stream_value_check(where, likelihood, example_shape, levels=None, num_classes=None):
    """`check_values` for a stream of batches, in the graph: returns a function
    `(index, x, labels) -> [assertion ops]` that fail the pipeline when batch `index`
    holds what `check_values` refuses (or, given `num_classes`, labels outside
    [0, num_classes)), naming the batch and the example. `stream_errors` turns that
    failure into the `DataError` it describes.

    A stream cannot be checked once up front as arrays are (it may be endless, or
    reshuffled each epoch), so each batch is checked on its way to the step: a few
    reductions over the batch.
    """
    where = where.replace("{", "(").replace("}", ")")  # tf.strings.format's placeholders

    def assertion(index, x, bad, template):
        """Fails when any of `bad` is set; `template` reads (count, value, example)."""
        flat = tf.reshape(bad, [-1])
        first = tf.concat([tf.where(flat)[:1, 0], tf.zeros([1], tf.int64)], axis=0)[0]
        example = first // tf.cast(tf.reduce_prod(tf.shape(x)[1:]), tf.int64)
        count = tf.reduce_sum(tf.cast(flat, tf.int64))
        value = tf.reshape(x, [-1])[first]
        message = tf.strings.format(f"{DATA_CHECK}{where}, batch {{}}: {template}", (index, count, value, example))
        return tf.debugging.Assert(tf.logical_not(tf.reduce_any(flat)), [message])

    def in_range(x, low, high, integers):
        """Whether every value of x is in [low, high] (and an integer): four reductions."""
        inside = (tf.reduce_min(x) >= low) & (tf.reduce_max(x) <= high)
        return inside & tf.reduce_all(tf.equal(x, tf.round(x))) if integers else inside

    def check(index, x, labels=None):
        # Each rule: (whether the batch passes, the tensor, a function giving the bad
        # values' mask, the message). The masks and messages are built only for a batch
        # that fails: built for every batch, they made bench-train's epochs 5-15% longer.
        x = tf.cast(x, tf.float32)
        rules = [
            (
                tf.reduce_all(tf.math.is_finite(x)),
                x,
                lambda: ~tf.math.is_finite(x),
                "{} NaN or infinite values (e.g. {} in example {}); remove or impute them.",
            )
        ]
        if likelihood in LIKELIHOODS and LIKELIHOODS[likelihood].data_levels:
            top = LIKELIHOODS[likelihood].data_levels - 1
            template = (
                f"a {likelihood} likelihood models 8-bit levels, integers in [0, {top}], but {{}} values are not "
                f"(e.g. {{}} in example {{}}). {_LEVELS_FIX}"
            )
            rules.append((in_range(x, 0, top, True), x, lambda: _off_grid(x, top), template))
        elif likelihood == "bernoulli" and levels is not None:
            top = levels - 1
            template = (
                f"this Bernoulli likelihood reads grey levels, integers in [0, {top}], but {{}} values are not "
                f"(e.g. {{}} in example {{}}). {_GREY_LEVELS_FIX}"
            )
            rules.append((in_range(x, 0, top, True), x, lambda: _off_grid(x, top), template))
        elif likelihood == "bernoulli":
            fix = _UNIT_RANGE_FIX.format(grey=_GREY.format(shape=tuple(example_shape)))
            template = (
                f"{{}} values lie outside [0, 1] (e.g. {{}} in example {{}}), but a Bernoulli likelihood needs "
                f"[0, 1]. {fix}"
            )
            rules.append((in_range(x, 0, 1, False), x, lambda: (x < 0) | (x > 1), template))
        if num_classes is not None and labels is not None:
            ids = tf.cast(labels, tf.int64)
            template = f"{{}} labels lie outside [0, {num_classes}) (e.g. {{}} in example {{}}); labels are class ids."
            rules.append(
                (in_range(ids, 0, num_classes - 1, False), ids, lambda: (ids < 0) | (ids >= num_classes), template)
            )

        def report():
            with tf.control_dependencies([assertion(index, t, bad(), template) for _, t, bad, template in rules]):
                return tf.constant(False)

        passes = tf.reduce_all(tf.stack([ok for ok, *_ in rules]))
        return [tf.cond(passes, lambda: tf.constant(True), report)]

    return check


def _off_grid(x, top):
    """Where x is no integer level in [0, top]."""
    return tf.not_equal(x, tf.round(x)) | (x < 0) | (x > top)


@contextlib.contextmanager
def stream_errors():
    """Raises the `DataError` that a failed `stream_value_check` describes, in place of
    the TensorFlow error that carried it out of the pipeline."""
    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        found = re.search(re.escape(DATA_CHECK) + r"(.*?)\]\n", error.message + "\n")
        if found is None:
            raise
        # TensorFlow prints the message's quotes escaped.
        raise DataError(found.group(1).replace("\\'", "'").replace('\\"', '"')) from None


def _on_8bit_grid(array):
    """Whether every value is an integer in [0, 255]."""
    return bool(np.all((array == np.round(array)) & (array >= 0) & (array <= 255)))


def is_image_folder(data):
    """Whether `data` (as `load_dataset` takes it) names a folder of images."""
    return data not in _REGISTRY and os.path.isdir(str(data)) and not records.is_record_dataset(str(data))


def check_image_size(value):
    """`(height, width)` from a pair of positive ints, or a DataError."""
    try:
        height, width = value
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in (height, width)):
            return int(height), int(width)
    except (TypeError, ValueError):
        pass
    raise DataError(f"image_size must be (height, width), two positive integers; got {value!r}.")


def _validate_labels(source, key, labels, count):
    where = f"{source}[{key!r}]"
    if labels.ndim != 1 or len(labels) != count:
        raise DataError(f"{where}: shape {labels.shape}; expected one class id per example, [{count}].")
    if labels.dtype.kind == "f" and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)):
        labels = labels.astype(np.int64)
    if labels.dtype.kind not in "iu":
        raise DataError(f"{where}: dtype {labels.dtype}; class labels must be integer ids 0, 1, ...")
    if labels.min() < 0:
        raise DataError(f"{where}: label {labels.min()} is negative; class ids start at 0.")
    return labels.astype(np.int64)


def load_dataset(data, likelihood="bernoulli", validation_fraction=0.1, seed=0, held_out=None, image_size=None):
    """Loads and validates a dataset by registered name, `.npz` path or image folder.

    Args:
      data: a name from `available_datasets()`, a path to an `.npz` file or a `.csv`
        table (numbers, optionally a header row; rows become `train`), or a folder
        of images (`DIR/<class>/*.png`, or `DIR/train/<class>/...` with `valid/` and
        `test/`; subfolders are class labels; see `_read_image_folder`).
      likelihood: a key of `LIKELIHOODS`: "bernoulli" (values must lie in [0, 1]),
        "gaussian", or a discretised logistic (values must be 8-bit levels 0 .. 255).
      validation_fraction: share of `train` held out as `valid` when the data has no
        `valid` split (a seeded permutation); 0 holds nothing out (`valid` is then None).
      seed: seed of that hold-out.
      held_out: indices into `train` to hold out as `valid` instead of drawing
        them (a run's recorded split, `DataSplits.held_out`).
      image_size: `(height, width)` to resize a folder's images to as they are read
        (bilinear, as Keras' `image_dataset_from_directory`; the 8-bit levels stay
        integers); None: they must all have one size. Only for a folder of images.

    Returns:
      `DataSplits` with float32 arrays.

    Raises:
      DataError: the file or key is missing, or an array has the wrong rank, dtype,
        no examples, NaN/Inf, or values outside [0, 1] for Bernoulli data.
    """
    if likelihood not in LIKELIHOOD_FAMILIES:
        raise DataError(f"likelihood must be one of {LIKELIHOOD_FAMILIES}; got {likelihood!r}.")
    table, names = False, {}
    if image_size is not None:
        if not is_image_folder(data):
            raise DataError(f"image_size resizes the images of a folder; {data!r} is no folder of images.")
        image_size = check_image_size(image_size)
    if data in _REGISTRY:
        arrays, source = _REGISTRY[data](), data
    elif records.is_record_dataset(str(data)):
        return _load_records(str(data), likelihood, held_out)
    elif os.path.isdir(str(data)):
        arrays, source = _read_image_folder(str(data), image_size), str(data)
    elif str(data).lower().endswith(".csv"):
        arrays, source = _read_csv(str(data)), str(data)
        # A table's rows are its one array: its messages name the file, not a key it lacks.
        table = True
    elif str(data).endswith(".npz") or os.path.sep in str(data):
        (arrays, names), source = _read_npz(str(data)), str(data)
    else:
        raise DataError(
            f"Unknown dataset {data!r}: give a path to an .npz file or one of {', '.join(available_datasets())}."
        )

    def key(name):  # the file's own key for one of ours
        return names.get(name, name)

    labels = {name[: -len("_labels")]: arrays.pop(name) for name in LABEL_KEYS if name in arrays}
    splits = {
        name: _validate(source if table else f"{source}[{key(name)!r}]", array, likelihood)
        for name, array in arrays.items()
    }
    for split in list(labels):
        if split not in splits:
            raise DataError(
                f"{source}: {key(split + '_labels')} has no {key(split)!r} array to label; add it or drop the labels."
            )
        labels[split] = _validate_labels(source, key(f"{split}_labels"), labels[split], len(splits[split]))
    example_shape = splits["train"].shape[1:]
    for name, array in splits.items():
        if array.shape[1:] != example_shape:
            raise DataError(
                f"{source}[{key(name)!r}]: examples have shape {array.shape[1:]}, but {key('train')!r} has "
                f"{example_shape}; every split must share one example shape."
            )
    if likelihood not in (None, "gaussian"):
        _check_one_scale(source, key, splits)
    valid_source = "file"
    if "valid" in splits:
        if held_out is not None:
            raise DataError(
                f"{source} has its own {key('valid')!r} array, so there is nothing to hold out of "
                f"{key('train')!r}; leave out `held_out`."
            )
    elif held_out is None and validation_fraction == 0:
        valid_source = "nothing held out of train (validation_fraction=0)"
    elif held_out is None:
        held_out = _hold_out(source, len(splits["train"]), validation_fraction, seed)
        valid_source = f"held out {validation_fraction:g} of train (seed {seed})"
    else:
        held_out = _check_held_out(source, held_out, len(splits["train"]))
        valid_source = f"held out {len(held_out)} recorded examples of train"
    fingerprint = None
    if held_out is not None:
        fingerprint = _fingerprint(splits["train"], labels.get("train"))
        kept = np.setdiff1d(np.arange(len(splits["train"])), held_out, assume_unique=True)
        splits["train"], splits["valid"] = splits["train"][kept], splits["train"][held_out]
        if "train" in labels:
            labels["train"], labels["valid"] = labels["train"][kept], labels["train"][held_out]
    return DataSplits(
        name=source,
        train=splits["train"],
        valid=splits.get("valid"),
        test=splits.get("test"),
        image_shape=infer_image_shape(example_shape),
        valid_source=valid_source,
        labels=labels,
        held_out=held_out,
        train_fingerprint=fingerprint,
    )


def _check_one_scale(source, key, splits):
    """Refuses splits of discrete data on two scales, 8-bit levels in one and [0, 1] in
    another: the run reads every split as its training data's, so a [0, 1] test split
    beside 8-bit training images would be scored as levels 0 and 1 (near black) and a
    level split beside [0, 1] training data refused only after training."""
    highs = {name: float(np.max(array)) for name, array in splits.items()}
    levels = [name for name, high in highs.items() if high > 1.0]
    unit = [name for name, high in highs.items() if high <= 1.0]
    if levels and unit:
        raise DataError(
            f"{source}: {key(levels[0])!r} holds levels up to {highs[levels[0]]:g}, but {key(unit[0])!r} lies in "
            f"[0, 1]; every split must be on one scale. Save them all as 8-bit levels (uint8), or all scaled "
            "to [0, 1] (x / 255)."
        )


def _fingerprint(train, labels):
    """SHA-256 of the examples (float32, as loaded) and labels, in the file's order."""
    digest = hashlib.sha256(np.ascontiguousarray(train, np.float32).tobytes())
    if labels is not None:
        digest.update(np.ascontiguousarray(labels, np.int64).tobytes())
    return digest.hexdigest()


def _load_records(path, likelihood, held_out):
    """`DataSplits` of a folder of TFRecord shards: `train` streamed, the others in memory."""
    streams = {
        split: records.open_records(path, split, lambda where, x: check_values(where, x, likelihood, eight_bit=True))
        for split in SPLITS
    }
    if streams["valid"] is None:
        raise DataError(
            f"{path}: a record dataset needs validation shards of its own (valid-*.tfrecord): a streamed "
            "train split cannot be drawn from at random to hold examples out. Write some with "
            f"tfvae.records.write_records({path!r}, 'valid', examples)."
        )
    if held_out is not None:
        raise DataError(
            f"{path} has its own validation shards, so there is nothing to hold out of 'train'; leave out `held_out`."
        )
    train = streams["train"]
    arrays, labels = {}, {}
    for split in ("valid", "test"):
        if streams[split] is None:
            continue
        if streams[split].example_shape != train.example_shape:
            raise DataError(
                f"{path}: {split} examples have shape {streams[split].example_shape}, but train's have "
                f"{train.example_shape}; every split must share one example shape."
            )
        arrays[split], split_labels = records.read_records(streams[split])
        if split_labels is not None:
            labels[split] = split_labels
    return DataSplits(
        name=path,
        train=train,
        valid=arrays["valid"],
        test=arrays.get("test"),
        image_shape=infer_image_shape(train.example_shape),
        valid_source="file",
        labels=labels,
    )


def _hold_out(source, size, fraction, seed):
    """The held-out indices (sorted) of a seeded permutation of `size` examples."""
    count = int(round(size * fraction))
    if not 0 < count < size:
        raise DataError(
            f"{source}: cannot hold out {fraction:g} of {size} training examples as a "
            "validation split; add a 'valid' array to the file or use more examples."
        )
    return np.sort(np.random.default_rng(seed).permutation(size)[:count])


def _check_held_out(source, held_out, size):
    held_out = np.asarray(held_out)
    if (
        held_out.ndim != 1
        or held_out.dtype.kind not in "iu"
        or not 0 < len(held_out) < size
        or held_out.min() < 0
        or held_out.max() >= size
        or len(np.unique(held_out)) != len(held_out)
    ):
        raise DataError(
            f"{source}: the recorded held-out examples ({len(held_out)} indices) do not fit its "
            f"{size} training examples; the file changed since the run was trained. Evaluate on "
            "the data the run was trained on, or on a file with its own 'valid' array."
        )
    return np.sort(held_out)
