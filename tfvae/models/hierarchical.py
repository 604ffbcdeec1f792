"""A VAE with L stochastic layers, top-down generation and top-down inference (a ladder VAE)."""

import keras
import numpy as np
import tensorflow as tf

from tfvae import objectives
from tfvae.distributions import GaussianPosterior, get_likelihood, posterior_code, reparameterized_sample
from tfvae.errors import ConfigError
from tfvae.models.base import check_count
from tfvae.models.vae import VAE
from tfvae.networks import NetworkConfig, build_decoder, build_encoder, hidden_layer
from tfvae.posteriors import get_posterior
from tfvae.seeding import fold_in, stateless_seed

TOP_DOWN = ("shared", "separate")


@keras.saving.register_keras_serializable(package="tfvae")
class HierarchicalVAE(VAE):
    """A hierarchical VAE with latents z_1 (bottom) ... z_L (top).

    Generation runs top-down:

        p(x, z) = p(x | z_1, z_2) p(z_L) Π_{l<L} p(z_l | z_{l+1}),

    with p(z_L) any prior a `VAE` takes (standard normal, VampPrior) and each
    p(z_l | z_{l+1}) a diagonal Gaussian computed from z_{l+1}. Inference shares that
    path, as in the ladder VAE (Sønderby et al. 2016) and NVAE: a bottom-up network
    computes features d_1 = f(x), d_{l+1} = f_l(d_l); then, top-down,

        q(z | x) = q(z_L | d_L) Π_{l<L} q(z_l | d_l, t_l),  t_l = g_l(z_{l+1}),

    where t_l is the same top-down state that parameterises p(z_l | z_{l+1}) (or, with
    `top_down="separate"`, a state s_l = h_l(z_{l+1}) of q's own). Each
    layer's posterior is Gaussian ("diagonal", "full") or an IAF ("iaf"), chosen per
    layer (a VampPrior mixes q(z_L | u_k) over its pseudo-inputs, or an IAF's base
    Gaussians at the top: see `VampPrior`). The KL of
    each layer below the top is in closed form between the two Gaussians given the
    sample above it, by Monte Carlo otherwise; all of it goes through the same log
    weights as a `VAE`, so `elbo`, the IWAE objective, `log_likelihood`, `evaluate`
    and `fit` work unchanged. `z` (as `decode` takes it) is the concatenation
    [z_1, ..., z_L], `[..., sum(latent_dims)]`. `tfvae.export` writes the generator,
    whose input is the noise of each layer (see `decoder_outputs`).

    Args:
      input_shape: shape of one example x.
      latent_dims: sizes of z_1 ... z_L, bottom first (L >= 2).
      posterior: every layer's q, one name ("diagonal", "full", "iaf"; see
        `tfvae.VAE`) or one per layer, bottom first (e.g. `("iaf", "diagonal")`, or
        "iaf,diagonal" as the CLI writes it: flows below a Gaussian top, which a
        VampPrior needs).
      flow_steps: IAF steps of each "iaf" layer.
      hidden_units: the x-side networks' widths (`arch`: "mlp", "gated" or "conv");
        the last one is also the width of d_l and t_l.
      conditional_layers: hidden layers (of that width) inside each p(z_l | z_{l+1})
        after t_l, and inside each q(z_l | z_{l+1}, x) on [d_l, t_l], before their
        Gaussian's parameters. 0 (the default): each is one linear map of its states;
        1 gives p(z_1 | z_2) two hidden layers and q(z_1 | x, z_2) a joint one, as in
        Tomczak & Welling's (2018) two-layer HVAE.
      top_down: "shared" (the default: the ladder, q(z_l | z_{l+1}, x) reads the
        state t_l that p(z_l | z_{l+1}) reads, so inference and generation share that
        network) or "separate" (q reads s_l = h_l(z_{l+1}) from a network of its own, as
        in Tomczak & Welling's HVAE, whose q(z_1 | x, z_2) and p(z_1 | z_2) have separate
        networks): one more hidden layer per level, and p's weights no longer move q.
      dropout: the rate of the dropout in training after every hidden layer ("mlp" and
        "gated"), the bottom-up, top-down and conditional ones included; 0 for none.
      decoder_dropout: the rate after the hidden layers of p(x | z_1, t_1)'s network where
        it differs from `dropout` (None: `dropout`).
      **kwargs: the rest of `tfvae.VAE`'s arguments (likelihood, prior, beta,
        kl_warmup_epochs, free_bits (per layer), num_samples, objective, seed, ...).

    Example:
      >>> hvae = tfvae.HierarchicalVAE((784,), latent_dims=(40, 40), arch="gated",
      ...                              hidden_units=(300, 300), activation="linear")
      >>> hvae.compile()
      >>> hvae.fit(x_train, epochs=2, batch_size=100)
      >>> [kl.shape for kl in hvae.layer_kls(x_test[:5])]  # per layer, bottom first
      [TensorShape([5]), TensorShape([5])]
    """

    def __init__(
        self,
        input_shape,
        latent_dims=(40, 40),
        *,
        posterior="diagonal",
        flow_steps=2,
        conditional_layers=0,
        top_down="shared",
        arch="mlp",
        hidden_units=(512, 256),
        filters=(32, 64),
        activation="relu",
        image_shape=None,
        residual_blocks=0,
        dropout=0.0,
        decoder_dropout=None,
        encoder=None,
        decoder=None,
        num_classes=None,
        **kwargs,
    ):
        latent_dims = tuple(int(d) for d in latent_dims)
        if len(latent_dims) < 2 or min(latent_dims) <= 0:
            raise ConfigError(
                f"`latent_dims` must list two or more positive sizes, bottom first; got {latent_dims!r} "
                "(use tfvae.VAE for one stochastic layer)."
            )
        if isinstance(posterior, str):  # "iaf" for every layer, or the CLI's "iaf,diagonal"
            names = tuple(posterior.split(","))
            layer_posteriors = names * len(latent_dims) if len(names) == 1 else names
        else:
            layer_posteriors = tuple(posterior)
        if len(layer_posteriors) != len(latent_dims):
            example = ("iaf",) * (len(latent_dims) - 1) + ("diagonal",)
            raise ConfigError(
                f"`posterior` names one family for every layer or one per layer, bottom first; got "
                f"{posterior!r} for {len(latent_dims)} layers (e.g. {example!r})."
            )
        if num_classes is not None:
            raise ConfigError("A HierarchicalVAE is not conditional; use tfvae.ConditionalVAE for labels.")
        if not isinstance(conditional_layers, int) or isinstance(conditional_layers, bool) or conditional_layers < 0:
            raise ConfigError(f"`conditional_layers` must be an int >= 0; got {conditional_layers!r}.")
        self.conditional_layers = conditional_layers
        if top_down not in TOP_DOWN:
            raise ConfigError(f"`top_down` must be one of {TOP_DOWN}; got {top_down!r}.")
        self.top_down_inference = top_down
        width = tuple(hidden_units)[-1]
        networks = dict(
            arch=arch,
            hidden_units=hidden_units,
            filters=filters,
            activation=activation,
            image_shape=image_shape,
            residual_blocks=residual_blocks,
            dropout=dropout,
            decoder_dropout=decoder_dropout,
        )
        # The decoder reads [z_1, t_1]: z_1 and the top-down state from the layers above.
        # Built here (and handed on) because the decoder's size depends on it.
        likelihood = get_likelihood(
            kwargs.pop("likelihood", "bernoulli"), tuple(input_shape), kwargs.pop("likelihood_scale", None)
        )
        config = NetworkConfig(
            input_shape,
            latent_dims[0] + width,
            params_per_dimension=likelihood.params_per_dimension,
            input_normalization=likelihood.input_normalization,
            **networks,
        )
        # Read by `build`, which VAE.__init__ calls (a built layer accepts no new sub-layers).
        self.latent_dims = latent_dims
        self.layer_posteriors = layer_posteriors
        self._layer_config = NetworkConfig(
            (width,),
            1,
            arch="gated" if arch == "gated" else "mlp",
            hidden_units=(width,),
            activation=activation,
            dropout=dropout,
        )
        super().__init__(
            input_shape,
            latent_dims[-1],
            posterior=layer_posteriors[-1],
            flow_steps=flow_steps,
            encoder=encoder or build_encoder(config, width, name="bottom_up"),
            decoder=decoder or build_decoder(config),
            likelihood=likelihood,
            **networks,
            **kwargs,
        )

    def _check_network_shapes(self, encoder_output_size, hint):
        # The bottom-up network's output is d_1 (any width), not q(z|x)'s parameters.
        self._check_decoder_shape()

    def build(self, input_shape=None):
        self.likelihood_layer.build(self.decoder.output_shape)
        self.latent_dim = sum(self.latent_dims)  # z as decode takes it: [z_1, ..., z_L]
        dims, width = self.latent_dims, self._layer_config.hidden_units[0]
        lower = range(len(dims) - 1)
        self.bottom_up = [hidden_layer(self._layer_config, width) for _ in lower]  # d_l -> d_{l+1}
        self.top_down = [hidden_layer(self._layer_config, width) for _ in lower]  # z_{l+1} -> t_l
        separate = self.top_down_inference == "separate"
        self.posterior_top_down = [hidden_layer(self._layer_config, width) for _ in lower if separate]  # -> s_l
        # conditional_layers hidden layers per level, flat: level l's are [l * k, (l + 1) * k).
        self.prior_hidden = [
            hidden_layer(self._layer_config, width) for _ in lower for _ in range(self.conditional_layers)
        ]
        self.posterior_hidden = [
            hidden_layer(self._layer_config, width) for _ in lower for _ in range(self.conditional_layers)
        ]
        self.prior_params = [keras.layers.Dense(2 * dims[level]) for level in lower]
        self.conditional_priors = [GaussianPosterior(dims[level]) for level in lower]
        self.lower_posteriors = [
            get_posterior(self.layer_posteriors[level], dims[level], self.flow_steps) for level in lower
        ]
        self.posterior_params = [
            keras.layers.Dense(layer.num_params) for layer in (*self.lower_posteriors, self.posterior_layer)
        ]
        # One pass creates every weight, so that .keras files and checkpoints load.
        self._sampled_terms(tf.zeros([1, *self.network_config.input_shape]), None, 1, tf.constant([0, 0]))
        self.built = True

    @property
    def latent_sizes(self):
        return self.latent_dims

    @property
    def num_layers(self):
        """L, the number of stochastic layers."""
        return len(self.latent_dims)

    def _encoding(self, x, labels, training):
        """The bottom-up features [d_1, ..., d_L], each `[batch, width]`."""
        features = [self.encoder(self._network_inputs(x, labels), training=training)]
        for layer in self.bottom_up:
            features.append(layer(features[-1], training=training))
        return features

    def _top_params(self, x, labels, training):
        return self.posterior_params[-1](self._encoding(x, labels, training)[-1])

    def _posterior(self, x, labels=None, training=False):
        """q(z_L | x), the top layer's posterior."""
        return self.posterior_layer(self._top_params(x, labels, training))

    def _posterior_base(self, x):
        """q(z_L | x)'s Gaussian, before an IAF's flow: the components a VampPrior mixes."""
        return self.posterior_layer.base(self._top_params(x, None, False))

    def _layer_below(self, level, z_above, features, training):
        """`(p(z_l | z_{l+1}), q(z_l | z_{l+1}, x))` for the samples z_above `[..., batch, d]`."""
        state = self.top_down[level](z_above, training=training)  # t_l, [..., batch, width]
        prior_state = self._hidden(self.prior_hidden, level, state, training)
        prior = self.conditional_priors[level](self.prior_params[level](prior_state))
        if features is None:
            return prior, None
        # The encoder's policy is in its config, this layer's is the global one at build
        # time: a model trained in mixed precision and loaded in float32 has both.
        if self.posterior_top_down:  # s_l, q's own state of z_{l+1}
            state = self.posterior_top_down[level](z_above, training=training)
        bottom_up = tf.broadcast_to(tf.cast(features[level], state.dtype), tf.shape(state))
        joint = self._hidden(self.posterior_hidden, level, tf.concat([bottom_up, state], axis=-1), training)
        posterior = self.lower_posteriors[level](self.posterior_params[level](joint))
        return prior, posterior

    def _hidden(self, layers, level, h, training):
        """h through level `level`'s `conditional_layers` hidden layers of `layers`."""
        k = self.conditional_layers
        for layer in layers[level * k : (level + 1) * k]:
            h = layer(h, training=training)
        return h

    def _descend(self, features, draw, training):
        """q's layers top-down: `[(q_l, p_l, z_l)]`, bottom first, with z_L = draw(q(z_L | x), L - 1)
        and each z_l = draw(q(z_l | z_{l+1}, x), l) below it; p_L is None (the prior is the model's).
        Training, `latent_code` and the exported encoder differ only in `draw`."""
        top = self.posterior_layer(self.posterior_params[-1](features[-1]))
        z = draw(top, self.num_layers - 1)
        layers = [(top, None, z)]
        for level in reversed(range(self.num_layers - 1)):
            prior, posterior = self._layer_below(level, z, features, training)
            z = draw(posterior, level)
            layers.insert(0, (posterior, prior, z))
        return layers

    def _sampled_terms(self, x, labels, num_samples, seed, training=False, observed=None):
        if observed is None:
            observed = self._observe(x, labels, training)

        def draw(posterior, level):
            # One z_l per sample of the layer above (no sample axis below the top, which
            # would hide z_l from the flow's cache and make log q invert an IAF step by step).
            sample_count = num_samples if level == self.num_layers - 1 else None
            return reparameterized_sample(posterior, sample_count, _layer_seed(seed, level))

        layers = self._descend(observed.encoding, draw, training)
        top, _, z = layers[-1]  # z: [num_samples, batch, d_L], and so each z_l below
        prior = self.prior
        log_posterior, log_prior = top.log_prob(z), prior.log_prob(z)  # [num_samples, batch]
        kls = [
            objectives.kl_divergence(
                top, prior, objectives.LogWeightTerms(None, log_prior, log_posterior), self.analytic_kl
            )
        ]
        for layer_posterior, layer_prior, z in layers[-2::-1]:
            log_q, log_p = layer_posterior.log_prob(z), layer_prior.log_prob(z)
            kls.insert(0, objectives.conditional_kl(layer_posterior, layer_prior, log_q, log_p, self.analytic_kl))
            log_posterior, log_prior = log_posterior + log_q, log_prior + log_p
        likelihood = self._decode(tf.concat([z for _, _, z in layers], axis=-1), labels, training, observed.context)
        terms = objectives.LogWeightTerms(likelihood.log_prob(x), log_prior, log_posterior)
        return terms, kls

    def _decoder_features(self, z, training):
        z_1, z_2 = z[:, : self.latent_dims[0]], z[:, self.latent_dims[0] : sum(self.latent_dims[:2])]
        # t_1 comes out of a network, in half precision under a mixed policy; z_1 is a
        # draw of a float32 distribution.
        return tf.concat([z_1, tf.cast(self.top_down[0](z_2, training=training), z_1.dtype)], axis=-1)

    def _code(self, x, labels, training):
        """[E_q z_1, ..., E_q z_L] top-down: each layer's code given the codes above it."""
        layers = self._descend(self._encoding(x, labels, training), lambda q, _: posterior_code(q), training)
        return tf.concat([z for _, _, z in layers], axis=-1)

    def encode(self, x, *, labels=None, training=False):
        """q(z_L|x), the top layer's posterior; the layers below depend on z_L's sample
        (`latent_code` gives every layer's code)."""
        return super().encode(x, labels=labels, training=training)

    def sample(self, n, *, seed=None, labels=None, draw=False):
        """n examples generated top-down: z_L from the prior, z_l ~ p(z_l | z_{l+1}), then
        the likelihood's mean given z_1, z_2 (with `draw`, x drawn from it). `[n, *input_shape]`."""
        check_count(n)
        self.check_labels(labels, n)
        seed = stateless_seed(seed)
        z = self.prior.sample(n, seed=_layer_seed(seed, self.num_layers - 1))
        samples = [z]
        for level in reversed(range(self.num_layers - 1)):
            z = self._layer_below(level, z, None, False)[0].sample(seed=_layer_seed(seed, level))
            samples.insert(0, z)
        return self._generated(self._decode(tf.concat(samples, axis=-1), None), seed, draw)

    @property
    def posterior_families(self):
        return self.layer_posteriors

    @property
    def posterior_noise_dim(self):
        # q(z_l | z_{l+1}, x) below the top depends on a sample of the layer above: the
        # exported encoder samples every layer from the noise, whatever each layer's family.
        return sum(self.latent_dims)

    def encoder_outputs(self, x, labels=None):
        """q(z_L|x)'s parameters (a VampPrior's components at its pseudo-inputs are these)."""
        return self.posterior_layer.parameters_of(self._posterior(x, labels))

    def posterior_sample_outputs(self, x, noise, labels=None):
        """The exported encoder: `noise` = [ε_1, ..., ε_L] `[batch, sum(latent_dims)]`, draws
        of N(0, I), bottom first as z is; top-down, z_L is q(z_L | x)'s sample for ε_L and each
        z_l q(z_l | z_{l+1}, x)'s for ε_l. Returns `{"z": [z_1, ..., z_L], "log_posterior":
        log q(z | x)}`, the sum of the layers' log densities."""
        bounds = np.cumsum((0, *self.latent_dims))
        posterior_layers = (*self.lower_posteriors, self.posterior_layer)
        log_posteriors = []  # [batch] per layer

        def draw(posterior, level):
            z, log_q = posterior_layers[level].sample_of_noise(posterior, noise[:, bounds[level] : bounds[level + 1]])
            log_posteriors.append(log_q)
            return z

        layers = self._descend(self._encoding(x, labels, False), draw, False)
        return {"z": tf.concat([z for _, _, z in layers], axis=-1), "log_posterior": tf.add_n(log_posteriors)}

    def decoder_outputs(self, z, labels=None, noise=None):
        """The exported generator: z = [ε_1, ..., ε_{L-1}, z_L], `[batch, sum(latent_dims)]`,
        with z_L a draw from the prior and each ε_l from N(0, I); the graph computes
        z_l = loc_l(z_{l+1}) + scale_l(z_{l+1}) · ε_l top-down and returns
        `{"mean": E[x | z_1, z_2], **likelihood parameters}` (a PixelCNN likelihood's image
        drawn from `noise`, `{"x": x}`, as `LatentModel.decoder_outputs`). A server draws the input
        exactly as it draws a one-layer VAE's z (N(0, I), with the prior's own draw in the
        last `latent_dims[-1]` columns)."""
        return super().decoder_outputs(self._latents_of_noise(z), labels, noise)

    def decoder_draws_given(self, z, noise, x, labels=None):
        return super().decoder_draws_given(self._latents_of_noise(z), noise, x, labels)

    def _latents_of_noise(self, z):
        """[z_1, ..., z_L] from the exported generator's input [ε_1, ..., ε_{L-1}, z_L]."""
        bounds = np.cumsum((0, *self.latent_dims))
        latent = z[:, bounds[-2] :]  # z_L
        latents = [latent]
        for level in reversed(range(self.num_layers - 1)):
            # The Gaussian's own parameters: stddev() broadcasts with an op ONNX lacks.
            prior = self.conditional_priors[level].parameters_of(self._layer_below(level, latent, None, False)[0])
            latent = prior["loc"] + prior["scale"] * z[:, bounds[level] : bounds[level + 1]]
            latents.insert(0, latent)
        return tf.concat(latents, axis=-1)

    def get_config(self):
        config = super().get_config()
        del config["latent_dim"]
        config.update(
            latent_dims=list(self.latent_dims),
            conditional_layers=self.conditional_layers,
            top_down=self.top_down_inference,
            posterior=list(self.layer_posteriors),
        )
        return config


def _layer_seed(seed, layer):
    """A stateless seed per stochastic layer."""
    return fold_in(seed, layer)
