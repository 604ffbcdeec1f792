"""The PixelCNN likelihood: causal features, a normalised probability of images, exact
cached sampling from noise, and a VAE that trains, evaluates in bits/dim, round-trips and exports
its generator with it."""

import itertools
import json
import os
import pathlib

import keras
import numpy as np
import onnx
import pytest
import tensorflow as tf

import tfvae
import tfvae.cli
import tfvae.training
from tfvae.distributions import CoupledLogisticMixture, PixelCNNLikelihood
from tfvae.onnx_loops import hoist_loop_invariants
from tfvae.pixelcnn import PixelCNN
from tfvae.serving.repository import load_repository


def images(rng, count, shape, levels=256):
    return rng.integers(0, levels, size=(count, *shape)).astype(np.float32)


def test_pixelcnn_features_at_a_pixel_read_only_the_pixels_before_it_within_its_rows():
    network = PixelCNN(8, num_blocks=2)
    height, width = 9, 7
    x = images(np.random.default_rng(0), 1, (height, width, 2))
    base = network(x).numpy()
    for i, j in [(0, 0), (2, 3), (4, 5), (7, 2)]:
        changed = x.copy()
        changed[0, i, j, 1] += 40.0
        # oneDNN's convolutions mix neighbouring outputs' rounding (about 1e-6 here);
        # what a pixel reads moves its features by 1e-3 and more.
        moved = np.abs(network(changed).numpy() - base).max(axis=-1)[0] > 1e-4  # [H, W]
        position = np.arange(height * width).reshape(height, width)
        # Nothing at or before (i, j) in raster order moves: the features are causal.
        assert not moved[position <= i * width + j].any()
        # The pixels right of it and below it read it: no blind spot.
        assert moved[i, j + 1] and moved[i + 1, j]


@pytest.mark.parametrize("blocks", [1, 3])
def test_drawing_gives_each_pixel_the_features_of_the_whole_network_on_the_image_drawn_before_it(blocks):
    rng = np.random.default_rng(0)
    network = PixelCNN(6, num_blocks=blocks)
    x = tf.constant(images(rng, 2, (7, 9, 3)))
    network(x)
    # Weights of one scale: at Keras' initial ones each gate starts near 0, and a layer
    # read at the wrong place would move the features too little to see.
    for weight in network.weights:
        weight.assign(rng.normal(0.0, 0.3, weight.shape).astype(np.float32))
    features = np.zeros((2, 7, 9, 6), np.float32)

    def pixel_of(pixel_features, i, j):  # "draws" x itself, keeping each pixel's features
        features[:, int(i), int(j)] = pixel_features.numpy()
        return x[:, i, j]

    drawn = network.draw(tf.constant(2), (7, 9, 3), pixel_of)  # eager: the loops run in Python
    np.testing.assert_array_equal(drawn, x)
    # A layer cached one pixel or one row off, or a missed edge's padding, moves the
    # features by 0.1 and more; float rounding in the other order of sums, by 1e-5.
    np.testing.assert_allclose(features, network(x), rtol=0, atol=1e-4)


def test_drawing_traced_with_a_known_batch_size_keeps_it():
    # A Keras model's call traces its inputs' static shapes; a loop state made inside a
    # loop's body loses the batch size, and `tf.while_loop` then refuses the loop.
    network = PixelCNN(4, num_blocks=1)
    network.build((None, 5, 4, 3))
    seen = []

    def pixel_of(features, i, j):
        seen.append(features.shape)
        return tf.zeros_like(features[:, :3])

    draw = tf.function(lambda x: network.draw(tf.shape(x)[0], (5, 4, 3), pixel_of))
    assert draw(tf.zeros([2, 5, 4, 3])).shape == (2, 5, 4, 3)
    assert seen == [(2, 4)]


def test_an_autoregressive_image_is_a_probability_of_every_image():
    levels = 16
    likelihood = PixelCNNLikelihood(
        (2, 2, 1), num_components=2, num_levels=levels, filters=4, num_blocks=1, initial_scale=1.0
    )
    conditioning = tf.random.normal([2, 2, 1, likelihood.latent_features], seed=1)
    every = np.array(list(itertools.product(range(levels), repeat=4)), np.float32).reshape(-1, 2, 2, 1)
    log_p = likelihood(conditioning).log_prob(every).numpy()  # every 2×2 image of 16 levels
    assert log_p.shape == (levels**4,)
    assert np.exp(log_p.astype(np.float64)).sum() == pytest.approx(1.0, abs=1e-4)


def test_log_prob_over_samples_of_z_equals_each_sample_alone():
    likelihood = PixelCNNLikelihood((5, 4, 3), num_components=2, filters=8, num_blocks=1)
    conditioning = tf.random.normal([3, 2, 5, 4, 3, likelihood.latent_features], seed=2)  # [samples, batch, ...]
    x = images(np.random.default_rng(1), 2, (5, 4, 3))
    together = likelihood(conditioning).log_prob(x).numpy()
    alone = np.stack([likelihood(conditioning[s]).log_prob(x).numpy() for s in range(3)])
    assert together.shape == (3, 2)
    np.testing.assert_allclose(together, alone, rtol=1e-6)


def test_importance_sampling_runs_the_masked_network_once_per_batch_of_examples():
    """Each step of samples runs the decoder and the head alone: the masked network's
    features of x (and the encoder's output) are computed once per batch of examples.
    The estimate equals the log-mean-exp of the log weights computed the plain way."""
    likelihood = PixelCNNLikelihood((6, 5, 3), num_components=2, filters=8, num_blocks=1)
    model = tfvae.VAE((6, 5, 3), 4, hidden_units=(8,), likelihood=likelihood, seed=0)  # dense networks
    x = images(np.random.default_rng(5), 3, (6, 5, 3))
    estimate = model.log_likelihood(x, num_samples=40, sample_batch_size=7, seed=1)  # 6 steps
    noise = tfvae.seeding.ExampleNoise.of(1, x)
    log_weights = model._sampled_terms(tf.constant(x), None, 40, noise)[0].log_weights  # [40, 3]
    np.testing.assert_allclose(estimate, tf.reduce_logsumexp(log_weights, 0) - np.log(40), rtol=1e-6)
    observed = model._observed(tf.constant(x), None)
    step = model._chunk_log_sum_exp.get_concrete_function(tf.constant(x), None, 7, noise, observed)
    once = model._observed.get_concrete_function(tf.constant(x), None)
    assert "Conv2D" in {op.type for op in once.graph.get_operations()}
    assert "Conv2D" not in {op.type for op in step.graph.get_operations()}


def test_the_greedy_mean_drawn_pixel_by_pixel_is_each_pixels_mean_given_the_full_image():
    likelihood = PixelCNNLikelihood((10, 11, 3), num_components=3, filters=8, num_blocks=1)
    conditioning = tf.random.normal([2, 10, 11, 3, likelihood.latent_features], seed=3)
    mean = likelihood(conditioning).mean()
    pixels = likelihood.pixel_mixture(likelihood.context_of(mean), likelihood(conditioning).conditioning)
    np.testing.assert_allclose(pixels.mean().numpy(), mean.numpy(), rtol=0, atol=3e-4)


def test_samples_follow_the_probabilities_of_the_images_and_repeat_with_their_seed():
    levels = 4
    likelihood = PixelCNNLikelihood(
        (1, 2, 1), num_components=2, num_levels=levels, filters=4, num_blocks=1, initial_scale=0.5
    )
    p_x = likelihood(tf.random.normal([1, 2, 1, likelihood.latent_features], seed=4))
    n = 20_000
    draws = p_x.sample(n, seed=(5, 6)).numpy().astype(int).reshape(n, 2)
    np.testing.assert_array_equal(p_x.sample(3, seed=(5, 6)).numpy(), p_x.sample(3, seed=(5, 6)).numpy())
    assert not np.array_equal(p_x.sample(50, seed=(5, 6)).numpy(), p_x.sample(50, seed=(5, 7)).numpy())
    every = np.array(list(itertools.product(range(levels), repeat=2)), np.float32)
    p = np.exp(p_x.log_prob(every.reshape(-1, 1, 2, 1)).numpy())
    counts = np.bincount(draws[:, 0] * levels + draws[:, 1], minlength=levels**2)
    # Drawing the second pixel without reading the first moves several images far outside.
    np.testing.assert_array_less(np.abs(counts / n - p), 5 * np.sqrt(p * (1 - p) / n) + 1e-4)


def test_a_pixels_draw_from_uniforms_is_the_inverse_cdf_of_its_discretised_logistic():
    # One channel, one component at loc 0 and scale 1: y = -0.5 + logit(u), drawn as ceil(y).
    pixel = CoupledLogisticMixture(tf.zeros([1]), tf.zeros([1, 1]), tf.ones([1, 1]), tf.zeros([1, 1, 1]))
    noise = tf.constant([[0.3, 0.5], [0.3, 0.9], [0.3, 0.01], [0.3, 0.999]])
    values, near = pixel.sample_of_noise(noise)
    np.testing.assert_array_equal(values.numpy()[:, 0], [0.0, 2.0, 0.0, 7.0])  # ceil(-0.5), ceil(1.70), .., ceil(6.41)
    assert not np.signbit(values.numpy()).any()  # ceil(-0.5) is -0.0, which JSON would spell out
    np.testing.assert_array_equal(near, [False, False, False, False])


def test_a_drawn_image_is_each_pixels_draw_given_the_pixels_before_it_and_sample_draws_that_way():
    likelihood = PixelCNNLikelihood((10, 11, 3), num_components=3, filters=8, num_blocks=1)
    p_x = likelihood(tf.random.normal([2, 10, 11, 3, likelihood.latent_features], seed=3))
    noise = tf.random.stateless_uniform([2, *likelihood.noise_shape], seed=(7, 8))
    x = p_x.sample_of_noise(noise)  # pixel by pixel, from the cached layers
    values, near = p_x.draws_given(x, noise)  # one pass over the whole image
    assert near.numpy().mean() < 0.1
    decisive = ~near.numpy()
    # Reading a pixel's cached layers wrong, or another pixel's noise, changes most draws.
    np.testing.assert_array_equal(values.numpy()[decisive], x.numpy()[decisive])
    assert np.array_equal(x, np.round(x)) and 0 <= x.numpy().min() and x.numpy().max() <= 255
    # `sample` is the same loop on uniforms drawn from its seed.
    seeded = tf.random.stateless_uniform([1, 2, *likelihood.noise_shape], seed=(9, 10))
    np.testing.assert_array_equal(p_x.sample(1, seed=(9, 10)), p_x.sample_of_noise(seeded[0])[None])


@pytest.fixture(scope="module")
def colour_images():
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(0)
    grey = load_digits().data[:120].reshape(120, 8, 8, 1) * 15
    return np.clip(grey + rng.integers(-5, 6, size=(120, 8, 8, 3)), 0, 255).astype(np.float32)


@pytest.mark.slow
def test_a_vae_with_a_pixelcnn_decoder_trains_bounds_and_round_trips(colour_images, tmp_path):
    keras.utils.set_random_seed(0)
    shape = (8, 8, 3)
    likelihood = PixelCNNLikelihood(shape, num_components=2, filters=8, num_blocks=1, latent_features=2)
    vae = tfvae.VAE(shape, 4, arch="conv", filters=(8,), hidden_units=(16,), likelihood=likelihood, seed=0)
    vae.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = vae.fit(colour_images[:100], epochs=3, batch_size=20, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    test = colour_images[100:]
    report = tfvae.evaluate(vae, test, num_samples=50, seed=0)
    # log p(x) >= ELBO, both true probabilities of the 8-bit images.
    assert report["likelihood_of"] == "probability"
    assert report["nll"] <= report["elbo"] * -1 + 1e-3
    assert report["nll_bits_per_dim"] == pytest.approx(report["nll"] / (8 * 8 * 3 * np.log(2)), rel=1e-6)
    path = str(tmp_path / "pixelcnn.keras")
    vae.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_array_equal(restored.elbo(test, seed=1), vae.elbo(test, seed=1))
    samples = restored.sample(3, seed=0).numpy()
    assert samples.shape == (3, 8, 8, 3) and samples.min() >= 0 and samples.max() <= 255
    draws = restored.sample(3, seed=0, draw=True).numpy()
    assert draws.shape == (3, 8, 8, 3) and np.array_equal(draws, np.round(draws)) and draws.max() <= 255


@pytest.mark.slow
def test_the_cli_trains_a_pixelcnn_decoder_reports_bits_per_dim_and_exports_a_generator_that_serves(
    colour_images, tmp_path, capsys
):
    data = str(tmp_path / "colour.npz")
    np.savez(data, train=colour_images[:80].astype(np.uint8), test=colour_images[80:].astype(np.uint8))
    run = str(tmp_path / "run")
    argv = ["train", "--data", data, "--likelihood", "pixelcnn_logistic_mixture", "--mixture-components", "2"]
    argv += ["--pixelcnn-filters", "4", "--pixelcnn-blocks", "1", "--pixelcnn-dropout", "0.5"]
    argv += ["--arch", "conv", "--filters", "4"]
    argv += ["--hidden-units", "16", "--latent-dim", "4", "--epochs", "2", "--batch-size", "20"]
    assert tfvae.cli.main([*argv, "--out", run, "--quiet", "--no-pictures"]) == 0
    model = tfvae.training.load_run(run)
    layer = model.likelihood_layer
    assert (layer.filters, layer.num_blocks, layer.dropout, layer.network.dropout) == (4, 1, 0.5, 0.5)
    capsys.readouterr()
    assert tfvae.cli.main(["evaluate", run, "--num-samples", "10", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])  # "ends stdout with one JSON line"
    assert report["likelihood_of"] == "probability"
    assert report["nll_bits_per_dim"] == pytest.approx(report["nll"] / (8 * 8 * 3 * np.log(2)), rel=1e-6)
    exported = str(tmp_path / "exported")
    assert tfvae.cli.main(["export", run, "--name", "pixels", "--out", exported]) == 0
    import onnxruntime

    encoder = onnxruntime.InferenceSession(os.path.join(exported, "pixels_encoder", "1", "model.onnx"))
    x = colour_images[80:85]
    loc, _ = encoder.run(["loc", "scale"], {"x": x})
    np.testing.assert_allclose(loc, model.encode(x).mean().numpy(), rtol=1e-5, atol=1e-5)
    # The generator: z and uniform noise in, the image they draw out, in every runtime.
    rng = np.random.default_rng(0)
    z = rng.standard_normal((6, 4)).astype(np.float32)
    noise = rng.uniform(size=(6, 8, 8, 4)).astype(np.float32)
    in_keras = model.decoder_outputs(tf.constant(z), noise=tf.constant(noise))["x"].numpy()
    folder = os.path.join(exported, "pixels", "1")
    (in_onnx,) = onnxruntime.InferenceSession(os.path.join(folder, "model.onnx")).run(["x"], {"z": z, "noise": noise})
    in_savedmodel = tf.saved_model.load(folder).signatures["serving_default"](z=z, noise=noise)["x"].numpy()
    for drawn in (in_keras, in_onnx, in_savedmodel):
        values, near = model.decoder_draws_given(tf.constant(z), tf.constant(noise), tf.constant(drawn))
        assert near.numpy().mean() < 0.1
        np.testing.assert_array_equal(drawn[~near.numpy()], values.numpy()[~near.numpy()])
    # Where no draw sits on a boundary the runtimes agree on whole images.
    assert np.mean(in_onnx == in_keras) > 0.9
    # The weights are not carried from pixel to pixel: the loop holds no invariant left to move.
    assert hoist_loop_invariants(onnx.load(os.path.join(folder, "model.onnx"))) == (0, 0)
    # Each pixel's step reads its column with a gather: no Slice in the pixel loop has bounds
    # made inside it (tf2onnx builds those of `x[:, j]` from some 12 nodes, at every pixel).
    pixel_loop = innermost_loop_body(onnx.load(os.path.join(folder, "model.onnx")).graph)
    made_inside = {name for node in pixel_loop.node for name in node.output}
    assert not [n.name for n in pixel_loop.node if n.op_type == "Slice" and set(n.input[1:3]) & made_inside]
    manifest = json.load(open(os.path.join(folder, "manifest.json")))
    assert manifest["decoder_noise"] == {"distribution": "uniform", "shape": [8, 8, 4]}
    # The generator runs on one ONNX Runtime thread, served and in Triton; the encoder on all.
    thread_count = 'parameters { key: "intra_op_thread_count" value: { string_value: "1" } }'
    assert thread_count in pathlib.Path(exported, "pixels", "config.pbtxt").read_text()
    assert "parameters" not in pathlib.Path(exported, "pixels_encoder", "config.pbtxt").read_text()

    def threads(models, name):
        return models[name]["1"].backend.session.get_session_options().intra_op_num_threads

    models = load_repository(exported).models
    assert (threads(models, "pixels"), threads(models, "pixels_encoder")) == (1, os.cpu_count())
    models = load_repository(exported, threads=3).models  # a user's --threads wins
    assert (threads(models, "pixels"), threads(models, "pixels_encoder")) == (3, 3)
    # A second version of the generator has the first one's interface: the config's
    # thread count is no part of it.
    assert tfvae.cli.main(["export", run, "--name", "pixels", "--out", exported]) == 0
    assert sorted(os.listdir(os.path.join(exported, "pixels"))) == ["1", "2", "config.pbtxt"]
    assert manifest["parts"]["decoder"]["signatures"]["serving_default"] == ["x"]
    assert manifest["parts"]["decoder"]["onnx_max_abs_difference"] == 0.0
    # The server draws the noise itself for :generate, and answers the images.
    from starlette.testclient import TestClient

    from tfvae.serving.app import create_app
    from tfvae.serving.service import ServerConfig

    with TestClient(create_app(ServerConfig(export_dir=exported))) as client:
        answers = [client.post("/v1/models/pixels:generate", json={"n": 2, "seed": 3}).json() for _ in range(2)]
        unseeded = client.post("/v1/models/pixels:generate", json={"n": 2}).json()
        repeated = client.post("/v1/models/pixels:generate", json={"n": 2, "seed": unseeded["seed"]}).json()
    samples = np.array(answers[0]["samples"])
    assert samples.shape == (2, 8, 8, 3) and np.array_equal(samples, np.round(samples)) and samples.max() <= 255
    assert answers[0] == answers[1]  # the seed draws z and the pixels' noise
    assert repeated == unseeded  # the seed an unseeded answer names draws both again


def innermost_loop_body(graph):
    """The body of the most deeply nested ONNX `Loop` in `graph`."""
    return _deepest(graph)[1]


def _deepest(graph):
    """`(depth, body)` of the most deeply nested `Loop` body in `graph`; `(0, graph)` without one."""
    bodies = [a.g for node in graph.node if node.op_type == "Loop" for a in node.attribute if a.name == "body"]
    return max(((depth + 1, body) for depth, body in map(_deepest, bodies)), default=(0, graph), key=lambda p: p[0])
