"""The variational autoencoder p(x, z) = p(x|z) p(z) with a Gaussian q(z|x)."""

from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from tfvae import objectives
from tfvae.callbacks import KLWarmup
from tfvae.checkpointing import EstimateCheckpoint
from tfvae.distributions import posterior_code, reparameterized_sample
from tfvae.errors import ConfigError
from tfvae.memory import IMPORTANCE_SAMPLING_BUDGET_MIB
from tfvae.models.base import LatentModel, check_count, example_count
from tfvae.posteriors import get_posterior
from tfvae.priors import get_prior
from tfvae.seeding import ExampleNoise, fold_in, fresh_seed, stateless_seed

OBJECTIVES = ("elbo", "iwae")
# `fold_in` data of the seed that draws x ~ p(x|z) in `sample`, apart from z's streams
# (a hierarchy folds in its layer indices).
DRAW_STREAM = 2**30
# Bytes per value held per (sample, example) pair in an importance-sampling step: the
# decoder's likelihood parameters and the likelihood's log_prob temporaries, in float32,
# times 4 for the decoder's activations and the gradients-free copies TensorFlow keeps;
# a mixture prior's [samples, batch, components] log densities are float64.
_BYTES_PER_LIKELIHOOD_VALUE = 16
_BYTES_PER_PRIOR_COMPONENT = 8


class Observed(NamedTuple):
    """What a model computes of the examples x alone, whatever the samples of z: the
    importance-sampled log p(x) computes it once per batch of examples, not once per
    step of samples (a PixelCNN's masked network, or a convolutional encoder).

    Attributes:
      encoding: the encoder's output, q(z|x)'s parameters (a hierarchy's bottom-up
        features, one `[batch, width]` tensor per stochastic layer).
      context: the likelihood's features of x (`Likelihood.context_of`), or None.
    """

    encoding: object
    context: object


@keras.saving.register_keras_serializable(package="tfvae")
class VAE(LatentModel):
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
      posterior: "diagonal" or "full" covariance of a Gaussian q(z|x), or "iaf": that
        diagonal Gaussian through `flow_steps` inverse autoregressive flow steps
        (Kingma et al. 2016; `tfvae.IAFPosterior`), whose KL is estimated by Monte Carlo.
      flow_steps: IAF steps (posterior="iaf" only).
      likelihood: "bernoulli", "gaussian" or a `tfvae.Likelihood` layer.
      likelihood_scale: the Gaussian likelihood's fixed standard deviation; None
        learns one per dimension.
      prior: None (standard normal) or a `tfvae.Prior` layer.
      encoder: a Keras model from x to the posterior layer's `num_params` outputs
        (`GaussianPosterior.params_size(latent_dim, posterior)` for a Gaussian);
        built from `arch`, `hidden_units`, ... when None.
      decoder: a Keras model from z `[batch, latent_dim]` to `[batch, *input_shape]`
        likelihood parameters; built when None.
      arch, hidden_units, filters, activation, image_shape, residual_blocks, dropout,
        decoder_dropout: see `NetworkConfig`.
      num_samples: Monte Carlo samples of z per input in training (K).
      objective: "elbo", or "iwae" for the K-sample importance-weighted bound of
        Burda et al. (2016) as the training loss (with beta and warm-up applied as
        log w = log p(x|z) + beta * (log p(z) - log q(z|x))).
      analytic_kl: use the closed-form KL where one exists.
      beta: weight of the KL term (beta > 1 is the beta-VAE of Higgins et al. 2017).
      kl_warmup_epochs: if > 0, the KL weight rises linearly from beta/N to beta
        over N epochs.
      free_bits: λ >= 0 nats; the training objective takes max(λ, KL) for the batch's
        mean KL (the "free bits" of Kingma et al. 2016), so the optimiser gains nothing
        by pushing the KL below λ and latents are not switched off early. 0 (the
        default) leaves the ELBO as it is; `loss` is always the true negative ELBO.
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
        flow_steps=2,
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
        residual_blocks=0,
        dropout=0.0,
        decoder_dropout=None,
        num_samples=1,
        objective="elbo",
        analytic_kl=True,
        beta=1.0,
        kl_warmup_epochs=0,
        free_bits=0.0,
        seed=None,
        **kwargs,
    ):
        if not isinstance(num_samples, int) or num_samples <= 0:
            raise ConfigError(f"`num_samples` must be a positive int; got {num_samples!r}.")
        if objective not in OBJECTIVES:
            raise ConfigError(f"`objective` must be one of {OBJECTIVES}; got {objective!r}.")
        if beta < 0:
            raise ConfigError(f"`beta` must be >= 0; got {beta}.")
        if kl_warmup_epochs < 0:
            raise ConfigError(f"`kl_warmup_epochs` must be >= 0; got {kl_warmup_epochs}.")
        if not free_bits >= 0 or (free_bits and objective != "elbo"):
            raise ConfigError(
                f"`free_bits` must be >= 0, and applies to the ELBO objective only; got {free_bits!r} "
                f"with objective {objective!r}."
            )
        posterior_layer = get_posterior(posterior, latent_dim, flow_steps)
        super().__init__(
            input_shape,
            latent_dim,
            encoder_output_size=posterior_layer.num_params,
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
            metric_names=("loss", "reconstruction", "kl"),
            encoder_output_hint=(
                f"a {posterior} posterior over {latent_dim} latents reads {posterior_layer.num_params} parameters"
            ),
            **kwargs,
        )
        self.num_samples = num_samples
        self.objective = objective
        self.analytic_kl = bool(analytic_kl)
        self.beta = float(beta)
        self.kl_warmup_epochs = int(kl_warmup_epochs)
        self.free_bits = float(free_bits)
        self.seed = seed
        self.posterior_layer = posterior_layer
        self.flow_steps = int(flow_steps)
        self.prior_layer = get_prior(prior, latent_dim)
        self.prior_layer.attach(self, self.network_config.input_shape)

        self.kl_weight = keras.Variable(self.beta, trainable=False, name="kl_weight")
        # The training-time sampler of z draws with the stateless seed (sampler_seed,
        # sampler_step) and counts steps. Weights (not keras.random.SeedGenerator, whose
        # state is not) so checkpoints and .keras files carry them and resumed runs draw
        # the same samples. Two scalars, not one [2] vector: with a vector weight as the
        # seed, XLA-compiled train steps took 26-35% longer (TF 2.21 on CPU; README,
        # "Training throughput").
        self.sampler_seed = self.add_weight(
            shape=(),
            dtype="int64",
            trainable=False,
            name="sampler_seed",
            initializer=keras.initializers.Constant(seed if seed is not None else fresh_seed()),
            aggregation="only_first_replica",
        )
        self.sampler_step = self.add_weight(
            shape=(),
            dtype="int64",
            trainable=False,
            name="sampler_step",
            initializer="zeros",
            aggregation="only_first_replica",
        )
        self.build((None, *self.network_config.input_shape))

    def load_own_variables(self, store):
        # .keras files and checkpoints written before the sampler's seed and step became
        # two weights hold them as one [2] weight after kl_weight.
        own = self._trainable_variables + self._non_trainable_variables
        if len(store.keys()) == len(own) - 1 and tuple(store["1"].shape) == (2,):
            seed, step = np.asarray(store["1"])
            store = {"0": store["0"], "1": seed, "2": step}
        super().load_own_variables(store)

    def build(self, input_shape=None):
        super().build(input_shape)
        self.posterior_layer.build(self.encoder.output_shape)

    @property
    def prior(self):
        """p(z): a distribution with event shape `[latent_dim]`."""
        return self.prior_layer.distribution()

    def _encoding(self, x, labels, training):
        """The encoder's output for x: q(z|x)'s parameters, `[batch, posterior_layer.num_params]`."""
        return self.encoder(self._network_inputs(x, labels), training=training)

    def _observe(self, x, labels, training=False):
        """`Observed`: what the log weights of any samples of z need of x alone."""
        return Observed(self._encoding(x, labels, training), self.likelihood_layer.context_of(x, training))

    def _posterior(self, x, labels=None, training=False):
        return self.posterior_layer(self._encoding(x, labels, training))

    def _posterior_base(self, x):
        """q(z|x)'s Gaussian, before an IAF's flow: the components a VampPrior mixes."""
        return self.posterior_layer.base(self._encoding(x, None, False))

    def _code(self, x, labels, training):
        return posterior_code(self._posterior(x, labels, training))

    def encode(self, x, *, labels=None, training=False):
        """q(z|x) (q(z|x, y) given `labels`): batch shape `[batch]`, event shape `[latent_dim]`."""
        x = self.check_examples(x, "encode's x", values=False)
        return self._posterior(x, self.check_labels(labels, example_count(x)), training)

    def decode(self, z, *, labels=None, training=False):
        """p(x|z) (p(x|y, z) given `labels`) for z `[..., latent_dim]`: batch shape
        `z.shape[:-1]`, event shape x's."""
        shape = tuple(z.shape if isinstance(z, (tf.Tensor, np.ndarray)) else np.shape(z))
        if not shape or shape[-1] not in (None, self.latent_dim):
            raise ConfigError(f"decode takes z of shape [..., {self.latent_dim}] (latent_dim); got shape {shape}.")
        return self._decode(z, self.check_labels(labels), training)

    def sample(self, n, *, seed=None, labels=None, draw=False):
        """n examples generated by drawing z from the prior and decoding it.

        Args:
          n: number of examples.
          seed: None, an int or a `[2]` stateless seed; the same int gives the same
            samples.
          labels: the classes y of a conditional model.
          draw: also draw x ~ p(x|z) (binary images from a Bernoulli, an image pixel by
            pixel from a `PixelCNNLikelihood`) instead of returning its mean.

        Returns:
          `[n, *input_shape]`: the likelihood's mean (pixel probabilities for a
          Bernoulli likelihood, the greedy mean of a PixelCNN's), or its draws.
        """
        check_count(n)
        labels = self.check_labels(labels, n)
        seed = stateless_seed(seed)
        z = self.prior.sample(n, seed=seed)
        return self._generated(self._decode(z, labels), seed, draw)

    @staticmethod
    def _generated(likelihood, seed, draw):
        """What `sample` returns of p(x|z): a draw (from its own stream of `seed`) or the mean."""
        return likelihood.sample(seed=fold_in(seed, DRAW_STREAM)) if draw else likelihood.mean()

    @property
    def has_prior(self):
        return True

    @property
    def posterior_family(self):
        return self.posterior_layer.covariance

    @property
    def loss_name(self):
        return "negative IWAE bound" if self.objective == "iwae" else "negative ELBO"

    @property
    def encoder_layers(self):
        return (self.encoder, self.posterior_layer)

    @property
    def posterior_noise_dim(self):
        """None when the exported encoder gives q(z|x)'s Gaussian parameters (`encoder_outputs`);
        otherwise the width of the N(0, I) noise it takes beside x to give a sample of q(z|x)
        and its log density (`posterior_sample_outputs`): an IAF's q is no Gaussian whose
        parameters a client could sample from."""
        return self.latent_dim if self.posterior_family == "iaf" else None

    def encoder_outputs(self, x, labels=None):
        """The exported encoder's outputs: q(z|x)'s `loc` and `scale` (or `scale_tril`)."""
        return self.posterior_layer.parameters_of(self._posterior(x, labels))

    def posterior_sample_outputs(self, x, noise, labels=None):
        """The exported encoder's outputs when `posterior_noise_dim` is set: `{"z": z,
        "log_posterior": log q(z|x)}`, z the sample of q(z|x) that `noise` `[batch,
        posterior_noise_dim]` (draws of N(0, I)) maps to. A client draws the noise to sample q."""
        z, log_posterior = self.posterior_layer.sample_of_noise(self._posterior(x, labels), noise)
        return {"z": z, "log_posterior": log_posterior}

    def _sampled_terms(self, x, labels, num_samples, seed, training=False, observed=None):
        """`(LogWeightTerms, kls)` from `num_samples` draws of z ~ q(z|x): the terms are
        `[num_samples, batch]`, `kls` one `[batch]` KL per stochastic layer (one here).
        `observed` is x's `Observed` where the caller kept it, else computed here."""
        if observed is None:
            observed = self._observe(x, labels, training)
        posterior = self.posterior_layer(observed.encoding)
        z = reparameterized_sample(posterior, num_samples, seed)  # [num_samples, batch, latent_dim]
        likelihood = self._decode(z, labels, training, observed.context)
        prior = self.prior  # once: a VampPrior encodes its pseudo-inputs to build it
        terms = objectives.log_weight_terms(x, z, posterior, likelihood, prior)
        return terms, [objectives.kl_divergence(posterior, prior, terms, self.analytic_kl)]

    def _objective_and_metrics(self, x, labels, training):
        if training:
            seed = tf.stack([tf.cast(self.sampler_seed, tf.int32), tf.cast(self.sampler_step, tf.int32)])
            self.sampler_step.assign_add(1)
        else:
            # Evaluation (and validation) draws from its own stream, the same for every
            # batch and every call: evaluating twice gives identical numbers, and an
            # evaluation between two fits leaves the training noise as it was. Training's
            # step counter is never negative, so the streams never meet.
            seed = tf.stack([tf.cast(self.sampler_seed, tf.int32), tf.constant(-1, tf.int32)])
        terms, kls = self._sampled_terms(x, labels, self.num_samples, seed, training)
        reconstruction = -tf.reduce_mean(objectives.expected_log_likelihood(terms))
        layer_kls = [tf.reduce_mean(kl) for kl in kls]
        kl = tf.add_n(layer_kls)
        if self.objective == "elbo":
            # Free bits floor each layer's KL separately (Kingma et al. 2016).
            floored = tf.add_n([tf.maximum(layer_kl, self.free_bits) for layer_kl in layer_kls])
            loss, weighted = reconstruction + kl, reconstruction + self.kl_weight * floored
        else:
            log_ratio = terms.log_prior - terms.log_posterior  # [num_samples, batch]
            loss = -tf.reduce_mean(objectives.iwae_bound(terms.log_likelihood + log_ratio))
            weighted = -tf.reduce_mean(objectives.iwae_bound(terms.log_likelihood + self.kl_weight * log_ratio))
        return weighted, {"loss": loss, "reconstruction": reconstruction, "kl": kl}

    def fit(self, *args, callbacks=None, **kwargs):
        """As `keras.Model.fit`, adding `KLWarmup` when `kl_warmup_epochs > 0`."""
        callbacks = list(callbacks or [])
        if self.kl_warmup_epochs and not any(isinstance(c, KLWarmup) for c in callbacks):
            callbacks.append(KLWarmup(self.kl_warmup_epochs))
        return super().fit(*args, callbacks=callbacks, **kwargs)

    def elbo_parts(self, x, *, num_samples=1, seed=None, labels=None):
        """`(E_q[log p(x|z)], [KL of each stochastic layer])` per example: a `[batch]` tensor
        and a list of `[batch]` tensors, bottom layer first, from `num_samples` draws of z
        keyed by the seed and each example's values (`tfvae.seeding.ExampleNoise`): an
        example gets the same figures in any batch."""
        check_count(num_samples, "`num_samples`")  # 0 samples averaged to a NaN ELBO
        x = self.check_examples(x)
        labels = self.check_labels(labels, example_count(x))
        x = tf.cast(x, self.compute_dtype)
        terms, kls = self._sampled_terms(x, labels, num_samples, ExampleNoise.of(seed, x, labels))
        return objectives.expected_log_likelihood(terms), kls

    def elbo_terms(self, x, *, num_samples=1, seed=None, labels=None):
        """The ELBO's two parts per example: `(E_q[log p(x|z)], KL(q(z|x) || p(z)))`, each `[batch]`."""
        expected_log_likelihood, kls = self.elbo_parts(x, num_samples=num_samples, seed=seed, labels=labels)
        return expected_log_likelihood, tf.add_n(kls)

    def layer_kls(self, x, *, num_samples=1, seed=None, labels=None):
        """KL(q || p) of each stochastic layer per example: a list (one `[batch]` tensor per
        layer, bottom first) that sums to the KL of `elbo_terms` with the same seed."""
        return self.elbo_parts(x, num_samples=num_samples, seed=seed, labels=labels)[1]

    def elbo(self, x, *, num_samples=1, seed=None, labels=None):
        """The ELBO per example, `[batch]` nats, with `num_samples` samples of z."""
        expected_log_likelihood, kl = self.elbo_terms(x, num_samples=num_samples, seed=seed, labels=labels)
        return expected_log_likelihood - kl

    @tf.function(reduce_retracing=True)
    def _observed(self, x, labels):
        return self._observe(x, labels)

    @tf.function(reduce_retracing=True)
    def _chunk_log_sum_exp(self, x, labels, num_samples, seed, observed):
        terms, _ = self._sampled_terms(x, labels, num_samples, seed, observed=observed)
        return tf.reduce_logsumexp(terms.log_weights, axis=0)  # [batch]

    def log_likelihood(
        self,
        x,
        *,
        num_samples=1000,
        batch_size=100,
        sample_batch_size=None,
        seed=None,
        verbose=0,
        labels=None,
        memory_budget_mib=IMPORTANCE_SAMPLING_BUDGET_MIB,
        checkpoint=None,
    ):
        """The importance-sampled estimate of log p(x) per example, with q(z|x) as proposal.

        log p(x) ≈ logsumexp_k log w_k - log K with w_k = p(x|z_k) p(z_k) / q(z_k|x),
        z_k ~ q(z|x). It is a lower bound in expectation (the IWAE bound) that tightens
        to log p(x) as K grows. Examples go at most `batch_size` at a time and samples
        `sample_batch_size` at a time, so memory is bounded by
        `batch_size * sample_batch_size` decoded examples whatever K is.

        Args:
          x: `[N, *input_shape]` array.
          num_samples: K, importance samples per example.
          batch_size: at most this many examples per step.
          sample_batch_size: samples per step; by default as many (up to K and 1000)
            as keep one example's intermediates within `memory_budget_mib`: the
            likelihood's values per sample (a mixture of logistics on colour images
            holds 15 per dimension) and a mixture prior's value per component.
          memory_budget_mib: what one step's intermediates may hold, roughly: a step
            takes as many examples (up to `batch_size`) as fit beside its samples.
            The default, 256, is what malloc keeps between steps
            (`tfvae.memory.IMPORTANCE_SAMPLING_BUDGET_MIB`); larger steps run slower.
          seed: None or an int; the same int repeats each example's estimate, whatever
            the batch it is in, its place there and the batch sizes: the draws of z are
            keyed by the seed and the example's values (`tfvae.seeding.ExampleNoise`).
          verbose: 1 shows a progress bar over examples.
          labels: the class of each example, for a conditional model (log p(x|y)).
          checkpoint: a `.npz` path that keeps each finished batch's estimates
            (`tfvae.checkpointing.EstimateCheckpoint`): a call killed part-way and
            repeated with the same path, model, examples, K and int seed continues
            where it stopped and returns what the uninterrupted call returns. Other
            batch sizes or another memory budget (a pass killed for memory, run again
            in less) keep the finished examples too: their draws do not depend on the
            steps, only the order in which chunks of samples are summed does (to 1e-6).

        Returns:
          `[N]` NumPy array of log p(x) estimates in nats.
        """
        if num_samples <= 0 or batch_size <= 0:
            raise ConfigError(f"`num_samples` and `batch_size` must be positive; got {num_samples}, {batch_size}.")
        x = self.check_examples(x, "log_likelihood's x")
        labels = self.check_labels(labels, example_count(x))
        if not memory_budget_mib > 0:
            raise ConfigError(f"`memory_budget_mib` must be positive; got {memory_budget_mib!r}.")
        batch_size, sample_batch_size = self._step_sizes(num_samples, batch_size, sample_batch_size, memory_budget_mib)
        base_seed = stateless_seed(seed)
        x = np.asarray(x, dtype=self.compute_dtype)
        if checkpoint is not None:
            settings = dict(
                num_samples=num_samples,
                seed=[int(v) for v in base_seed.numpy()],
                draws="keyed by example",  # estimates of batch-keyed draws are not mixed in
            )
            arrays = (x,) if labels is None else (x, np.asarray(labels))
            checkpoint = EstimateCheckpoint(checkpoint, settings, self, arrays)
        progress = keras.utils.Progbar(len(x), unit_name="example") if verbose else None
        estimates = []
        for start in range(0, len(x), batch_size):
            kept = None if checkpoint is None else checkpoint.done(start, start + batch_size)
            if kept is None:
                kept = self._batch_log_likelihood(
                    x[start : start + batch_size],
                    None if labels is None else labels[start : start + batch_size],
                    num_samples,
                    sample_batch_size,
                    base_seed,
                ).numpy()
                if checkpoint is not None:
                    checkpoint.record(start, kept)
            estimates.append(kept)
            if progress:
                progress.add(len(kept))
        return np.concatenate(estimates) if estimates else np.zeros([0], np.float32)

    def _batch_log_likelihood(self, x_batch, labels_batch, num_samples, sample_batch_size, seed):
        """log p(x) of one batch of examples, from `num_samples` samples taken
        `sample_batch_size` at a time, each example's keyed by its values."""
        x_batch = tf.constant(x_batch)
        noise = ExampleNoise.of(seed, x_batch, labels_batch)
        observed = self._observed(x_batch, labels_batch)
        chunks = []
        for done in range(0, num_samples, sample_batch_size):
            count = min(sample_batch_size, num_samples - done)
            chunk_noise = noise._replace(first_sample=tf.constant(done, tf.int32))
            chunks.append(self._chunk_log_sum_exp(x_batch, labels_batch, count, chunk_noise, observed))
        return objectives.combine_log_mean_exp(tf.stack(chunks), num_samples)

    def _step_sizes(self, num_samples, batch_size, sample_batch_size, memory_budget_mib):
        """`(examples, samples)` per importance-sampling step within `memory_budget_mib`.

        Samples come first, as many as fit up to K (and 1000), then as many of
        `batch_size` examples as the budget leaves room for. What depends on x alone
        runs once per batch of examples (`Observed`), so the order changes no work; it
        keeps the batches small, and a `checkpoint` records each finished batch.
        """
        per_pair = max(
            _BYTES_PER_LIKELIHOOD_VALUE * self.likelihood_layer.values_per_sample,
            _BYTES_PER_PRIOR_COMPONENT * self.prior_layer.num_components,
        )
        budget = int(memory_budget_mib * 2**20)
        samples = min(num_samples, sample_batch_size or max(1, min(1000, budget // per_pair)))
        return max(1, min(batch_size, budget // (per_pair * samples))), samples

    def get_config(self):
        config = super().get_config()
        config.update(
            posterior=self.posterior_layer.covariance,
            flow_steps=self.flow_steps,
            prior=keras.saving.serialize_keras_object(self.prior_layer),
            num_samples=self.num_samples,
            objective=self.objective,
            analytic_kl=self.analytic_kl,
            beta=self.beta,
            kl_warmup_epochs=self.kl_warmup_epochs,
            free_bits=self.free_bits,
            seed=self.seed,
        )
        return config

    _NESTED = (*LatentModel._NESTED, "prior")
