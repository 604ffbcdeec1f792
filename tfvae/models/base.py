"""What every tfvae model shares: networks, a likelihood p(x|z), labels, the train step.

`LatentModel` holds the encoder and decoder built from a `NetworkConfig` (or given by
the user), the likelihood layer that turns decoder outputs into p(x|z), optional class
conditioning (the networks then also see one-hot labels), and the `fit` plumbing:
`train_step`/`test_step` call the subclass's `_objective_and_metrics` and report its
metrics. The VAE, the conditional VAE and the autoencoder differ only in what lies
between x and z.
"""

import keras
import numpy as np
import tensorflow as tf

from tfvae.callbacks import AveragedWeights, with_progress_bar
from tfvae.data import check_values, examples_array, stream_errors, stream_value_check
from tfvae.distributions import float32_layer, get_likelihood
from tfvae.errors import ConfigError, DataError
from tfvae.input_pipeline import shuffled_batches
from tfvae.networks import NetworkConfig, build_decoder, build_encoder
from tfvae.records import RecordStream
from tfvae.seeding import shuffle_seed

# With XLA, 32 train steps per call take the bench's model from 33k to 43k images/s on
# 2 CPU cores (8: 40k; 128: no further gain). README, "Training throughput".
STEPS_PER_EXECUTION = 32

_CONVOLUTIONS = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
)


def _in_memory_training_data(x, y, conditional):
    """`(examples, labels or None)` when fit's data are in-memory arrays, else None."""
    arrays = (np.ndarray, tf.Tensor)
    if conditional and y is None and isinstance(x, (tuple, list)) and len(x) == 2:
        x, y = x
    if not isinstance(x, arrays):
        return None
    if not conditional:
        return x, None
    return (x, y) if isinstance(y, arrays) else None


def in_multi_worker_mode(strategy):
    """Whether `strategy` spans several worker processes (Keras' own test, its trainer's
    `_collective_all_reduce_multi_worker`)."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._in_multi_worker_mode()


class LatentModel(keras.Model):
    """Base class of the models: x -> encoder -> z -> decoder -> p(x|z).

    Args:
      input_shape, latent_dim, arch, hidden_units, filters, activation, image_shape,
        residual_blocks, dropout, decoder_dropout: see `NetworkConfig`.
      encoder_output_size: the width of the encoder's output the subclass needs.
      likelihood, likelihood_scale: see `tfvae.VAE`.
      encoder, decoder: user networks, or None to build them.
      num_classes: None, or the number of classes y that both networks are
        conditioned on (as one-hot vectors).
      metric_names: the scalars `_objective_and_metrics` reports, in display order.
      encoder_output_hint: what a wrong-sized user encoder's error should suggest.
    """

    def __init__(
        self,
        input_shape,
        latent_dim,
        *,
        encoder_output_size,
        likelihood,
        likelihood_scale,
        encoder,
        decoder,
        arch,
        hidden_units,
        filters,
        activation,
        image_shape,
        residual_blocks=0,
        dropout=0.0,
        decoder_dropout=None,
        num_classes=None,
        metric_names=("loss",),
        encoder_output_hint=None,
        **kwargs,
    ):
        super().__init__(**float32_layer(kwargs))
        likelihood_layer = get_likelihood(likelihood, tuple(input_shape), likelihood_scale)
        self.network_config = NetworkConfig(
            input_shape=tuple(input_shape),
            latent_dim=latent_dim,
            arch=arch,
            hidden_units=tuple(hidden_units),
            filters=tuple(filters),
            activation=activation,
            image_shape=image_shape,
            residual_blocks=residual_blocks,
            dropout=dropout,
            decoder_dropout=decoder_dropout,
            params_per_dimension=likelihood_layer.params_per_dimension,
            input_normalization=likelihood_layer.input_normalization,
        )
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 2):
            raise ConfigError(f"`num_classes` must be an int >= 2; got {num_classes!r}.")
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.likelihood_layer = likelihood_layer
        self.encoder = encoder or build_encoder(self.network_config, encoder_output_size, num_classes=num_classes)
        self.decoder = decoder or build_decoder(self.network_config, num_classes=num_classes)
        self._check_network_shapes(encoder_output_size, encoder_output_hint)
        self.trackers = [keras.metrics.Mean(name=name) for name in metric_names]

    def _check_network_shapes(self, encoder_output_size, hint):
        encoder_out = tuple(self.encoder.output_shape[1:])
        if encoder_out != (encoder_output_size,):
            raise ConfigError(
                f"The encoder outputs shape {encoder_out}, but this model needs "
                f"({encoder_output_size},)" + (f": {hint}." if hint else ".")
            )
        self._check_decoder_shape()

    def _check_decoder_shape(self):
        decoder_out = tuple(self.decoder.output_shape[1:])
        if decoder_out != self.likelihood_layer.params_shape:
            raise ConfigError(
                f"The decoder outputs shape {decoder_out}, but the {self.likelihood_layer.family} likelihood "
                f"reads {self.likelihood_layer.params_shape} (the example shape"
                + (
                    ""
                    if self.likelihood_layer.params_per_dimension == 1
                    else f" and {self.likelihood_layer.params_per_dimension} parameters per dimension"
                )
                + ")."
            )

    def build(self, input_shape=None):
        # The encoder and decoder are functional models, built at construction.
        self.likelihood_layer.build(self.decoder.output_shape)
        self.built = True

    @property
    def metrics(self):
        return self.trackers

    @property
    def has_prior(self):
        """Whether the model has a prior p(z) to sample from (an autoencoder has none)."""
        return False

    @property
    def posterior_family(self):
        """ "diagonal", "full" or "iaf" for a model with q(z|x) (a hierarchy's top layer's);
        None for a point code."""
        return None

    @property
    def posterior_families(self):
        """q's family per stochastic layer, bottom first: `(posterior_family,)` for one
        layer, one per layer for a hierarchy, `()` for a point code."""
        return () if self.posterior_family is None else (self.posterior_family,)

    @property
    def posterior_noise_dim(self):
        """None when the exported encoder needs x alone (here: it gives the code); else
        the width of the N(0, I) noise it takes beside x to sample q(z|x) (see `VAE`)."""
        return None

    @property
    def loss_name(self):
        """What `loss` measures, for people: the training objective's name."""
        return "reconstruction loss -log p(x|z)"

    @property
    def encoder_layers(self):
        """The layers between x and what the exported encoder outputs."""
        return (self.encoder,)

    @property
    def latent_sizes(self):
        """The sizes of the stochastic layers, bottom first; z is their concatenation."""
        return (self.latent_dim,)

    @property
    def conditional(self):
        """Whether the networks see class labels."""
        return self.num_classes is not None

    @property
    def image_shape(self):
        """`(height, width, channels)` of one example, or None when x is not an image."""
        return self.network_config.image_shape

    # Labels and network inputs.

    def check_labels(self, labels, count=None):
        """Validates labels at the API's edge: None for unconditional models, else ints in range.

        Symbolic tensors (inside `tf.function`) pass unchecked; concrete ones are checked.
        """
        if not self.conditional:
            if labels is not None:
                raise ConfigError(
                    f"{type(self).__name__} is not conditional: leave out `labels` "
                    "(use tfvae.ConditionalVAE to condition on classes)."
                )
            return None
        if labels is None:
            raise ConfigError(
                f"{type(self).__name__} is conditional: pass `labels`, integer class ids in [0, {self.num_classes})."
            )
        if isinstance(labels, tf.Tensor) and not tf.executing_eagerly():
            return labels
        values = np.asarray(labels)
        if values.ndim != 1 or (count is not None and len(values) != count):
            raise ConfigError(
                f"`labels` must be a 1-D array of {count if count is not None else 'N'} class "
                f"ids; got shape {values.shape}{self._one_hot_hint(values.shape)}."
            )
        if values.size and (values.dtype.kind not in "iu" or values.min() < 0 or values.max() >= self.num_classes):
            raise ConfigError(
                f"`labels` must be integer class ids in [0, {self.num_classes}); got dtype "
                f"{values.dtype}, range [{values.min()}, {values.max()}]."
            )
        return tf.constant(values, tf.int32)

    def _one_hot_hint(self, shape):
        """What to do with labels of `shape` that look one-hot, or ""."""
        shape = tuple(shape)
        if len(shape) == 2 and shape[-1] == self.num_classes:
            return " (one-hot vectors: give their class ids, labels.argmax(axis=-1))"
        return ""

    def check_examples(self, x, where="x", values=True):
        """Validates examples at the API's edge: their shape, and with `values`, for
        concrete examples (not symbolic tensors inside `tf.function`), finite values the
        likelihood models. Returns the examples: a Python list of them as one array,
        anything else as given."""
        if isinstance(x, tf.data.Dataset):
            raise ConfigError(
                f"{where} takes examples in memory, [N, *{self.network_config.input_shape}], not a "
                "tf.data.Dataset; read it into an array, np.concatenate(list(dataset.as_numpy_iterator()))."
            )
        symbolic = isinstance(x, tf.Tensor) and not tf.executing_eagerly()
        if isinstance(x, (list, tuple)):
            x = examples_array(where, x)
        shape = x.shape if isinstance(x, (tf.Tensor, np.ndarray)) else np.shape(x)
        self._check_batch_shape(shape, where, "give a batch (x[None] for a single example)")
        if values and not symbolic:
            check_values(
                where, np.asarray(x, np.float32), self.likelihood_layer.family, levels=self.likelihood_layer.data_levels
            )
        return x

    def _check_batch_shape(self, shape, where, batch_it):
        """Raises a DataError unless `shape` (dimensions may be unknown) is a batch of this
        model's examples; a single example's shape is told to `batch_it`."""
        shape = tf.TensorShape(shape)
        expected = self.network_config.input_shape
        if shape.rank is None or (shape.rank == len(expected) + 1 and shape[1:].is_compatible_with(expected)):
            return
        if shape.rank == len(expected) and shape.is_compatible_with(expected):
            raise DataError(f"{where}: one example of shape {tuple(shape)}, not a batch of them; {batch_it}.")
        raise DataError(
            f"{where}: examples have shape {tuple(shape[1:])} (batches {tuple(shape)}), but {type(self).__name__} "
            f"was built for {expected}; reshape the data or build the model with input_shape={tuple(shape[1:])}."
        )

    def _network_inputs(self, inputs, labels):
        """The networks' inputs: `inputs`, or `[inputs, one_hot(labels)]` when conditional."""
        if not self.conditional:
            return inputs
        one_hot = tf.one_hot(tf.cast(labels, tf.int32), self.num_classes, dtype=self.compute_dtype)
        return [tf.cast(inputs, self.compute_dtype), one_hot]

    def _split_inputs(self, data):
        """`(x, labels)` from a batch: x, (x,), (x, labels) or ((x, labels),)."""
        x, labels = self._unpack(data)
        return tf.cast(x, self.compute_dtype), labels

    def _unpack(self, data):
        """`(x, labels or None)` of a batch, or of a dataset's element spec."""
        x, labels, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if sample_weight is not None:
            raise ConfigError(_NO_WEIGHTS.format(what="a dataset of (x, labels, sample_weight) triples"))
        if self.conditional and labels is None and isinstance(x, (tuple, list)):
            x, labels = x
        if self.conditional and labels is None:
            raise ConfigError(
                f"{type(self).__name__} trains on (x, labels) pairs: call fit((x, labels)) "
                "or fit(x, labels), or give a dataset of (x, labels)."
            )
        return x, (labels if self.conditional else None)

    def _checked_stream(self, dataset, where, values=True):
        """`dataset`, a `tf.data.Dataset` of batches for `fit` or `evaluate`, checked at the
        edge: its element spec now (batched, of this model's example shape, numeric), and
        with `values` each batch's values on their way to the step
        (`tfvae.data.stream_value_check`)."""
        x_spec, labels_spec = self._unpack(dataset.element_spec)
        if not isinstance(x_spec, tf.TensorSpec) or not (
            x_spec.dtype.is_floating or x_spec.dtype.is_integer or x_spec.dtype.is_bool
        ):
            pairs = "(x, labels) pairs" if self.conditional else "x, or (x, anything) pairs"
            raise DataError(f"{where}: elements must be numeric tensors, {pairs}; got {dataset.element_spec}.")
        self._check_batch_shape(x_spec.shape, where, "batch the dataset, e.g. dataset.batch(64)")
        if labels_spec is not None and not (
            isinstance(labels_spec, tf.TensorSpec)
            and labels_spec.dtype.is_integer
            and labels_spec.shape.rank in (None, 1)
        ):
            hint = self._one_hot_hint(labels_spec.shape) if isinstance(labels_spec, tf.TensorSpec) else ""
            raise DataError(f"{where}: labels must be integer class ids, [batch]; got {labels_spec}{hint}.")
        if not values:
            return dataset
        check = stream_value_check(
            where,
            self.likelihood_layer.family,
            self.network_config.input_shape,
            levels=self.likelihood_layer.data_levels,
            num_classes=self.num_classes,
        )

        def checked(index, batch):
            with tf.control_dependencies(check(index, *self._unpack(batch))):
                return tf.nest.map_structure(tf.identity, batch)

        return dataset.enumerate().map(checked)

    def _checked_input(self, x, where, labels=None, values=True):
        """Checks the examples (and labels) given to `fit`'s validation, `evaluate` or
        `predict`: a dataset as `_checked_stream` does (returning the checked dataset),
        arrays at once; `values=False` checks shapes alone."""
        if isinstance(x, tf.data.Dataset):
            return self._checked_stream(x, where, values=values)
        if isinstance(x, (np.ndarray, tf.Tensor)):  # other inputs (PyDataset, generators) go to Keras as given
            x = self.check_examples(x, where, values=values)
            self.check_labels(labels, example_count(x))
        return x

    def _refuse_labels_unless_conditional(self, x, y, method):
        """Raises a ConfigError when labels (`y`, or `(x, labels)`) reach an unconditional model."""
        if not self.conditional and (y is not None or isinstance(x, (tuple, list))):
            raise ConfigError(
                f"{type(self).__name__} is not conditional: {method} takes the examples alone, {method}(x) "
                "(tfvae.ConditionalVAE is the model that takes (x, labels))."
            )

    # The decoder side, shared by every model.

    def _decode(self, z, labels=None, training=False, context=None):
        """p(x|z[, y]) for z `[..., latent_dim]`: batch shape `z.shape[:-1]`. `context` is
        the likelihood's `context_of` the x whose density will be taken, where the caller
        computed it once for several samples of z."""
        leading = tf.shape(z)[:-1]
        flat_z = tf.reshape(z, [-1, self.latent_dim])
        if labels is not None:  # broadcast y over the sample dimensions of z
            labels = tf.reshape(tf.broadcast_to(tf.cast(labels, tf.int32), leading), [-1])
        params = self.decoder(self._network_inputs(self._decoder_features(flat_z, training), labels), training=training)
        params = tf.reshape(params, tf.concat([leading, tf.shape(params)[1:]], axis=0))
        if context is None:  # what most likelihoods have: their densities read x alone
            return self.likelihood_layer(params)
        return self.likelihood_layer(params, context=context)

    def _decoder_features(self, z, training):
        """What the decoder network reads for z `[n, latent_dim]` (z itself, here)."""
        return z

    def decoder_outputs(self, z, labels=None, noise=None):
        """The exported decoder's outputs: `{"mean": E[x|z], **likelihood parameters}`; for
        an autoregressive likelihood (`Likelihood.autoregressive`), `{"x": x}`, the image
        drawn from p(x|z) by uniforms `noise` `[batch, *likelihood_layer.noise_shape]`
        (its mean is no one-pass function of z either)."""
        likelihood = self._decode(z, labels)
        if self.likelihood_layer.autoregressive:
            return {"x": likelihood.sample_of_noise(noise)}
        return {"mean": likelihood.mean(), **self.likelihood_layer.parameters_of(likelihood)}

    def decoder_draws_given(self, z, noise, x, labels=None):
        """For an autoregressive likelihood: `AutoregressiveImage.draws_given(x, noise)` of
        p(x|z), the check of an exported generator's draws `x` (see `decoder_outputs`)."""
        return self._decode(z, labels).draws_given(x, noise)

    def _code(self, x, labels, training):
        """The deterministic code of x that `call`/`reconstruct` decode."""
        raise NotImplementedError

    def latent_code(self, x, *, labels=None):
        """The deterministic code of each example, `[batch, latent_dim]`: E_q[z|x] for a
        VAE, encoder(x) for an autoencoder (labels for conditional models)."""
        x = self.check_examples(x, "latent_code's x", values=False)
        return self._code(x, self.check_labels(labels, example_count(x)), False)

    def decode_mean(self, z, *, labels=None):
        """E[x|z] (and y for conditional models) for z `[batch, latent_dim]`."""
        return self._decode(z, self.check_labels(labels, example_count(z)), False).mean()

    def reconstruct(self, x, *, labels=None):
        """E[x | z = code(x)]: the expected example decoded from its deterministic code."""
        x = self.check_examples(x, "reconstruct's x", values=False)
        labels = self.check_labels(labels, example_count(x))
        return self._decode(self._code(x, labels, False), labels).mean()

    def call(self, inputs, training=False):
        """The deterministic reconstruction E[x | z = code(x)]; inputs x or (x, labels)."""
        if self.conditional and not (isinstance(inputs, (tuple, list)) and len(inputs) == 2):
            raise ConfigError(self._needs_labels("call"))
        x, labels = inputs if self.conditional else (inputs, None)
        return self._decode(self._code(x, labels, training), labels, training).mean()

    def export(self, filepath, format="tf_saved_model", **kwargs):
        """Refused: `tfvae.export(model, export_dir, name)` exports a tfvae model.

        Keras' own export traces `call`, the reconstruction through the posterior's TFP
        distribution: after a call (without one it refuses a trained model as "never
        called", as `fit` runs `train_step` only), its SavedModel failed to load
        ("Called a function referencing variables which have been deleted") and
        ONNX Runtime refused its ONNX graph (TFP's BroadcastArgs). `tfvae.export` writes
        the generator and the encoder as deterministic graphs, checked in each runtime.
        """
        raise ConfigError(
            f"{type(self).__name__}.export ({format!r} to {filepath!r}) is Keras' export of `call`, which "
            "does not carry TFP's distributions; use tfvae.export(model, export_dir, name), which writes "
            "the generator and encoder as SavedModel and ONNX (or `tfvae export RUN_DIR` from the CLI)."
        )

    # Training.

    def _objective_and_metrics(self, x, labels, training):
        """`(objective to minimise, {metric name: scalar})`."""
        raise NotImplementedError

    def _update_metrics(self, values, x):
        # Weighted by batch size, so an epoch's metric is the per-example mean even
        # when the last batch is short.
        batch_size = tf.cast(tf.shape(x)[0], self.compute_dtype)
        for tracker in self.trackers:
            tracker.update_state(values[tracker.name], sample_weight=batch_size)
        results = {tracker.name: tracker.result() for tracker in self.trackers}
        if in_multi_worker_mode(tf.distribute.get_strategy()):
            # Keras 3.15 reduces a multi-worker step's logs with strategy.reduce(MEAN,
            # axis=0), which fails on scalars ("Invalid reduction dimension 0 for input
            # with 0 dimensions", tensorflow/tensorflow#72388): give it that axis.
            results = {name: tf.reshape(value, [1]) for name, value in results.items()}
        return results

    def train_step(self, data):
        x, labels = self._split_inputs(data)
        with tf.GradientTape() as tape:
            objective, values = self._objective_and_metrics(x, labels, training=True)
            # tf.distribute sums gradients over replicas; dividing makes that a mean.
            scaled = objective / tf.distribute.get_strategy().num_replicas_in_sync
        gradients = tape.gradient(scaled, self.trainable_weights)
        self.optimizer.apply(gradients, self.trainable_weights)
        return self._update_metrics(values, x)

    def test_step(self, data):
        x, labels = self._split_inputs(data)
        return self._update_metrics(self._objective_and_metrics(x, labels, training=False)[1], x)

    def compile(self, optimizer=None, jit_compile="auto", steps_per_execution="auto", **kwargs):
        """As `keras.Model.compile`, with defaults that make `fit` fast.

        Args:
          optimizer: defaults to Adam(1e-3).
          jit_compile: "auto" compiles the train and test steps with XLA, on CPUs too
            (Keras' own "auto" does so only on accelerators), except under a
            `tf.distribute` strategy (on CPUs TensorFlow 2.21 cannot compile the
            replicas' all-reduce: "Collectives are not yet implemented for CPU devices
            when compiling with XLA"), with a layer that does not support XLA, or for
            convolutional networks on a machine without a GPU.
          steps_per_execution: train steps per call into TensorFlow. "auto" is 32
            (batch-level callbacks then run every 32 batches), or 1 under a
            `tf.distribute` strategy, where Keras 3.15's loop over several steps fails
            ("You must feed a value for placeholder tensor" under
            `MultiWorkerMirroredStrategy`).
          **kwargs: the rest of `keras.Model.compile`'s arguments, but `loss` and
            `metrics` (and their weights): the model's objective is its loss, and its
            `train_step` reports that objective's terms only.
        """
        for name in _OWN_OBJECTIVE:
            if kwargs.get(name) is not None:
                # Keras would keep them and `train_step` never read them: a loss="mse"
                # looked accepted while the model went on training its own objective.
                raise ConfigError(
                    f"compile's {name}={kwargs[name]!r}: {type(self).__name__} trains on its own objective "
                    f"({self.loss_name}) and reports its terms; leave out {name}. The "
                    "likelihood sets the reconstruction term (likelihood='gaussian', ...); measure other "
                    "quantities after fit, on model.reconstruct(x)."
                )
        distributed = tf.distribute.has_strategy()
        if jit_compile == "auto":
            jit_compile = not distributed and self._gains_from_xla()
        if steps_per_execution == "auto":
            steps_per_execution = 1 if distributed else STEPS_PER_EXECUTION
        super().compile(
            optimizer=optimizer or keras.optimizers.Adam(1e-3),
            jit_compile=jit_compile,
            steps_per_execution=steps_per_execution,
            **kwargs,
        )

    def _gains_from_xla(self):
        layers = list(self._flatten_layers())
        if not all(layer.supports_jit for layer in layers):
            return False
        if tf.config.list_physical_devices("GPU"):
            return True
        # On CPUs, XLA's convolutions are slower than TensorFlow's oneDNN kernels: the
        # conv VAE's epochs on 20k MNIST images took 6.1 s with XLA against 4.4 s
        # without, while the dense networks' went from 0.82 s to 0.51 s.
        return not any(isinstance(layer, _CONVOLUTIONS) for layer in layers)

    def fit(
        self,
        x=None,
        y=None,
        batch_size=None,
        epochs=1,
        verbose="auto",
        callbacks=None,
        validation_split=0.0,
        shuffle=True,
        class_weight=None,
        sample_weight=None,
        steps_per_epoch=None,
        check_batches=True,
        **kwargs,
    ):
        """As `keras.Model.fit`; in-memory training data take tfvae's input path.

        NumPy arrays or tensors (x, or x with labels for a conditional model) become
        `tfvae.input_pipeline.shuffled_batches`: one shuffle per epoch and a gather per batch on a
        single tf.data thread, instead of Keras' adapter, whose autotuned threads compete
        with the train step for the CPU (on 2 cores, epochs ran 1.7x slower at times).
        Other inputs, and fits with `validation_split`, `steps_per_epoch` or
        `shuffle=False`, go to Keras as given (`sample_weight` and `class_weight` are
        refused: the objectives take no weights); a
        `tf.data` dataset is read in its own order (`dataset.shuffle` shuffles it). The
        `train` of a record dataset (`tfvae.records.RecordStream`) is streamed from its
        shards, shuffled in windows each epoch.

        Examples are checked before they reach a step: arrays once, a `tf.data` dataset's
        element spec at once and each batch's values as they stream (see `_checked_stream`).
        `check_batches=False` leaves out the per-batch check of a training dataset whose
        values were checked already (tfvae's own runs check their data when loading it):
        on bench-train's model it cost 1% of an epoch's time (best of three interleaved
        rounds; 5% between the medians).
        """
        if sample_weight is not None or class_weight is not None:
            raise ConfigError(
                _NO_WEIGHTS.format(what="fit's sample_weight" if class_weight is None else "class_weight")
            )
        callbacks = with_progress_bar(callbacks, verbose)
        keras_arguments = dict(
            verbose=verbose,
            validation_split=validation_split,
            class_weight=class_weight,
            sample_weight=sample_weight,
            steps_per_epoch=steps_per_epoch,
            **kwargs,
        )
        batch_rank = len(self.network_config.input_shape) + 1
        if not self.conditional and isinstance(x, list) and not (len(x) == 2 and np.ndim(x[0]) == batch_rank):
            x = examples_array("fit's x", x)  # a list of examples, not [x, labels]
        self._refuse_labels_unless_conditional(x, y, "fit")
        if isinstance(x, RecordStream):
            x, callbacks = self._record_batches(x, batch_size or 32, callbacks)
            batch_size = None
        in_memory = _in_memory_training_data(x, y, self.conditional)
        if in_memory is not None:
            self.check_examples(in_memory[0], "fit's x")
        elif isinstance(x, tf.data.Dataset):
            x = self._checked_stream(x, "fit's dataset", values=check_batches)
        validation = keras_arguments.get("validation_data")
        if isinstance(validation, tf.data.Dataset):
            keras_arguments["validation_data"] = self._checked_stream(validation, "validation_data")
        elif isinstance(validation, (tuple, list)):  # (x,) or (x, labels); others go to Keras as given
            examples, labels = self._unpack(tuple(validation))
            self._checked_input(examples, "validation_data", labels=labels)
        keras_only = validation_split or steps_per_epoch is not None
        if in_memory is None or not shuffle or keras_only:
            # A dataset is read as given (shuffle it in its pipeline); for the default
            # shuffle=True, Keras would only warn on every fit that it ignores it.
            shuffle = shuffle and not isinstance(x, tf.data.Dataset)
            return self._keras_fit(
                x, y, batch_size=batch_size, epochs=epochs, callbacks=callbacks, shuffle=shuffle, **keras_arguments
            )
        examples, labels = in_memory
        batches, shuffle_callback = shuffled_batches(examples, batch_size or 32, shuffle_seed(), labels)
        return self._keras_fit(
            batches,
            epochs=epochs,
            callbacks=[shuffle_callback, *(callbacks or [])],
            shuffle=False,
            **keras_arguments,
        )

    def _record_batches(self, stream, batch_size, callbacks):
        """`(batches, callbacks)` streaming a record split (`tfvae.records.RecordStream`,
        the `train` of a record dataset) as `tfvae train` does, shuffled in windows by
        (seed, epoch) with the seed drawn as the in-memory path draws it."""
        self._check_batch_shape((None, *stream.example_shape), "fit's record stream", "write examples whole")
        if self.conditional and not stream.labelled:
            raise DataError(
                f"fit's record stream: {type(self).__name__} trains on (x, labels), but the records have no "
                "`label`; write them with labels (tfvae.records.write_records(..., labels))."
            )
        batches, shuffle_callback = stream.batches(batch_size, shuffle_seed(), labels=self.conditional)
        return batches, [shuffle_callback, *(callbacks or [])]

    def _keras_fit(self, *args, callbacks, **kwargs):
        """`keras.Model.fit`, leaving the model its training weights however it ends.

        Keras calls no `on_test_end` when Ctrl-C or an error cuts a validation short, so
        an `AveragedWeights` would leave the average in the model and the training
        weights lost; this puts them back.
        """
        try:
            with stream_errors():
                return super().fit(*args, callbacks=callbacks, **kwargs)
        finally:
            listed = callbacks.callbacks if isinstance(callbacks, keras.callbacks.CallbackList) else callbacks or []
            for callback in listed:
                if isinstance(callback, AveragedWeights):
                    callback.restore_training_weights()

    def evaluate(self, x=None, y=None, *args, verbose="auto", callbacks=None, **kwargs):
        """As `keras.Model.evaluate`, its examples checked as `fit`'s are, its progress bar
        counting the batches that ran."""
        callbacks = with_progress_bar(callbacks, verbose)
        if kwargs.get("_use_cached_eval_dataset"):  # fit's validation, whose data fit checked
            return super().evaluate(x, y, *args, verbose=verbose, callbacks=callbacks, **kwargs)
        self._refuse_labels_unless_conditional(x, y, "evaluate")
        if self.conditional and y is None and isinstance(x, (tuple, list)) and len(x) == 2:
            x, y = x
        x = self._checked_input(x, "evaluate's x", labels=y)
        with stream_errors():
            return super().evaluate(x, y, *args, verbose=verbose, callbacks=callbacks, **kwargs)

    def predict(self, x, *args, **kwargs):
        """As `keras.Model.predict`: `call`'s reconstructions E[x | z = code(x)] of `x` (arrays
        or a dataset of batches; `(x, labels)` for a conditional model), their shape checked."""
        if not self.conditional:  # a conditional model's x is (x, labels), which Keras takes apart
            x = self._checked_input(x, "predict's x", values=False)
        elif isinstance(x, np.ndarray) or tf.is_tensor(x):
            raise ConfigError(self._needs_labels("predict"))
        return super().predict(x, *args, **kwargs)

    def _needs_labels(self, method):
        return (
            f"{type(self).__name__} is conditional: {method} takes (x, labels), the examples and their "
            f"class ids in [0, {self.num_classes}), as a tuple, or a dataset of such pairs."
        )

    def compile_from_config(self, config):
        # Keras skips re-compiling models whose `compile` is overridden unless this is
        # too; doing it restores the optimizer (and its saved state) on load.
        self.compile(**keras.saving.deserialize_keras_object(config))
        self.optimizer.build(self.trainable_variables)

    def get_config(self):
        config = super().get_config()
        network = self.network_config
        config.update(
            input_shape=list(network.input_shape),
            latent_dim=self.latent_dim,
            likelihood=keras.saving.serialize_keras_object(self.likelihood_layer),
            encoder=keras.saving.serialize_keras_object(self.encoder),
            decoder=keras.saving.serialize_keras_object(self.decoder),
            arch=network.arch,
            hidden_units=list(network.hidden_units),
            filters=list(network.filters),
            activation=network.activation,
            image_shape=None if network.image_shape is None else list(network.image_shape),
            residual_blocks=network.residual_blocks,
            dropout=network.dropout,
            decoder_dropout=network.decoder_dropout,
        )
        return config

    _NESTED = ("likelihood", "encoder", "decoder")

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in cls._NESTED:
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


_OWN_OBJECTIVE = ("loss", "loss_weights", "metrics", "weighted_metrics")

# Keras hands weights to `train_step`, which has no use for them: refused, not dropped.
_NO_WEIGHTS = (
    "{what}: tfvae's objectives (the ELBO, the IWAE bound) average their examples with equal "
    "weight and take no per-example weights; repeat examples to weight them up, or leave the weights out."
)


def check_count(n, name="the number of samples `n`"):
    """Raises a ConfigError unless `n` (examples to generate, samples to draw) is a positive int."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n <= 0:
        raise ConfigError(f"{name} must be a positive integer; got {n!r}.")


def example_count(x):
    """The number of examples in x (None when unknown inside a traced function)."""
    shape = np.shape(x)  # reads `x.shape` where there is one: a traced tensor's may be None
    return None if shape[0] is None else int(shape[0])
