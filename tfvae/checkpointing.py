"""Checkpoints a `kill -9` cannot corrupt, and the callbacks of a resumable run.

A checkpoint is a folder `epoch-NNNNNN/` holding the model's whole state after epoch
N (weights, optimizer slots, the sampler's seed and step, the Dropout layers' random
streams) and the per-epoch log up to it. It is written under a temporary name and
renamed into place, so the epoch count, the weights and the log always belong
together; the previous checkpoint is removed only after the new one is in place.
Keras' `BackupAndRestore` writes its weights and its epoch counter as two files in
place: a kill between or inside the two writes left a 0-byte `latest.weights.h5`
(resume impossible) or weights one epoch ahead of their counter (resume no longer
repeats the run).
"""

import hashlib
import json
import math
import os
import re
import shutil
import time

import keras
import numpy as np

from tfvae import files
from tfvae.callbacks import averaged_weights
from tfvae.errors import RunError

_CHECKPOINT = re.compile(r"^epoch-(\d{6})$")
STATE_FILE = "state.weights.h5"
LOG_FILE = "log.json"
RANDOM_FILE = "random_streams.json"


def random_streams(model):
    """The state variables of the model's Keras seed generators (its Dropout layers'), in
    the order the model lists its variables.

    Keras' weights files leave them out, so without them a resumed run would draw its
    dropout masks from the start of the stream again, and not repeat the uninterrupted run.
    """
    return [variable for variable in model.variables if variable.name == "seed_generator_state"]


def _finite(logs):
    return all(math.isfinite(float(value)) for value in logs.values())


class Checkpoint:
    """A complete checkpoint: `epochs` done, the `path` of its state, and its `log`."""

    def __init__(self, directory, epochs):
        self.epochs = epochs
        self.folder = os.path.join(directory, f"epoch-{epochs:06d}")
        self.path = os.path.join(self.folder, STATE_FILE)

    @property
    def log(self):
        """`[{metric: value}]`, one row per completed epoch."""
        with open(os.path.join(self.folder, LOG_FILE), encoding="utf-8") as f:
            return json.load(f)

    def restore(self, model):
        """Loads the model's and its optimizer's state from this checkpoint."""
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        try:
            model.load_weights(self.path)
        except Exception as error:  # h5py and Keras raise many types for a bad file
            raise RunError(
                f"Checkpoint {self.path} cannot be loaded ({type(error).__name__}: {error}); "
                "it does not match this run's model. Start the run again with --overwrite."
            ) from error
        streams_path = os.path.join(self.folder, RANDOM_FILE)
        if os.path.exists(streams_path):  # checkpoints written before it was kept have none
            with open(streams_path, encoding="utf-8") as f:
                states = json.load(f)
            streams = random_streams(model)
            if len(states) != len(streams):
                raise RunError(
                    f"Checkpoint {streams_path} holds {len(states)} random streams, but this run's model has "
                    f"{len(streams)}; it does not match the run. Start the run again with --overwrite."
                )
            for stream, state in zip(streams, states):
                stream.assign(np.asarray(state, dtype=stream.dtype))


def latest_checkpoint(directory):
    """The newest complete `Checkpoint` in `directory`, or None."""
    if not os.path.isdir(directory):
        return None
    done = [int(match.group(1)) for match in map(_CHECKPOINT.match, os.listdir(directory)) if match]
    return Checkpoint(directory, max(done)) if done else None


# The key of an epoch's wall time in a checkpoint's log rows (and epochs.csv's column).
EPOCH_SECONDS = "seconds"


class EpochCheckpoint(keras.callbacks.Callback):
    """Writes a `Checkpoint` after every epoch whose metrics are all finite.

    Each epoch's row of the log holds its metrics and `seconds`, its wall time with
    validation, so a resumed run still knows how long all of its training took. An
    epoch with a NaN or infinite metric is not written; the callback stops training
    and records it in `diverged` (`(epoch, logs)`), so the newest checkpoint is the
    last finite state.

    Args:
      directory: the folder that holds the checkpoints.
      log: the rows of the epochs already done (a resumed run's `Checkpoint.log`).
    """

    def __init__(self, directory, log=()):
        super().__init__()
        self.directory = directory
        self.log = [dict(row) for row in log]
        self.diverged = None
        self._epoch_started = None

    def on_train_begin(self, logs=None):
        os.makedirs(self.directory, exist_ok=True)
        files.remove_stale_temporaries(self.directory)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = {name: float(value) for name, value in (logs or {}).items()}
        if not _finite(logs):
            self.diverged = (epoch, logs)
            self.model.stop_training = True
            return
        self.log.append({**logs, EPOCH_SECONDS: time.perf_counter() - self._epoch_started})
        previous = latest_checkpoint(self.directory)
        checkpoint = Checkpoint(self.directory, epoch + 1)
        staging = os.path.join(self.directory, f"{files.TEMPORARY_PREFIX}{os.getpid()}-epoch-{epoch + 1:06d}")
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging)
        self.model.save_weights(os.path.join(staging, STATE_FILE))
        files.write_json(os.path.join(staging, RANDOM_FILE), [s.numpy().tolist() for s in random_streams(self.model)])
        files.write_json(os.path.join(staging, LOG_FILE), self.log)
        files.fsync(os.path.join(staging, STATE_FILE))
        os.replace(staging, checkpoint.folder)
        if previous is not None and previous.epochs != checkpoint.epochs:
            shutil.rmtree(previous.folder, ignore_errors=True)


class BestWeights(keras.callbacks.Callback):
    """Saves the weights (atomically) whenever `val_loss` beats the best so far: the
    optimizer's moving average of them where it keeps one (what `AveragedWeights`
    validates).

    Args:
      path: a `.weights.h5` file.
      best: the best `val_loss` of the epochs already done (a resumed run's).
    """

    def __init__(self, path, best=math.inf):
        super().__init__()
        self.path = path
        self.best = best

    def on_epoch_end(self, epoch, logs=None):
        current = float((logs or {}).get("val_loss", math.nan))
        if math.isfinite(current) and current < self.best:
            self.save(self.model)
            self.best = current

    def save(self, model):
        """Writes `model`'s weights (their average, where its optimizer keeps one) to `path`."""
        with files.atomic_path(self.path) as temporary, averaged_weights(model):
            model.save_weights(temporary)


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """`EarlyStopping` on `val_loss` that continues a resumed run's count of stalled epochs.

    Keras' callback restarts its count at every `fit`, so a run resumed two epochs
    after its best would wait `patience` more epochs than the uninterrupted run.

    Args:
      patience: epochs without a better `val_loss` before stopping.
      log: the rows of the epochs already done.
    """

    def __init__(self, patience, log=()):
        super().__init__(monitor="val_loss", patience=patience)
        self.done = best_so_far(log)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.done is not None:
            self.best, self.wait = self.done


def best_so_far(log):
    """`(best val_loss, epochs done since it)` of the epochs in `log`, or None before any.

    The first of equal values counts, as Keras' `EarlyStopping` and `BestWeights` only
    take strict improvements.
    """
    losses = [row["val_loss"] for row in log if "val_loss" in row]
    if not losses:
        return None
    best = min(range(len(losses)), key=losses.__getitem__)
    return losses[best], len(losses) - 1 - best


def stopped_early(log, patience):
    """Whether `EarlyStopping(patience)` had already ended the run whose epochs are `log`."""
    done = best_so_far(log)
    # Keras never stops after the first epoch (`epoch > 0`).
    return bool(patience) and done is not None and len(log) > 1 and done[1] >= patience


class EstimateCheckpoint:
    """The finished batches of a long per-example estimate (a K = 5000 `log_likelihood`
    takes an hour on 2 cores), kept in an `.npz` file so that a killed evaluation
    continues where it stopped.

    The file holds the estimates so far (NaN where a batch is not done) and a
    fingerprint of everything they depend on: the model's weights, the examples and
    labels, and the estimator's settings (the caller's, including the seed). Each
    example's draws are keyed by its values (`tfvae.seeding.ExampleNoise`), so the
    resumed estimate equals the uninterrupted one, and a batch whose examples are all
    kept is not estimated again whatever the batch sizes of the calls. A file with
    another fingerprint is an estimate of something else: it is started afresh.

    The file also keeps `seconds`, the wall time spent on its recorded batches summed
    over every process that worked on it, so a resumed estimate can say what it cost.

    Args:
      path: the `.npz` file.
      settings: a JSON-serialisable dict of the estimator's settings.
      model: the model whose weights the estimate depends on.
      arrays: the examples estimated (and their labels), examples first.
    """

    def __init__(self, path, settings, model, arrays):
        self._last_record = time.perf_counter()
        self.path = path
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
        for array in (*(weight.numpy() for weight in model.weights), *arrays):
            array = np.ascontiguousarray(array)
            digest.update(f"{array.dtype}{array.shape}".encode())
            digest.update(array.tobytes())
        self.fingerprint = digest.hexdigest()
        self.estimates = np.full(len(arrays[0]), np.nan, np.float32)
        self.seconds = 0.0
        kept = read_estimate_checkpoint(path)
        # The fingerprint covers the examples' shape, so a match has their count.
        if kept is not None and kept["fingerprint"] == self.fingerprint:
            self.estimates = kept["estimates"]
            self.seconds = kept["seconds"]

    def done(self, start, stop):
        """The kept estimates of examples [start, stop), or None if that batch is not done."""
        batch = self.estimates[start:stop]
        return None if np.isnan(batch).any() else batch

    def record(self, start, estimates):
        """Keeps one finished batch's estimates (atomically: a kill leaves the file as it was)."""
        self.estimates[start : start + len(estimates)] = estimates
        now = time.perf_counter()
        self.seconds += now - self._last_record
        self._last_record = now
        with files.atomic_path(self.path) as temporary, open(temporary, "wb") as f:
            np.savez(
                f, fingerprint=np.array(self.fingerprint), estimates=self.estimates, seconds=np.array(self.seconds)
            )


def read_estimate_checkpoint(path):
    """What an `EstimateCheckpoint` file holds, or None when there is no file.

    Returns:
      A dict: `fingerprint` (str), `estimates` (float32, NaN where not done) and
      `seconds` (the wall time of the recorded batches over every process; 0.0 for
      files written before it was kept).
    """
    if not os.path.exists(path):
        return None
    with np.load(path) as kept:
        return {
            "fingerprint": str(kept["fingerprint"]),
            "estimates": kept["estimates"].copy(),
            "seconds": float(kept["seconds"]) if "seconds" in kept.files else 0.0,
        }
