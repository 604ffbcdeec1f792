"""The plain autoencoder: the deterministic baseline a VAE is compared against."""

import keras
import tensorflow as tf

from tfvae.errors import ConfigError
from tfvae.models.base import LatentModel, example_count


@keras.saving.register_keras_serializable(package="tfvae")
class Autoencoder(LatentModel):
    """x -> z = encoder(x) -> p(x|z), trained to minimise the reconstruction loss -log p(x|z).

    The same networks, likelihoods and saving as `tfvae.VAE`, without a posterior or a
    prior: the code z is a point, and nothing shapes where codes lie. With a
    Bernoulli likelihood the loss is the binary cross-entropy summed over pixels
    (nats per example), the VAE's `reconstruction` term, so the two compare directly.

    Args:
      input_shape: shape of one example x.
      latent_dim: size of z.
      likelihood, likelihood_scale, encoder, decoder, arch, hidden_units, filters,
        activation, image_shape, residual_blocks, dropout, decoder_dropout: as `tfvae.VAE`
        (a user encoder outputs `latent_dim`).

    Metrics: `loss` and `reconstruction`, both -log p(x|z) per example.

    Example:
      >>> ae = tfvae.Autoencoder(input_shape=(64,), latent_dim=4, hidden_units=(32,))
      >>> ae.compile()
      >>> ae.fit(x_train, epochs=2, batch_size=32)
      >>> ae.reconstruct(x_test)  # [N, 64]
    """

    def __init__(
        self,
        input_shape,
        latent_dim=16,
        *,
        likelihood="bernoulli",
        likelihood_scale=None,
        encoder=None,
        decoder=None,
        arch="mlp",
        hidden_units=(512, 256),
        filters=(32, 64),
        activation="relu",
        image_shape=None,
        residual_blocks=0,
        dropout=0.0,
        decoder_dropout=None,
        **kwargs,
    ):
        super().__init__(
            input_shape,
            latent_dim,
            encoder_output_size=latent_dim,
            likelihood=likelihood,
            likelihood_scale=likelihood_scale,
            encoder=encoder,
            decoder=decoder,
            arch=arch,
            hidden_units=hidden_units,
            filters=filters,
            activation=activation,
            image_shape=image_shape,
            residual_blocks=residual_blocks,
            dropout=dropout,
            decoder_dropout=decoder_dropout,
            metric_names=("loss", "reconstruction"),
            encoder_output_hint="an autoencoder's encoder outputs the code z itself",
            **kwargs,
        )
        self.build((None, *self.network_config.input_shape))

    def _code(self, x, labels, training):
        return self.encoder(self._network_inputs(x, labels), training=training)

    def encode(self, x, *, labels=None, training=False):
        """The code z = encoder(x), `[batch, latent_dim]`."""
        x = self.check_examples(x, "encode's x", values=False)
        return self._code(x, self.check_labels(labels, example_count(x)), training)

    def decode(self, z, *, labels=None, training=False):
        """p(x|z) for z `[..., latent_dim]`: batch shape `z.shape[:-1]`."""
        return self._decode(z, self.check_labels(labels), training)

    def reconstruction_loss(self, x, *, labels=None):
        """-log p(x | z = encoder(x)) per example, `[batch]` nats."""
        x = self.check_examples(x, "reconstruction_loss's x")
        x = tf.cast(x, self.compute_dtype)
        labels = self.check_labels(labels, example_count(x))
        return -self._decode(self._code(x, labels, False), labels).log_prob(x)

    def sample(self, n, *, seed=None, labels=None, draw=False):
        """Refuses: an autoencoder has no prior over z, so it has nothing to sample from."""
        raise ConfigError(
            "An Autoencoder cannot sample: it has no prior p(z) to draw codes from, and "
            "decoding arbitrary codes gives no valid examples. Train a tfvae.VAE to generate."
        )

    def encoder_outputs(self, x, labels=None):
        """The exported encoder's outputs: `{"z": encoder(x)}`."""
        return {"z": self._code(x, labels, False)}

    def _objective_and_metrics(self, x, labels, training):
        z = self._code(x, labels, training)
        reconstruction = -tf.reduce_mean(self._decode(z, labels, training).log_prob(x))
        return reconstruction, {"loss": reconstruction, "reconstruction": reconstruction}
