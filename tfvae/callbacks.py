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
