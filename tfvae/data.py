"""The one registry of datasets, and the validation every dataset passes at load.

A dataset is named either by a registered name (the bundled default, "digits") or by
a path to an `.npz` file with a `train` array and optionally `valid` and `test`
arrays, `[N, *example_shape]`, and for conditional models `train_labels` (and
`valid_labels`, `test_labels`): integer class ids `[N]`. Loading checks what numeric code would otherwise
trip over later, and says which file, which key, what was found and what to do.
"""
import dataclasses
import os

import numpy as np

from tfvae.distributions import LIKELIHOODS
from tfvae.errors import DataError
from tfvae.networks import infer_image_shape

SPLITS = ("train", "valid", "test")
LABEL_KEYS = tuple(f"{split}_labels" for split in SPLITS)
LIKELIHOOD_FAMILIES = tuple(LIKELIHOODS)
_REGISTRY = {}


@dataclasses.dataclass(frozen=True)
class DataSplits:
    """A dataset ready for training: float32 arrays `[N, *example_shape]`.

    Attributes:
      name: the registered name or the file path.
      train, valid, test: the splits (`test` may be None).
      image_shape: `(height, width, channels)` for pictures, or None.
      valid_source: "file" when the data had a validation split, otherwise a note
        on how it was held out of `train`.
      labels: `{split: int64 class ids [N]}` for the splits that have labels (empty
        for unlabelled data).
      held_out: when `valid` was held out of the file's `train`, the indices (into
        that array) of the held-out examples; None when the data had a `valid` split.
        A training run records them, so that later commands evaluate on exactly the
        examples it did not train on.
    """

    name: str
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    image_shape: tuple
    valid_source: str
    labels: dict = dataclasses.field(default_factory=dict)
    held_out: np.ndarray = None

    @property
    def example_shape(self):
        return tuple(self.train.shape[1:])

    @property
    def num_classes(self):
        """1 + the largest class id in any split, or None for unlabelled data."""
        return int(max(v.max() for v in self.labels.values())) + 1 if self.labels else None

    def split(self, name):
        """`(examples, labels or None)` of the split `name` ("train", "valid" or "test")."""
        return getattr(self, name), self.labels.get(name)

    def require_labels(self):
        """Raises a DataError unless every split present has labels (conditional training)."""
        missing = [name for name in SPLITS if getattr(self, name) is not None and name not in self.labels]
        if missing:
            raise DataError(
                f"{self.name}: a conditional model needs class labels, but "
                f"{', '.join(f'{m}_labels' for m in missing)} missing. Add integer arrays "
                "train_labels (valid_labels, test_labels) to the .npz, or train without --conditional."
            )


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


def _read_npz(path):
    if not os.path.exists(path):
        raise DataError(
            f"Dataset file {path!r} does not exist. Give a path to an .npz file or one of "
            f"the bundled datasets: {', '.join(available_datasets())}."
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "train" not in archive.files:
                raise DataError(
                    f"{path}: no 'train' array (found keys {sorted(archive.files)}). The .npz "
                    "needs 'train' and may have 'valid' and 'test', each [N, *example_shape]."
                )
            return {key: archive[key] for key in (*SPLITS, *LABEL_KEYS) if key in archive.files}
    except DataError:
        raise
    except (OSError, ValueError) as error:
        raise DataError(
            f"{path}: cannot be read as an .npz of numeric arrays ({error}). Save it with "
            "numpy.savez(path, train=..., valid=..., test=...)."
        ) from error


def _validate(source, key, array, likelihood):
    where = f"{source}[{key!r}]"
    if array.dtype.kind not in "biuf":
        raise DataError(f"{where}: dtype {array.dtype} is not numeric; expected floats or ints.")
    if array.ndim < 2 or array.ndim > 4:
        raise DataError(
            f"{where}: shape {array.shape} has rank {array.ndim}; expected [N, features], "
            "[N, height, width] or [N, height, width, channels]."
        )
    if array.shape[0] == 0 or array.size == 0:
        raise DataError(f"{where}: shape {array.shape} holds no examples; expected N > 0.")
    array = array.astype(np.float32)
    bad = ~np.isfinite(array)
    if bad.any():
        raise DataError(
            f"{where}: {int(bad.sum())} NaN or infinite values (first in example "
            f"{int(np.argwhere(bad)[0][0])}); remove or impute them."
        )
    if likelihood == "bernoulli":
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise DataError(
                f"{where}: values span [{low:g}, {high:g}], but a Bernoulli likelihood needs "
                "[0, 1]. Scale the data (e.g. x / 255 for 8-bit pixels) or use a Gaussian "
                "likelihood (--likelihood gaussian)."
            )
    return array


def _validate_labels(source, key, labels, count):
    where = f"{source}[{key!r}]"
    if labels.ndim != 1 or len(labels) != count:
        raise DataError(
            f"{where}: shape {labels.shape}; expected one class id per example, [{count}]."
        )
    if labels.dtype.kind == "f" and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)):
        labels = labels.astype(np.int64)
    if labels.dtype.kind not in "iu":
        raise DataError(f"{where}: dtype {labels.dtype}; class labels must be integer ids 0, 1, ...")
    if labels.min() < 0:
        raise DataError(f"{where}: label {labels.min()} is negative; class ids start at 0.")
    return labels.astype(np.int64)


def load_dataset(data, likelihood="bernoulli", validation_fraction=0.1, seed=0, held_out=None):
    """Loads and validates a dataset by registered name or `.npz` path.

    Args:
      data: a name from `available_datasets()` or a path to an `.npz` file.
      likelihood: "bernoulli" (values must lie in [0, 1]) or "gaussian".
      validation_fraction: share of `train` held out as `valid` when the data has no
        `valid` split (a seeded permutation).
      seed: seed of that hold-out.
      held_out: indices into `train` to hold out as `valid` instead of drawing
        them (a run's recorded split, `DataSplits.held_out`).

    Returns:
      `DataSplits` with float32 arrays.

    Raises:
      DataError: the file or key is missing, or an array has the wrong rank, dtype,
        no examples, NaN/Inf, or values outside [0, 1] for Bernoulli data.
    """
    if likelihood not in LIKELIHOOD_FAMILIES:
        raise DataError(f"likelihood must be one of {LIKELIHOOD_FAMILIES}; got {likelihood!r}.")
    if data in _REGISTRY:
        arrays, source = _REGISTRY[data](), data
    elif str(data).endswith(".npz") or os.path.sep in str(data):
        arrays, source = _read_npz(str(data)), str(data)
    else:
        raise DataError(
            f"Unknown dataset {data!r}: give a path to an .npz file or one of "
            f"{', '.join(available_datasets())}."
        )
    labels = {key[: -len("_labels")]: arrays.pop(key) for key in LABEL_KEYS if key in arrays}
    splits = {key: _validate(source, key, array, likelihood) for key, array in arrays.items()}
    for split in list(labels):
        if split not in splits:
            raise DataError(f"{source}: {split}_labels has no {split!r} array to label; add it or drop the labels.")
        labels[split] = _validate_labels(source, f"{split}_labels", labels[split], len(splits[split]))
    example_shape = splits["train"].shape[1:]
    for key, array in splits.items():
        if array.shape[1:] != example_shape:
            raise DataError(
                f"{source}[{key!r}]: examples have shape {array.shape[1:]}, but 'train' has "
                f"{example_shape}; every split must share one example shape."
            )
    valid_source = "file"
    if "valid" in splits:
        if held_out is not None:
            raise DataError(
                f"{source} has its own 'valid' array, so there is nothing to hold out of "
                "'train'; leave out `held_out`."
            )
    elif held_out is None:
        held_out = _hold_out(source, len(splits["train"]), validation_fraction, seed)
        valid_source = f"held out {validation_fraction:g} of train (seed {seed})"
    else:
        held_out = _check_held_out(source, held_out, len(splits["train"]))
        valid_source = f"held out {len(held_out)} recorded examples of train"
    if "valid" not in splits:
        kept = np.setdiff1d(np.arange(len(splits["train"])), held_out, assume_unique=True)
        splits["train"], splits["valid"] = splits["train"][kept], splits["train"][held_out]
        if "train" in labels:
            labels["train"], labels["valid"] = labels["train"][kept], labels["train"][held_out]
    return DataSplits(
        name=source,
        train=splits["train"],
        valid=splits["valid"],
        test=splits.get("test"),
        image_shape=infer_image_shape(example_shape),
        valid_source=valid_source,
        labels=labels,
        held_out=held_out,
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
    if (held_out.ndim != 1 or held_out.dtype.kind not in "iu" or not 0 < len(held_out) < size
            or held_out.min() < 0 or held_out.max() >= size or len(np.unique(held_out)) != len(held_out)):
        raise DataError(
            f"{source}: the recorded held-out examples ({len(held_out)} indices) do not fit its "
            f"{size} training examples; the file changed since the run was trained. Evaluate on "
            "the data the run was trained on, or on a file with its own 'valid' array."
        )
    return np.sort(held_out)
