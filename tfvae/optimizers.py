"""Keras' Adam with weight-decay exclusions that survive a `.keras` round trip."""

import keras


@keras.saving.register_keras_serializable(package="tfvae")
class Adam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` whose weight decay leaves the variables `exclude` names alone.

    With `weight_decay=λ` every update also multiplies each variable w not excluded by
    1 − lr·λ (decoupled weight decay, AdamW; Loshchilov & Hutter 2019). Keras saves
    `weight_decay` with a model but not the names given to `exclude_from_weight_decay`,
    so a model reloaded with `keras.models.load_model` would go on decaying every
    variable; this optimizer keeps the names in its config.

    Args:
      *args: `keras.optimizers.Adam`'s arguments (`learning_rate`, ...).
      exclude: substrings of variable names (as `Variable.name`) that weight decay skips.
      **kwargs: the rest of `keras.optimizers.Adam`'s arguments (`weight_decay`, ...).

    Example:
      >>> optimizer = tfvae.Adam(5e-4, weight_decay=0.1, exclude=("bias",))
      >>> vae.compile(optimizer=optimizer)  # kernels decay, biases do not
    """

    def __init__(self, *args, exclude=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.exclude = tuple(exclude)
        self.exclude_from_weight_decay(var_names=self.exclude)

    def get_config(self):
        return {**super().get_config(), "exclude": list(self.exclude)}
