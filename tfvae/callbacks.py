"""Keras callbacks specific to VAEs."""

import contextlib

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


@contextlib.contextmanager
def averaged_weights(model):
    """Inside the block, `model`'s trainable weights are its optimizer's moving average
    of them (`use_ema=True`); after it, exactly the weights it had. Without an averaging
    optimizer, nothing changes."""
    optimizer = model.optimizer
    if optimizer is None or not optimizer.use_ema:
        yield model
        return
    variables = optimizer._trainable_variables  # the pairing Keras' own SwapEMAWeights reads
    trained = [variable.numpy() for variable in variables]
    for variable, average in zip(variables, optimizer._model_variables_moving_average):
        variable.assign(average)
    try:
        yield model
    finally:
        for variable, value in zip(variables, trained):
            variable.assign(value)


class AveragedWeights(keras.callbacks.Callback):
    """Validates the optimizer's exponential moving average of the weights (Polyak averaging).

    With an optimizer built with `use_ema=True, ema_momentum=m`, Keras keeps
    w̄ ← m·w̄ + (1 − m)·w after every update. During each validation this callback puts
    w̄ in the model, so `val_loss`, early stopping and `tfvae`'s best-weights file judge
    and keep the average, while training goes on from its own weights w. `tfvae train
    --ema-momentum m` adds it.

    Keras' `SwapEMAWeights` does the same by adding and subtracting the two sets in
    place, which gives the training weights back with rounding errors: a run that
    validates every epoch then no longer follows the one that does not (measured on a
    small VAE, 3 epochs of 8 batches: its averages ended up to 8.9e-8 away from those of
    the run without validation). Here w is copied out and assigned back, so it returns to
    the last bit (tested).

    Example:
      >>> vae.compile(optimizer=keras.optimizers.Adam(5e-4, use_ema=True, ema_momentum=0.999))
      >>> vae.fit(x, validation_data=(x_valid,), callbacks=[tfvae.AveragedWeights()])
    """

    def __init__(self):
        super().__init__()
        self._swapped = contextlib.ExitStack()

    def on_test_begin(self, logs=None):
        self._swapped.enter_context(averaged_weights(self.model))

    def on_test_end(self, logs=None):
        self.restore_training_weights()

    def restore_training_weights(self):
        """Puts the training weights w back if a validation has the average in the model
        (nothing otherwise). `tfvae`'s `fit` calls it when it ends by an exception, since
        Keras calls no `on_test_end` for a validation that Ctrl-C or an error cut short."""
        self._swapped.close()
