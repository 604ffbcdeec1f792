"""The variational autoencoder p(x, z) = p(x|z) p(z) with a Gaussian q(z|x)."""
import random

import keras
import numpy as np
import tensorflow as tf

from tfvae import objectives
from tfvae.callbacks import KLWarmup
from tfvae.distributions import GaussianPosterior, get_likelihood
from tfvae.errors import ConfigError
from tfvae.networks import NetworkConfig, build_decoder, build_encoder
from tfvae.priors import get_prior
from tfvae.seeding import fold_in, stateless_seed

OBJECTIVES = ("elbo", "iwae")


@keras.saving.register_keras_serializable(package="tfvae")
class VAE(keras.Model):
    """A variational autoencoder trained by maximising the ELBO with `fit`.

    The encoder's output goes through a `GaussianPosterior` to give q(z|x); samples
    z ~ q(z|x) are reparameterised (TFP's Gaussian samplers are), decoded by the
    decoder and a likelihood layer into p(x|z). `fit` maximises

        ELBO(x) = E_q[log p(x|z)] - beta * KL(q(z|x) || p(z))

    with `num_samples` Monte Carlo samples per input, the KL in closed form when TFP
    has one and `analytic_kl` is True (diagonal and full Gaussians against the
    standard normal prior), and by Monte Carlo otherwise.

    Args:
      input_shape: shape of one example x, e.g. `(784,)`.
      latent_dim: size of z.
      posterior: "diagonal" or "full" covariance of q(z|x).
      likelihood: "bernoulli", "gaussian" or a `tfvae.Likelihood` layer.
      likelihood_scale: the Gaussian likelihood's fixed standard deviation; None
        learns one per dimension.
      prior: None (standard normal) or a `tfvae.Prior` layer.
      encoder: a Keras model from x to `GaussianPosterior.params_size(latent_dim,
        posterior)` outputs; built from `arch`, `hidden_units`, ... when None.
      decoder: a Keras model from z `[batch, latent_dim]` to `[batch, *input_shape]`
        likelihood parameters; built when None.
      arch, hidden_units, filters, activation, image_shape: see `NetworkConfig`.
      num_samples: Monte Carlo samples of z per input in training (K).
      objective: "elbo", or "iwae" for the K-sample importance-weighted bound of
        Burda et al. (2016) as the training loss (with beta and warm-up applied as
        log w = log p(x|z) + beta * (log p(z) - log q(z|x))).
      analytic_kl: use the closed-form KL where one exists.
      beta: weight of the KL term (beta > 1 is the beta-VAE of Higgins et al. 2017).
      kl_warmup_epochs: if > 0, the KL weight rises linearly from beta/N to beta
        over N epochs.
      seed: seed of the training-time samples of z.

    Metrics reported by `fit` and `evaluate` (nats per example):
      `loss`: the negative ELBO, -E_q[log p(x|z)] + KL (the negative IWAE bound with
        objective="iwae"), unweighted by beta so that curves compare across beta and
        warm-up; `reconstruction`: -E_q[log p(x|z)];
      `kl`: KL(q(z|x) || p(z)).

    Example:
      >>> vae = tfvae.VAE(input_shape=(64,), latent_dim=4, hidden_units=(32,))
      >>> vae.compile()
      >>> vae.fit(x_train, epochs=2, batch_size=32, validation_data=(x_valid,))
      >>> vae.log_likelihood(x_test, num_samples=500)  # [N], nats
    """

    def __init__(
        self,
        input_shape,
        latent_dim=16,
        *,
        posterior="diagonal",
        likelihood="bernoulli",
        likelihood_scale=None,
        prior=None,
        encoder=None,
        decoder=None,
        arch="mlp",
        hidden_units=(512, 256),
        filters=(32, 64),
        activation="relu",
        image_shape=None,
        num_samples=1,
        objective="elbo",
        analytic_kl=True,
        beta=1.0,
        kl_warmup_epochs=0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.network_config = NetworkConfig(
            input_shape=tuple(input_shape),
            latent_dim=latent_dim,
            arch=arch,
            hidden_units=tuple(hidden_units),
            filters=tuple(filters),
            activation=activation,
            image_shape=image_shape,
        )
        if not isinstance(num_samples, int) or num_samples <= 0:
            raise ConfigError(f"`num_samples` must be a positive int; got {num_samples!r}.")
        if objective not in OBJECTIVES:
            raise ConfigError(f"`objective` must be one of {OBJECTIVES}; got {objective!r}.")
        if beta < 0:
            raise ConfigError(f"`beta` must be >= 0; got {beta}.")
        if kl_warmup_epochs < 0:
            raise ConfigError(f"`kl_warmup_epochs` must be >= 0; got {kl_warmup_epochs}.")
        self.latent_dim = latent_dim
        self.num_samples = num_samples
        self.objective = objective
        self.analytic_kl = bool(analytic_kl)
        self.beta = float(beta)
        self.kl_warmup_epochs = int(kl_warmup_epochs)
        self.seed = seed

        self.posterior_layer = GaussianPosterior(latent_dim, covariance=posterior)
        self.likelihood_layer = get_likelihood(
            likelihood, self.network_config.input_shape, likelihood_scale
        )
        self.prior_layer = get_prior(prior, latent_dim)
        params_size = GaussianPosterior.params_size(latent_dim, posterior)
        self.encoder = encoder or build_encoder(self.network_config, params_size)
        self.decoder = decoder or build_decoder(self.network_config)
        self._check_network_shapes(params_size)

        self.kl_weight = keras.Variable(self.beta, trainable=False, name="kl_weight")
        # The state of the training-time sampler of z: a stateless seed and a counter.
        # A weight (not keras.random.SeedGenerator, whose state is not) so checkpoints
        # and .keras files carry it and resumed runs draw the same samples.
        self.sampler_state = self.add_weight(
            shape=(2,), dtype="int64", trainable=False, name="sampler_state",
            initializer=keras.initializers.Constant(
                [seed if seed is not None else random.randrange(2**31), 0]
            ),
            aggregation="only_first_replica",
        )
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        self.build((None, *self.network_config.input_shape))

    def _check_network_shapes(self, params_size):
        encoder_out = tuple(self.encoder.output_shape[1:])
        if encoder_out != (params_size,):
            raise ConfigError(
                f"The encoder outputs shape {encoder_out}, but a {self.posterior_layer.covariance} "
                f"posterior over {self.latent_dim} latents needs ({params_size},): "
                f"GaussianPosterior.params_size({self.latent_dim}, "
                f"'{self.posterior_layer.covariance}')."
            )
        decoder_out = tuple(self.decoder.output_shape[1:])
        if decoder_out != self.network_config.input_shape:
            raise ConfigError(
                f"The decoder outputs shape {decoder_out}, but the likelihood needs the "
                f"example shape {self.network_config.input_shape}."
            )

    def build(self, input_shape):
        # The encoder and decoder are functional models, built at construction.
        self.posterior_layer.build(self.encoder.output_shape)
        self.likelihood_layer.build(self.decoder.output_shape)
        self.built = True

    @property
    def metrics(self):
        return [self.loss_tracker, self.reconstruction_tracker, self.kl_tracker]

    @property
    def prior(self):
        """p(z): a distribution with event shape `[latent_dim]`."""
        return self.prior_layer.distribution()

    def encode(self, x, training=False):
        """q(z|x): batch shape `[batch]`, event shape `[latent_dim]`."""
        return self.posterior_layer(self.encoder(x, training=training))

    def decode(self, z, training=False):
        """p(x|z) for z `[..., latent_dim]`: batch shape `z.shape[:-1]`, event shape x's."""
        leading = tf.shape(z)[:-1]
        params = self.decoder(tf.reshape(z, [-1, self.latent_dim]), training=training)
        params = tf.reshape(params, tf.concat([leading, tf.shape(params)[1:]], axis=0))
        return self.likelihood_layer(params)

    def call(self, x, training=False):
        """The deterministic reconstruction: the likelihood's mean at z = E_q[z]."""
        return self.decode(self.encode(x, training=training).mean(), training=training).mean()

    def reconstruct(self, x):
        """E[x | z = E_q[z|x]]: the expected image decoded from the posterior mean."""
        return self(x, training=False)

    def sample(self, n, seed=None):
        """n examples generated by drawing z from the prior and decoding its mean image.

        Args:
          n: number of examples.
          seed: None, an int or a `[2]` stateless seed; the same int gives the same
            samples.

        Returns:
          `[n, *input_shape]`: the likelihood's mean (pixel probabilities for a
          Bernoulli likelihood).
        """
        z = self.prior.sample(n, seed=stateless_seed(seed))
        return self.decode(z).mean()

    def _log_weight_terms(self, x, num_samples, seed, training=False):
        posterior = self.encode(x, training=training)
        z = posterior.sample(num_samples, seed=seed)  # [num_samples, batch, latent_dim]
        likelihood = self.decode(z, training=training)
        return posterior, objectives.log_weight_terms(x, z, posterior, likelihood, self.prior)

    def _training_losses(self, x, training):
        """`(loss, weighted loss to optimise, reconstruction, kl)`, each a scalar mean."""
        seed = tf.cast(self.sampler_state.value, tf.int32)
        self.sampler_state.assign_add(tf.constant([0, 1], tf.int64))
        posterior, terms = self._log_weight_terms(x, self.num_samples, seed, training)
        expected_log_likelihood, kl = objectives.elbo_terms(
            terms, posterior, self.prior, self.analytic_kl
        )
        reconstruction, kl = -tf.reduce_mean(expected_log_likelihood), tf.reduce_mean(kl)
        if self.objective == "elbo":
            return reconstruction + kl, reconstruction + self.kl_weight * kl, reconstruction, kl
        log_ratio = terms.log_prior - terms.log_posterior  # [num_samples, batch]
        loss = -tf.reduce_mean(objectives.iwae_bound(terms.log_likelihood + log_ratio))
        weighted = -tf.reduce_mean(objectives.iwae_bound(terms.log_likelihood + self.kl_weight * log_ratio))
        return loss, weighted, reconstruction, kl

    def _update_metrics(self, loss, reconstruction, kl):
        self.loss_tracker.update_state(loss)
        self.reconstruction_tracker.update_state(reconstruction)
        self.kl_tracker.update_state(kl)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        x = tf.cast(keras.utils.unpack_x_y_sample_weight(data)[0], self.compute_dtype)
        with tf.GradientTape() as tape:
            loss, weighted, reconstruction, kl = self._training_losses(x, training=True)
            # tf.distribute sums gradients over replicas; dividing makes that a mean.
            scaled = weighted / tf.distribute.get_strategy().num_replicas_in_sync
        gradients = tape.gradient(scaled, self.trainable_weights)
        self.optimizer.apply(gradients, self.trainable_weights)
        return self._update_metrics(loss, reconstruction, kl)

    def test_step(self, data):
        x = tf.cast(keras.utils.unpack_x_y_sample_weight(data)[0], self.compute_dtype)
        loss, _, reconstruction, kl = self._training_losses(x, training=False)
        return self._update_metrics(loss, reconstruction, kl)

    def compile(self, optimizer=None, **kwargs):
        """As `keras.Model.compile`; the optimizer defaults to Adam(1e-3)."""
        super().compile(optimizer=optimizer or keras.optimizers.Adam(1e-3), **kwargs)

    def compile_from_config(self, config):
        # Keras skips re-compiling models whose `compile` is overridden unless this is
        # too; doing it restores the optimizer (and its saved state) on load.
        self.compile(**keras.saving.deserialize_keras_object(config))
        self.optimizer.build(self.trainable_variables)

    def fit(self, *args, callbacks=None, **kwargs):
        """As `keras.Model.fit`, adding `KLWarmup` when `kl_warmup_epochs > 0`."""
        callbacks = list(callbacks or [])
        if self.kl_warmup_epochs and not any(isinstance(c, KLWarmup) for c in callbacks):
            callbacks.append(KLWarmup(self.kl_warmup_epochs))
        return super().fit(*args, callbacks=callbacks, **kwargs)

    def elbo_terms(self, x, num_samples=1, seed=None):
        """The ELBO's two parts per example: `(E_q[log p(x|z)], KL(q(z|x) || p(z)))`, each `[batch]`."""
        x = tf.cast(x, self.compute_dtype)
        posterior, terms = self._log_weight_terms(x, num_samples, stateless_seed(seed))
        return objectives.elbo_terms(terms, posterior, self.prior, self.analytic_kl)

    def elbo(self, x, num_samples=1, seed=None):
        """The ELBO per example, `[batch]` nats, with `num_samples` samples of z."""
        expected_log_likelihood, kl = self.elbo_terms(x, num_samples, seed)
        return expected_log_likelihood - kl

    @tf.function(reduce_retracing=True)
    def _chunk_log_sum_exp(self, x, num_samples, seed):
        _, terms = self._log_weight_terms(x, num_samples, seed)
        return tf.reduce_logsumexp(terms.log_weights, axis=0)  # [batch]

    def log_likelihood(
        self, x, num_samples=1000, batch_size=100, sample_batch_size=None, seed=None, verbose=0
    ):
        """The importance-sampled estimate of log p(x) per example, with q(z|x) as proposal.

        log p(x) ≈ logsumexp_k log w_k - log K with w_k = p(x|z_k) p(z_k) / q(z_k|x),
        z_k ~ q(z|x). It is a lower bound in expectation (the IWAE bound) that tightens
        to log p(x) as K grows. Examples go `batch_size` at a time and samples
        `sample_batch_size` at a time, so memory is bounded by
        `batch_size * sample_batch_size` decoded examples whatever K is.

        Args:
          x: `[N, *input_shape]` array.
          num_samples: K, importance samples per example.
          batch_size: examples per step.
          sample_batch_size: samples per step; defaults to min(K, 1000).
          seed: None or an int; the same int repeats the estimate.
          verbose: 1 shows a progress bar over examples.

        Returns:
          `[N]` NumPy array of log p(x) estimates in nats.
        """
        if num_samples <= 0 or batch_size <= 0:
            raise ConfigError(
                f"`num_samples` and `batch_size` must be positive; got {num_samples}, {batch_size}."
            )
        sample_batch_size = min(num_samples, sample_batch_size or 1000)
        base_seed = stateless_seed(seed if seed is not None else int(np.random.randint(2**31)))
        x = np.asarray(x, dtype=self.compute_dtype)
        progress = keras.utils.Progbar(len(x), unit_name="example") if verbose else None
        estimates = []
        for start in range(0, len(x), batch_size):
            x_batch = tf.constant(x[start : start + batch_size])
            batch_seed = fold_in(base_seed, start)
            chunks = []
            for done in range(0, num_samples, sample_batch_size):
                count = min(sample_batch_size, num_samples - done)
                chunk_seed = fold_in(batch_seed, done)
                chunks.append(self._chunk_log_sum_exp(x_batch, count, chunk_seed))
            estimates.append(objectives.combine_log_mean_exp(tf.stack(chunks), num_samples))
            if progress:
                progress.add(int(x_batch.shape[0]))
        return tf.concat(estimates, axis=0).numpy()

    def get_config(self):
        config = super().get_config()
        network = self.network_config
        config.update(
            input_shape=list(network.input_shape),
            latent_dim=self.latent_dim,
            posterior=self.posterior_layer.covariance,
            likelihood=keras.saving.serialize_keras_object(self.likelihood_layer),
            prior=keras.saving.serialize_keras_object(self.prior_layer),
            encoder=keras.saving.serialize_keras_object(self.encoder),
            decoder=keras.saving.serialize_keras_object(self.decoder),
            arch=network.arch,
            hidden_units=list(network.hidden_units),
            filters=list(network.filters),
            activation=network.activation,
            image_shape=None if network.image_shape is None else list(network.image_shape),
            num_samples=self.num_samples,
            objective=self.objective,
            analytic_kl=self.analytic_kl,
            beta=self.beta,
            kl_warmup_epochs=self.kl_warmup_epochs,
            seed=self.seed,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("likelihood", "prior", "encoder", "decoder"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)

    @property
    def image_shape(self):
        """`(height, width, channels)` of one example, or None when x is not an image."""
        return self.network_config.image_shape
