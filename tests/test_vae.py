import json
import re
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import built_in_mixed_precision, tiny_vae

import tfvae
from tfvae import objectives
from tfvae.seeding import stateless_seed


@pytest.mark.slow
def test_fit_lowers_negative_elbo_on_numpy_and_reports_metrics(digits):
    model = tiny_vae(latent_dim=4)
    history = model.fit(digits.train, epochs=6, batch_size=64, validation_data=(digits.valid,), verbose=0).history
    assert set(history) == {"loss", "reconstruction", "kl", "val_loss", "val_reconstruction", "val_kl"}
    assert history["loss"][-1] < history["loss"][0] - 8.0
    assert history["val_loss"][-1] < history["val_loss"][0] - 5.0
    for split in ("", "val_"):  # loss is reconstruction + KL, per epoch
        np.testing.assert_allclose(
            history[f"{split}loss"], np.add(history[f"{split}reconstruction"], history[f"{split}kl"]), rtol=1e-5
        )
    assert min(history["kl"]) >= 0


@pytest.mark.slow
def test_the_progress_bar_counts_the_batches_that_ran(digits, capsys):
    model = tiny_vae()  # 32 steps per call into TensorFlow
    model.fit(digits.train[:1440], epochs=1, batch_size=64, verbose=1)  # 23 batches
    model.evaluate(digits.valid[:180], batch_size=10, verbose=1)  # 18 batches
    counts = [
        tuple(map(int, m)) for m in re.findall(r"(\d+)/(\d+) ", re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out))
    ]
    assert counts and all(done <= total for done, total in counts), counts
    assert (23, 23) in counts and (18, 18) in counts


@pytest.mark.slow
def test_fit_takes_a_tf_data_dataset(digits):
    model = tiny_vae()
    dataset = tf.data.Dataset.from_tensor_slices(digits.train).shuffle(512, seed=0).batch(64)
    # (x, anything) validation pairs, as Keras takes them: checked once by fit, not each epoch
    validation = (digits.valid, digits.valid)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(dataset, epochs=3, validation_data=validation, verbose=0).history
    assert history["loss"][-1] < history["loss"][0] and len(history["val_loss"]) == 3
    assert not [w for w in caught if "shuffle" in str(w.message)]  # Keras' "... will be ignored", on fit's default


def test_fit_takes_a_python_list_of_examples(digits):
    model = tiny_vae()
    history = model.fit(digits.train[:128].tolist(), epochs=2, batch_size=64, verbose=0).history
    assert len(history["loss"]) == 2 and history["loss"][-1] < history["loss"][0]


def test_a_python_list_of_examples_encodes_as_its_array_does(digits):
    model = tiny_vae()
    x = digits.test[:3]
    as_list = [list(example) for example in x]
    np.testing.assert_array_equal(model.encode(as_list).mean(), model.encode(x).mean())
    np.testing.assert_array_equal(model.latent_code(as_list), model.latent_code(x))
    np.testing.assert_array_equal(model.reconstruct(as_list), model.reconstruct(x))


@pytest.mark.slow
def test_fit_and_evaluate_take_a_keras_py_dataset_as_keras_does(digits):
    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 4

        def __getitem__(self, index):
            return digits.train[index * 64 : (index + 1) * 64]

    model = tiny_vae()
    history = model.fit(Batches(), epochs=2, validation_data=Batches(), verbose=0).history
    assert len(history["val_loss"]) == 2
    assert model.evaluate(Batches(), verbose=0, return_dict=True)["loss"] == pytest.approx(history["val_loss"][-1])


@pytest.mark.parametrize("covariance", ["diagonal", "full"])
def test_public_methods_have_the_documented_shapes(digits, covariance):
    model = tiny_vae(latent_dim=3, posterior=covariance, num_samples=2)
    x = digits.test[:5]
    posterior = model.encode(x)
    assert posterior.batch_shape == [5] and posterior.event_shape == [3]
    z = posterior.sample(7, seed=tf.constant([1, 2]))
    assert z.shape == (7, 5, 3)
    likelihood = model.decode(z)
    assert likelihood.batch_shape == [7, 5] and likelihood.event_shape == [64]
    assert likelihood.log_prob(x).shape == (7, 5)
    assert model.decode(z[0]).log_prob(x).shape == (5,)
    assert model.prior.sample(4).shape == (4, 3)
    assert model.reconstruct(x).shape == (5, 64)
    assert model.elbo(x, num_samples=3).shape == (5,)
    samples = model.sample(6, seed=3).numpy()
    assert samples.shape == (6, 64) and samples.min() >= 0 and samples.max() <= 1
    np.testing.assert_array_equal(samples, model.sample(6, seed=3).numpy())
    assert not np.array_equal(samples, model.sample(6, seed=4).numpy())


def test_sample_draws_x_from_the_likelihood_of_the_same_z():
    model = tiny_vae()
    means = model.sample(2000, seed=3).numpy()  # Bernoulli probabilities, [2000, 64]
    draws = model.sample(2000, seed=3, draw=True).numpy()
    assert set(np.unique(draws)) <= {0.0, 1.0}
    np.testing.assert_array_equal(draws, model.sample(2000, seed=3, draw=True).numpy())
    # Draws of the same z's: the mean of draws - p is 0 within 5 standard errors; draws of
    # other z's (or of the means' stream) would shift it by a pixel's spread across z.
    error = (draws - means).mean(axis=0)
    np.testing.assert_array_less(np.abs(error), 5 * np.sqrt((means * (1 - means)).mean(axis=0) / 2000) + 1e-3)


def test_encode_and_decode_work_in_tf_function_and_dataset_map(digits):
    model = tiny_vae()
    x = digits.test[:8]
    eager = model.encode(x).mean().numpy()

    @tf.function
    def round_trip(batch):
        return model.decode(model.encode(batch).mean()).mean()

    np.testing.assert_allclose(round_trip(tf.constant(x)).numpy(), model.reconstruct(x).numpy(), rtol=1e-6)
    mapped = tf.data.Dataset.from_tensor_slices(x).batch(4).map(lambda b: model.encode(b).mean())
    np.testing.assert_allclose(np.concatenate(list(mapped.as_numpy_iterator())), eager, rtol=1e-6)
    sampled = (
        tf.data.Dataset.from_tensor_slices(x).batch(4).map(lambda b: model.encode(b).sample(seed=tf.constant([0, 1])))
    )
    assert np.concatenate(list(sampled.as_numpy_iterator())).shape == (8, 3)


def test_gradients_reach_the_encoder_through_the_reparameterised_sample(digits):
    """The reconstruction term depends on the encoder only through z = loc + scale·ε."""
    model = tiny_vae()
    x = tf.constant(digits.train[:16])
    with tf.GradientTape() as tape:
        terms, _ = model._sampled_terms(x, None, 4, tf.constant([5, 6]), training=True)
        reconstruction = -tf.reduce_mean(terms.log_likelihood)
    gradients = tape.gradient(reconstruction, model.encoder.trainable_weights)
    assert all(g is not None for g in gradients)
    assert all(float(tf.reduce_max(tf.abs(g))) > 0 for g in gradients)
    # In particular the part of the output layer that sets the scale gets a gradient.
    output_kernel_gradient = gradients[-2].numpy()
    assert np.abs(output_kernel_gradient[:, model.latent_dim :]).max() > 0


def test_monte_carlo_kl_and_closed_form_agree_within_error(digits):
    # Eager elbo_parts reads analytic_kl on every call (a compiled evaluate would keep the
    # first choice); an ignored switch gives the closed form twice and fails the spread check.
    model = tiny_vae()
    model.fit(digits.train, epochs=2, batch_size=64, verbose=0)
    x = digits.valid
    closed = model.elbo_parts(x, num_samples=1, seed=0)[1][0].numpy()
    model.analytic_kl = False
    monte_carlo = model.elbo_parts(x, num_samples=500, seed=0)[1][0].numpy()
    difference = monte_carlo - closed
    assert difference.std() > 1e-3
    assert abs(difference.mean()) < 4 * difference.std(ddof=1) / np.sqrt(len(x))


@pytest.mark.slow
def test_importance_sampled_log_likelihood_is_tighter_than_the_elbo(digits):
    model = tiny_vae()
    model.fit(digits.train, epochs=5, batch_size=64, verbose=0)
    x = digits.test[:100]
    elbo = model.elbo(x, num_samples=50, seed=0).numpy()
    log_px = model.log_likelihood(x, num_samples=500, seed=0)
    difference = log_px - elbo
    assert difference.mean() > 3 * difference.std(ddof=1) / np.sqrt(len(x))


def test_kl_warmup_raises_the_weight_linearly_to_beta(digits):
    model = tiny_vae(beta=2.0, kl_warmup_epochs=4)
    weights = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: weights.append(float(model.kl_weight)))
    model.fit(digits.train[:256], epochs=6, batch_size=64, verbose=0, callbacks=[record])
    np.testing.assert_allclose(weights, [0.5, 1.0, 1.5, 2.0, 2.0, 2.0])


@pytest.mark.slow
@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param(dict(posterior="diagonal"), id="diagonal"),
        pytest.param(dict(posterior="full", beta=4.0, kl_warmup_epochs=3), id="full-beta", marks=pytest.mark.slow),
        pytest.param(dict(likelihood="gaussian"), id="gaussian-learned-scale", marks=pytest.mark.slow),
        pytest.param(
            dict(arch="conv", filters=(4, 8), hidden_units=(16,), residual_blocks=1),
            id="conv-residual",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_keras_file_round_trip_decodes_identically(tmp_path, digits, kwargs):
    model = tiny_vae(**kwargs)
    model.fit(digits.train[:256], epochs=1, batch_size=64, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects: registration does it
    assert type(loaded) is tfvae.VAE
    assert json.dumps(loaded.get_config()) == json.dumps(model.get_config())
    z = np.random.default_rng(0).normal(size=(5, model.latent_dim)).astype(np.float32)
    np.testing.assert_array_equal(loaded.decode(z).mean().numpy(), model.decode(z).mean().numpy())
    np.testing.assert_array_equal(
        loaded.encode(digits.test[:5]).stddev().numpy(), model.encode(digits.test[:5]).stddev().numpy()
    )
    loaded.fit(digits.train[:128], epochs=1, batch_size=64, verbose=0)  # comes back compiled


def test_residual_blocks_start_as_the_identity_at_every_resolution():
    from tfvae.networks import residual_block

    inputs = keras.Input((4, 4, 3))
    block = keras.Model(inputs, residual_block(inputs, "relu"))
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype(np.float32)
    np.testing.assert_array_equal(block(x).numpy(), x)  # the second convolution starts at zero
    model = tfvae.VAE((64,), 2, arch="conv", filters=(4, 8), hidden_units=(16,), residual_blocks=2)
    for network, sizes in ((model.encoder, [(4, 4, 4), (2, 2, 8)]), (model.decoder, [(4, 4, 8), (8, 8, 4)][::-1])):
        adds = [layer.output.shape[1:] for layer in network.layers if isinstance(layer, keras.layers.Add)]
        assert sorted(adds) == sorted(shape for shape in sizes for _ in range(2))  # two per resolution
    with pytest.raises(tfvae.ConfigError, match="needs arch='conv'"):
        tfvae.VAE((64,), 2, residual_blocks=1)


@pytest.mark.slow
def test_a_seeded_run_repeats_exactly(digits):
    def run():
        keras.utils.set_random_seed(7)
        model = tiny_vae(seed=7)
        history = model.fit(digits.train, epochs=2, batch_size=64, verbose=0).history
        return history, model.get_weights()

    (history_a, weights_a), (history_b, weights_b) = run(), run()
    assert history_a == history_b
    for a, b in zip(weights_a, weights_b):
        np.testing.assert_array_equal(a, b)


def test_user_supplied_networks_are_checked_against_the_posterior():
    encoder = keras.Sequential([keras.Input((10,)), keras.layers.Dense(5)])
    decoder = keras.Sequential([keras.Input((2,)), keras.layers.Dense(10)])
    with pytest.raises(tfvae.ConfigError, match=r"needs \(4,\)"):
        tfvae.VAE((10,), 2, encoder=encoder, decoder=decoder)
    good = keras.Sequential([keras.Input((10,)), keras.layers.Dense(4)])
    model = tfvae.VAE((10,), 2, encoder=good, decoder=decoder)
    assert model.encode(np.zeros((3, 10), np.float32)).event_shape == [2]


def test_the_training_metrics_kl_is_the_closed_form_computed_by_hand(digits):
    """`evaluate`'s kl (the compiled test step) against KL(N(μ, σ²) || N(0, I)) in NumPy
    from the encoder's raw outputs, and its loss is reconstruction + kl."""
    model = tiny_vae(num_samples=1)
    x = digits.valid[:64]
    params = model.encoder(x).numpy()
    mu, sigma = params[:, :3], np.log1p(np.exp(params[:, 3:])) + model.posterior_layer.scale_floor
    by_hand = 0.5 * (sigma**2 + mu**2 - 1 - 2 * np.log(sigma)).sum(axis=1).mean()
    metrics = model.evaluate(x, batch_size=64, verbose=0, return_dict=True)
    np.testing.assert_allclose(metrics["kl"], by_hand, rtol=1e-5)
    np.testing.assert_allclose(metrics["loss"], metrics["reconstruction"] + metrics["kl"], rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_samples=0), "num_samples"),
        (dict(beta=-1.0), "beta"),
        (dict(arch="rnn"), "arch"),
        (dict(objective="vimco"), "objective"),
        (dict(arch="conv", filters=(4, 8, 16, 32)), "multiples of 16"),
    ],
)
def test_bad_model_arguments_say_what_to_fix(kwargs, message):
    with pytest.raises(tfvae.ConfigError, match=message):
        tfvae.VAE((64,), 2, **kwargs)


@pytest.mark.slow
def test_iwae_objective_trains_and_its_bound_is_tighter_than_the_elbo(digits):
    model = tiny_vae(num_samples=8, objective="iwae")
    history = model.fit(digits.train, epochs=4, batch_size=64, verbose=0).history
    assert history["loss"][-1] < history["loss"][0] - 5.0
    x = digits.valid
    negative_iwae = model.evaluate(x, batch_size=len(x), verbose=0, return_dict=True)["loss"]
    negative_elbo = -np.mean(model.elbo(x, num_samples=8, seed=0))
    assert negative_iwae < negative_elbo - 1.0  # the 8-sample bound is the tighter one (2.2 nats here)
    assert tiny_vae(objective="iwae").get_config()["objective"] == "iwae"


def test_iwae_bound_with_one_sample_is_the_monte_carlo_elbo():
    log_weights = tf.constant([[-3.0, -1.5]])
    np.testing.assert_allclose(objectives.iwae_bound(log_weights).numpy(), [-3.0, -1.5])
    many = tf.constant(np.random.default_rng(0).normal(size=(50, 4)), tf.float32)
    expected = np.log(np.mean(np.exp(many.numpy()), axis=0))
    np.testing.assert_allclose(objectives.iwae_bound(many).numpy(), expected, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: tiny_vae(prior=tfvae.VampPrior(3, num_components=4)), id="vampprior"),
        # The flow's MADE networks follow the policy while its arithmetic stays in z's
        # float32, as does a hierarchy's top-down state meeting the draws of z.
        pytest.param(lambda: tiny_vae(posterior="iaf"), id="iaf"),
        pytest.param(
            lambda: tfvae.HierarchicalVAE((64,), latent_dims=(4, 3), hidden_units=(32,), posterior="iaf,diagonal"),
            id="hierarchy",
        ),
    ],
)
def test_mixed_precision_runs_the_networks_in_bfloat16_and_the_densities_in_float32(digits, build):
    model = built_in_mixed_precision(build)
    assert {layer.compute_dtype for layer in model.encoder.layers[1:]} == {"bfloat16"}
    assert model.posterior_layer.compute_dtype == model.likelihood_layer.compute_dtype == "float32"
    assert model.prior_layer.compute_dtype == model.compute_dtype == "float32"
    history = model.fit(digits.train, epochs=3, batch_size=64, verbose=0).history
    assert np.isfinite(history["loss"]).all() and history["loss"][-1] < history["loss"][0]
    elbo = model.elbo(digits.valid[:8], num_samples=4, seed=0)
    assert elbo.dtype == tf.float32 and np.isfinite(elbo.numpy()).all()
    assert model.sample(2, seed=0).dtype == tf.float32


@pytest.mark.slow
@pytest.mark.xla
def test_the_speed_defaults_leave_the_training_math_unchanged(digits):
    batches = tf.data.Dataset.from_tensor_slices(digits.train[:512]).batch(64)
    histories, models = {}, {}
    for name, options in {
        "defaults": {},
        "one_step_per_call": {"steps_per_execution": 1},
        "keras_defaults": {"jit_compile": False, "steps_per_execution": 1},
    }.items():
        keras.utils.set_random_seed(0)
        models[name] = tfvae.VAE((64,), 3, hidden_units=(32,), seed=0)
        models[name].compile(optimizer=keras.optimizers.Adam(3e-3), **options)
        histories[name] = models[name].fit(batches, epochs=3, verbose=0).history["loss"]
    assert (models["defaults"].jit_compile, models["defaults"].steps_per_execution) == (True, 32)
    # 32 steps per call runs the very same steps: same batches, weights and draws of z.
    np.testing.assert_allclose(histories["defaults"], histories["one_step_per_call"], rtol=1e-5)
    np.testing.assert_allclose(
        models["defaults"].get_weights()[0], models["one_step_per_call"].get_weights()[0], atol=1e-5
    )
    # XLA's Philox draws other z for the same seed than TensorFlow's kernels, so without
    # XLA the curve differs by Monte Carlo noise only (measured: 0.37% at most).
    np.testing.assert_allclose(histories["defaults"], histories["keras_defaults"], rtol=0.01)
    assert histories["keras_defaults"][-1] < histories["keras_defaults"][0] - 3


@pytest.mark.xla
def test_xla_is_on_by_default_except_for_convolutions_on_a_machine_without_a_gpu():
    dense = tiny_vae()
    conv = tiny_vae((8, 8, 1), arch="conv", filters=(4, 8), hidden_units=(16,))
    assert dense.jit_compile is True
    assert conv.jit_compile is bool(tf.config.list_physical_devices("GPU"))
    assert conv.steps_per_execution == dense.steps_per_execution == 32


def test_files_with_the_older_one_weight_sampler_state_still_load(tmp_path, digits):
    import zipfile

    import h5py

    model = tiny_vae(seed=5)
    model.fit(digits.train[:256], epochs=1, batch_size=64, verbose=0)
    new_path, old_path = tmp_path / "new.keras", tmp_path / "old.keras"
    model.save(new_path)
    # Rewrite the file to the earlier layout: kl_weight, then one [2] sampler_state.
    weights = tmp_path / "model.weights.h5"
    with zipfile.ZipFile(new_path) as archive:
        weights.write_bytes(archive.read("model.weights.h5"))
        others = {name: archive.read(name) for name in archive.namelist() if name != "model.weights.h5"}
    with h5py.File(weights, "r+") as f:
        seed, step = f["vars/1"][()], f["vars/2"][()]
        del f["vars/1"], f["vars/2"]
        f["vars/1"] = np.array([seed, step])
    with zipfile.ZipFile(old_path, "w") as archive:
        for name, data in others.items():
            archive.writestr(name, data)
        archive.write(weights, "model.weights.h5")

    loaded = keras.models.load_model(old_path)
    assert (int(loaded.sampler_seed.numpy()), int(loaded.sampler_step.numpy())) == (5, int(step)) and step > 0
    for original, restored in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(original, restored)


@pytest.mark.slow
def test_evaluation_has_its_own_noise_and_leaves_training_as_it_was(digits):
    x = digits.train[:256]

    def fitted(evaluate_between):
        keras.utils.set_random_seed(0)
        model = tiny_vae()
        model.fit(x, epochs=1, batch_size=64, verbose=0)
        if evaluate_between:
            first = model.evaluate(digits.valid, batch_size=64, verbose=0, return_dict=True)
            again = model.evaluate(digits.valid, batch_size=64, verbose=0, return_dict=True)
            assert first == again  # evaluating twice gives identical numbers
            # Unseeded estimates and samples draw fresh seeds, from a stream training never reads.
            estimates = [model.log_likelihood(digits.test[:4], num_samples=3) for _ in range(2)]
            assert not np.array_equal(*estimates)
            model.sample(2), model.elbo(digits.test[:4])
        model.fit(x, epochs=1, batch_size=64, verbose=0)
        return model.get_weights()

    for a, b in zip(fitted(True), fitted(False)):  # fit -> evaluate -> fit equals fit -> fit
        np.testing.assert_array_equal(a, b)


def test_numpy_and_64_bit_int_seeds_repeat_and_differ():
    model = tiny_vae()
    draws = {seed: model.sample(2, seed=seed).numpy() for seed in (5, 2**31 - 1, 2**31, 2**40, 2**63 - 1)}
    np.testing.assert_array_equal(model.sample(2, seed=np.int64(5)).numpy(), draws[5])  # NumPy ints are ints
    np.testing.assert_array_equal(model.sample(2, seed=2**40).numpy(), draws[2**40])
    assert len({samples.tobytes() for samples in draws.values()}) == len(draws)
    np.testing.assert_array_equal(stateless_seed(5).numpy(), [0, 5])  # 32-bit seeds keep their pairs


def test_an_unseeded_call_repeats_under_the_global_seed(digits):
    model = tiny_vae()

    def unseeded():
        keras.utils.set_random_seed(3)
        return (
            model.sample(2).numpy(),
            model.log_likelihood(digits.test[:3], num_samples=4),
            model.elbo(digits.test[:3]),
        )

    for a, b in zip(unseeded(), unseeded()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, d: m.decode(np.zeros((2, 5), "float32")), r"decode takes z of shape \[\.\.\., 3\].*\(2, 5\)"),
        (lambda m, d: m.sample(-1), r"`n` must be a positive integer; got -1"),
        (lambda m, d: m.fit((d.train, d.labels["train"]), epochs=1, verbose=0), "VAE is not conditional: fit takes"),
        (lambda m, d: m.fit(d.train[:, :10], epochs=1, verbose=0), r"fit's x: examples have shape \(10,\).*\(64,\)"),
        (
            lambda m, d: m.fit(np.where(np.arange(64) == 5, np.nan, d.train[:8]), epochs=1, verbose=0),
            r"fit's x: 8 NaN or infinite values \(first in example 0\)",
        ),
        (lambda m, d: m.fit(d.train * 255, epochs=1, verbose=0), r"values span \[0, 255\].*Bernoulli"),
        (
            lambda m, d: m.fit(d.train, epochs=1, validation_data=(d.valid * 255,), verbose=0),
            r"validation_data: values span \[0, 255\]",
        ),
        (lambda m, d: m.evaluate(d.test[:, :10], verbose=0), r"evaluate's x: examples have shape \(10,\)"),
        (lambda m, d: m.elbo(d.test * 2), r"values span \[0, 2\]"),
        (
            lambda m, d: m.log_likelihood(d.test[0], num_samples=2),
            r"one example of shape \(64,\), not a batch of them; give a batch \(x\[None\]",
        ),
        (lambda m, d: m.log_likelihood(_stream(d.test), num_samples=2), "takes examples in memory"),
        (lambda m, d: m.encode(d.test[:4, :10]), r"encode's x: examples have shape \(10,\)"),
        (lambda m, d: m.predict(d.test[:4, :10], verbose=0), r"predict's x: examples have shape \(10,\)"),
        (
            lambda m, d: m.fit([d.train, d.labels["train"]], verbose=0),
            "VAE is not conditional: fit takes the examples alone",
        ),
        (
            lambda m, d: m.fit(tf.data.Dataset.from_tensor_slices(d.train), verbose=0),
            r"fit's dataset: one example of shape \(64,\), not a batch of them; batch the dataset",
        ),
        (
            lambda m, d: m.fit(_stream(d.train[:, :10]), verbose=0),
            r"fit's dataset: examples have shape \(10,\) \(batches \(None, 10\)\).*\(64,\)",
        ),
        (
            lambda m, d: m.fit(_stream(_with(d.train[:256], (2 * 64 + 3, 7), 2.0)), verbose=0),
            r"fit's dataset, batch 2: 1 values lie outside \[0, 1\] \(e\.g\. 2 in example 3\)",
        ),
        (
            lambda m, d: m.fit(d.train, validation_data=_stream(_with(d.valid, (64 + 5, 0), np.inf)), verbose=0),
            r"validation_data, batch 1: 1 NaN or infinite values \(e\.g\. inf in example 5\)",
        ),
        (
            lambda m, d: m.evaluate(_stream(d.test).map(lambda x: tf.strings.as_string(x)), verbose=0),
            "evaluate's x: elements must be numeric tensors",
        ),
        (
            lambda m, d: m.fit([*d.train[:3], d.train[3, :10]], verbose=0),
            r"fit's x: the list's examples differ in shape: example 0 has shape \(64,\), example 3 has shape \(10,\)",
        ),
        (
            lambda m, d: m.encode([list(d.test[0]), [*d.test[1, :63], [0.0]]]),
            r"encode's x: the list's examples differ in shape: .* example 1 has shapes that differ inside it",
        ),
        (lambda m, d: m.latent_code([["0.5"] * 63 + ["a"]]), r"latent_code's x: .* not numbers \(.*'a'\)"),
        (
            lambda m, d: m.fit(d.train, sample_weight=np.ones(len(d.train)), verbose=0),
            r"fit's sample_weight: tfvae's objectives .* take no per-example weights",
        ),
        (
            lambda m, d: m.fit(
                tf.data.Dataset.from_tensor_slices((d.train, d.train[:, 0], np.ones(len(d.train)))).batch(64), verbose=0
            ),
            r"a dataset of \(x, labels, sample_weight\) triples: tfvae's objectives",
        ),
        (lambda m, d: m.elbo(d.test[:3], num_samples=0), r"`num_samples` must be a positive integer; got 0"),
        (lambda m, d: m.sample(2, seed="a"), r"seed must be None, an int in \[-2\*\*31, 2\*\*63\) .*got 'a'"),
        (lambda m, d: m.sample(2, seed=2**63), r"seed must be None, an int .*got 9223372036854775808"),
        (
            lambda m, d: m.compile(loss="mse"),
            r"compile's loss='mse': VAE trains on its own objective \(negative ELBO\)",
        ),
        (lambda m, d: m.compile(metrics=["mae"]), r"compile's metrics=\['mae'\]: .* leave out metrics"),
        # Keras' export refused a trained model ("never called"); after a call, its
        # SavedModel failed to load and its ONNX graph was refused by ONNX Runtime.
        (lambda m, d: m.export("unused", format="onnx"), r"VAE.export \('onnx' .*use tfvae.export\(model"),
    ],
    ids=[
        "decode-size",
        "sample-negative",
        "labels-on-a-vae",
        "example-shape",
        "nan",
        "bernoulli-range",
        "validation-range",
        "evaluate-shape",
        "elbo-range",
        "one-example",
        "log-likelihood-of-a-dataset",
        "encode-shape",
        "predict-shape",
        "labels-as-a-list",
        "unbatched-stream",
        "stream-shape",
        "stream-range",
        "validation-stream-inf",
        "stream-dtype",
        "ragged-list",
        "ragged-inside-an-example",
        "list-of-strings",
        "sample-weight",
        "weighted-dataset",
        "elbo-no-samples",
        "seed-string",
        "seed-too-large",
        "compile-loss",
        "compile-metrics",
        "keras-export",
    ],
)
def test_mistakes_at_the_api_edge_name_the_cause(digits, call, message):
    with pytest.raises(tfvae.TfvaeError, match=message):
        call(tiny_vae(), digits)


def _stream(x):
    return tf.data.Dataset.from_tensor_slices(x).batch(64)


def _with(x, index, value):
    """A copy of x with one value replaced."""
    x = x.copy()
    x[index] = value
    return x


@pytest.mark.slow
def test_a_conditional_stream_with_labels_out_of_range_is_refused_naming_the_batch(digits):
    model = tfvae.ConditionalVAE((64,), num_classes=10, latent_dim=3, hidden_units=(16,), seed=0)
    model.compile()
    labels = digits.labels["train"][:128].copy()
    labels[64 + 9] = 10
    stream = tf.data.Dataset.from_tensor_slices((digits.train[:128], labels)).batch(64)
    with pytest.raises(tfvae.DataError, match=r"batch 1: 1 labels lie outside \[0, 10\) \(e\.g\. 10 in example 9\)"):
        model.fit(stream, verbose=0)
    with pytest.raises(tfvae.DataError, match="labels must be integer class ids"):
        model.fit(stream.map(lambda x, y: (x, tf.cast(y, tf.float32))), verbose=0)
    one_hot = keras.utils.to_categorical(digits.labels["train"][:128], 10)
    with pytest.raises(tfvae.DataError, match=r"\(one-hot vectors: give their class ids, labels.argmax\(axis=-1\)\)"):
        model.fit(tf.data.Dataset.from_tensor_slices((digits.train[:128], one_hot)).batch(64), verbose=0)
    with pytest.raises(tfvae.ConfigError, match=r"got shape \(128, 10\) \(one-hot vectors"):
        model.fit(digits.train[:128], one_hot, verbose=0)
    history = model.fit(stream.map(lambda x, y: (x, y % 10)), epochs=2, verbose=0).history  # in range: trains
    assert history["loss"][-1] < history["loss"][0]
