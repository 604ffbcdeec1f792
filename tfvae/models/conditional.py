"""The conditional VAE p(x, y, z) = p(x|y, z) p(y) p(z) with q(z|x, y)."""

import keras
import tensorflow as tf

from tfvae.models.base import example_count
from tfvae.models.vae import VAE


@keras.saving.register_keras_serializable(package="tfvae")
class ConditionalVAE(VAE):
    """A VAE whose encoder sees (x, y) and whose decoder sees (z, y).

    y is a class label: an integer id in `[0, num_classes)`, one-hot inside the
    model. Training maximises the conditional ELBO

        E_q(z|x,y)[log p(x|y, z)] - beta * KL(q(z|x, y) || p(z))

    which bounds log p(x|y); p(y) is the data's class frequencies and takes no part
    in training. Generation draws z ~ p(z) and decodes it with the requested class.

    Args:
      input_shape: shape of one example x.
      num_classes: the number of classes y.
      latent_dim, and every other argument: as `tfvae.VAE` (the standard normal
        prior only: a VampPrior has no labels for its pseudo-inputs).

    Every method has `tfvae.VAE`'s signature, with the labels as the keyword argument
    `labels` (required here): `encode(x, labels=y)`, `decode(z, labels=y)`,
    `sample(n, labels=y)`, `elbo(x, labels=y)`, `log_likelihood(x, labels=y)`.

    Example:
      >>> cvae = tfvae.ConditionalVAE(input_shape=(64,), num_classes=10, latent_dim=4)
      >>> cvae.compile()
      >>> cvae.fit((x_train, y_train), epochs=2, batch_size=32)
      >>> cvae.sample(10, labels=np.arange(10), seed=0)  # one example of each class
      >>> cvae.log_likelihood(x_test, labels=y_test)  # log p(x|y)
    """

    def __init__(self, input_shape, num_classes, latent_dim=16, **kwargs):
        super().__init__(input_shape, latent_dim, num_classes=num_classes, **kwargs)

    def fit(self, x=None, y=None, *args, **kwargs):
        """As `VAE.fit` on `(x, labels)` (or x and y=labels); in-memory labels are checked first."""
        if y is None and isinstance(x, (tuple, list)) and len(x) == 2:
            self.check_labels(x[1], example_count(x[0]))
        elif y is not None and not isinstance(x, tf.data.Dataset):
            self.check_labels(y, example_count(x))
        return super().fit(x, y, *args, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes)
        return config
