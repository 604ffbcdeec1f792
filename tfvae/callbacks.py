"""Keras callbacks specific to VAEs."""

import keras

from tfvae.errors import ConfigError


class KLWarmup(keras.callbacks.Callback):
    """Linear warm-up of the KL weight over the first epochs.

    At the start of epoch e (counted from 0, including `initial_epoch`, so resumed
    runs continue the schedule) the KL term is weighted by
    `beta * min(1, (e + 1) / warmup_epochs)`, as in Sønderby et al. (2016) and
    Tomczak & Welling (2018). `VAE.fit` adds this callback itself when the model has
    `kl_warmup_epochs > 0`.

    Args:
      warmup_epochs: number of epochs until the weight reaches `beta`.
    """

    def __init__(self, warmup_epochs):
        super().__init__()
        if warmup_epochs <= 0:
            raise ConfigError(f"`warmup_epochs` must be positive; got {warmup_epochs}.")
        self.warmup_epochs = warmup_epochs

    def on_epoch_begin(self, epoch, logs=None):
        fraction = min(1.0, (epoch + 1) / self.warmup_epochs)
        self.model.kl_weight.assign(self.model.beta * fraction)


class StepProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, counting the batches that really ran.

    With several steps per call into TensorFlow (`steps_per_execution`, 32 by
    default in tfvae), Keras reports the last step of each call as if every call ran
    all of its steps, so a 23-batch epoch showed `32/23`. This bar never counts past
    the epoch's known length. `fit` and `evaluate` of every tfvae model use it unless
    given a `ProgbarLogger` of their own.
    """

    def _counted(self, batch):
        return batch if self.target is None else min(batch, self.target - 1)

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(self._counted(batch), logs)

    def on_test_batch_end(self, batch, logs=None):
        super().on_test_batch_end(self._counted(batch), logs)

    def on_predict_batch_end(self, batch, logs=None):
        super().on_predict_batch_end(self._counted(batch), logs)


def with_progress_bar(callbacks, verbose):
    """`callbacks` with a `StepProgbar` when Keras would add its own bar (verbose is not 0
    and no `ProgbarLogger` is there). A `CallbackList` (what `fit` hands to its
    validation `evaluate`) is passed on as it is."""
    if isinstance(callbacks, keras.callbacks.CallbackList) or verbose == 0:
        return callbacks
    callbacks = list(callbacks or [])
    if not any(isinstance(callback, keras.callbacks.ProgbarLogger) for callback in callbacks):
        callbacks.append(StepProgbar())
    return callbacks
