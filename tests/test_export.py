"""Export: every runtime reproduces the Keras model; writes are versioned and atomic."""

import hashlib
import json
import os

import numpy as np
import onnx
import onnxruntime
import pytest
import tensorflow as tf
from helpers import built_in_mixed_precision, tiny_vae, trained_conditional_and_autoencoder
from onnx.reference import ReferenceEvaluator

import tfvae
from tfvae import cli
from tfvae import exporting as export_lib

BATCH_SIZES = (1, 7, 256)
TOLERANCE = 1e-5


def trained(digits, **kwargs):
    model = tiny_vae(latent_dim=4, **kwargs)
    x = digits.train[:512]
    levels = model.likelihood_layer.data_levels
    model.fit(np.round(x * (levels - 1)) if levels else x, epochs=1, batch_size=64, verbose=0)
    return model


def keras_outputs(model, part, inputs):
    if part == "decoder":
        likelihood = model.decode(inputs)
        return {"mean": likelihood.mean(), **model.likelihood_layer.parameters_of(likelihood)}
    return model.posterior_layer.parameters_of(model.encode(inputs))


def part_inputs(model, part, batch):
    rng = np.random.default_rng(batch)
    if part == "decoder":
        return rng.normal(size=(batch, model.latent_dim)).astype(np.float32)
    return (rng.random((batch, *model.network_config.input_shape)) > 0.5).astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param(dict(), id="mlp-diagonal"),
        # Dropout is training's alone: the exports run the whole network, as Keras evaluates it.
        pytest.param(dict(posterior="full", dropout=0.5), id="mlp-full-dropout"),
        pytest.param(
            dict(arch="conv", filters=(4, 8), hidden_units=(16,), residual_blocks=1),
            id="conv-residual",
            marks=pytest.mark.slow,
        ),
        pytest.param(dict(likelihood="gaussian"), id="gaussian-likelihood"),
        # Both standardise x inside the encoder (Keras' Normalization, whose statistics
        # the traced function captures as constants): tf2onnx made them ONNX inputs.
        pytest.param(dict(likelihood="discretized_logistic_mixture"), id="8-bit"),
        pytest.param(
            dict(likelihood=tfvae.GaussianLikelihood((64,), data_loc=np.full(64, 0.3), data_scale=np.full(64, 0.4))),
            id="standardised-table",
        ),
    ],
)
def test_savedmodel_onnxruntime_and_reference_match_keras(digits, tmp_path, kwargs):
    model = trained(digits, **kwargs)
    result = tfvae.export(model, str(tmp_path), "gen")
    assert result.version == 1
    for part, folder in result.paths.items():
        saved = tf.saved_model.load(folder)
        onnx_path = os.path.join(folder, "model.onnx")
        proto = onnx.load(onnx_path)
        onnx.checker.check_model(proto, full_check=True)
        assert proto.opset_import[0].version == export_lib.ONNX_OPSET
        session = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        reference = ReferenceEvaluator(proto)
        input_name = "z" if part == "decoder" else "x"
        signatures = result.manifest["parts"][part]["signatures"]
        for batch in BATCH_SIZES:
            inputs = part_inputs(model, part, batch)
            expected = {k: v.numpy() for k, v in keras_outputs(model, part, inputs).items()}
            from_saved = {}
            for signature, names in signatures.items():
                outputs = saved.signatures[signature](**{input_name: tf.constant(inputs)})
                assert sorted(outputs) == sorted(names)
                from_saved.update({k: v.numpy() for k, v in outputs.items()})
            names = [o.name for o in session.get_outputs()]
            from_ort = dict(zip(names, session.run(names, {input_name: inputs})))
            from_reference = dict(zip(names, reference.run(names, {input_name: inputs})))
            for runtime, got in (
                ("savedmodel", from_saved),
                ("onnxruntime", from_ort),
                ("onnx.reference", from_reference),
            ):
                assert sorted(got) == sorted(expected), runtime
                for key in expected:
                    assert got[key].shape == expected[key].shape
                    # 1e-5 relative beyond 1: an 8-bit model's means are levels up to 255,
                    # where float32's spacing alone is 1.5e-5.
                    difference = np.max(np.abs(got[key] - expected[key]) / np.maximum(1.0, np.abs(expected[key])))
                    assert difference <= TOLERANCE, f"{part}/{key} via {runtime} at batch {batch}: {difference}"


@pytest.mark.slow
@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: tiny_vae(latent_dim=4), id="vae"),
        pytest.param(lambda: tfvae.HierarchicalVAE((64,), latent_dims=(4, 3), hidden_units=(32,)), id="hierarchy"),
    ],
)
def test_a_model_trained_in_mixed_precision_exports_in_float32_with_its_weights(digits, tmp_path, build):
    model = built_in_mixed_precision(build)
    model.fit(digits.train[:512], epochs=1, batch_size=64, verbose=0)
    result = tfvae.export(model, str(tmp_path), "gen")  # tf2onnx's bfloat16 graph failed ONNX's checker
    copy = export_lib.computing_in_float32(model)
    assert {layer.compute_dtype for layer in copy._flatten_layers()} == {"float32"}
    z = np.random.default_rng(0).normal(size=(16, model.latent_dim)).astype(np.float32)
    session = onnxruntime.InferenceSession(
        os.path.join(result.paths["decoder"], "model.onnx"), providers=["CPUExecutionProvider"]
    )
    (mean,) = session.run(["mean"], {"z": z})
    np.testing.assert_allclose(mean, copy.decoder_outputs(z)["mean"].numpy(), atol=TOLERANCE)
    # The model's own weights, computed in bfloat16 (8 bits of mantissa) by the model.
    np.testing.assert_allclose(mean, model.decoder_outputs(z)["mean"].numpy(), atol=0.02)


@pytest.mark.slow
def test_decoder_serving_default_has_one_output_the_mean(digits, tmp_path):
    model = trained(digits)
    result = tfvae.export(model, str(tmp_path), "gen", parts=("decoder",))
    assert set(result.paths) == {"decoder"}
    saved = tf.saved_model.load(result.paths["decoder"])
    outputs = saved.signatures["serving_default"].structured_outputs
    assert list(outputs) == ["mean"]
    z = part_inputs(model, "decoder", 3)
    probabilities = saved.signatures["serving_default"](z=tf.constant(z))["mean"].numpy()
    assert probabilities.min() >= 0 and probabilities.max() <= 1  # Bernoulli: probabilities
    logits = saved.signatures["params"](z=tf.constant(z))["logits"].numpy()
    np.testing.assert_allclose(probabilities, 1 / (1 + np.exp(-logits)), atol=1e-6)


@pytest.mark.slow
def test_an_export_logs_no_tensorflow_deprecation(digits, tmp_path, monkeypatch, caplog):
    from tensorflow.python.util import deprecation

    model = trained(digits)
    # TF logs each deprecation once per process: forget those an earlier test printed.
    monkeypatch.setattr(deprecation, "_PRINTED_WARNING", {})
    with caplog.at_level("WARNING"):
        tfvae.export(model, str(tmp_path), "gen", parts=("decoder",))
    assert not [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]


@pytest.mark.slow
def test_manifest_triton_config_and_layout(digits, tmp_path):
    model = trained(digits, posterior="full")
    result = tfvae.export(model, str(tmp_path), "gen")
    for part, folder in result.paths.items():
        with open(os.path.join(folder, "manifest.json")) as f:
            manifest = json.load(f)
        assert manifest == json.loads(json.dumps(result.manifest))
        assert manifest["latent_dim"] == 4 and manifest["likelihood"] == "bernoulli"
        assert manifest["conditional"] is False and manifest["posterior"] == "full"
        assert manifest["prior"] == {"distribution": "standard_normal"}
        assert {"tfvae", "tensorflow", "onnx", "onnxruntime", "tf2onnx", "keras"} <= set(manifest["versions"])
        entry = manifest["parts"][part]
        assert entry["path"] == os.path.relpath(folder, str(tmp_path))
        assert set(entry["files"]) >= {"saved_model.pb", "model.onnx", "variables/variables.index"}
        for relative, digest in entry["files"].items():
            with open(os.path.join(folder, relative), "rb") as f:
                assert hashlib.sha256(f.read()).hexdigest() == digest
        with open(os.path.join(str(tmp_path), entry["model_name"], "config.pbtxt")) as f:
            config = f.read()
        assert f'name: "{entry["model_name"]}"' in config and 'backend: "onnxruntime"' in config
        assert "max_batch_size: 256" in config and "dynamic_batching" in config
        for tensor in entry["inputs"] + entry["outputs"]:
            dims = ", ".join(str(d) for d in tensor["shape"][1:])
            assert f'name: "{tensor["name"]}" data_type: TYPE_FP32 dims: [ {dims} ]' in config
    assert result.manifest["parts"]["encoder"]["outputs"][1] == {
        "name": "scale_tril",
        "datatype": "float32",
        "shape": ["batch", 4, 4],
    }
    assert sorted(os.listdir(tmp_path)) == ["gen", "gen_encoder"]  # nothing else left behind


@pytest.mark.slow
def test_versions_increment_and_overwrite_needs_consent(digits, tmp_path):
    first, second = trained(digits), trained(digits, hidden_units=(16,))
    assert tfvae.export(first, str(tmp_path), "gen", parts=("decoder",)).version == 1
    assert tfvae.export(first, str(tmp_path), "gen", parts=("decoder",)).version == 2
    before = sorted(os.listdir(tmp_path / "gen"))
    with pytest.raises(tfvae.ExportError, match="Version 1 of gen already exists"):
        tfvae.export(second, str(tmp_path), "gen", version=1, parts=("decoder",))
    assert sorted(os.listdir(tmp_path / "gen")) == before
    tfvae.export(second, str(tmp_path), "gen", version=1, parts=("decoder",), overwrite=True)
    assert sorted(os.listdir(tmp_path / "gen")) == before
    z = part_inputs(second, "decoder", 5)
    replaced = tf.saved_model.load(str(tmp_path / "gen" / "1")).signatures["serving_default"](z=tf.constant(z))
    np.testing.assert_allclose(replaced["mean"].numpy(), second.decode(z).mean().numpy(), atol=TOLERANCE)


@pytest.mark.slow
def test_a_version_of_other_tensors_is_refused_as_triton_reads_one_config_per_model(digits, tmp_path):
    first, wider = trained(digits), trained(digits, hidden_units=(16,), posterior="full")
    tfvae.export(first, str(tmp_path), "gen")
    before = {name: sorted(os.listdir(tmp_path / name)) for name in ("gen", "gen_encoder")}
    config = (tmp_path / "gen" / "config.pbtxt").read_text()
    with pytest.raises(
        tfvae.ExportError,
        match=r"gen_encoder holds version\(s\) 1 of other tensors than this encoder .*scale_tril float32 \[batch, 4, 4",
    ):
        tfvae.export(wider, str(tmp_path), "gen")
    with pytest.raises(tfvae.ExportError, match=r"gen_encoder holds version\(s\) 1 of other tensors than this decoder"):
        tfvae.export(first, str(tmp_path), "gen_encoder", parts=("decoder",))  # the encoder's name
    assert {name: sorted(os.listdir(tmp_path / name)) for name in ("gen", "gen_encoder")} == before
    assert (tmp_path / "gen" / "config.pbtxt").read_text() == config
    assert tfvae.export(first, str(tmp_path), "gen").version == 2  # the same tensors: the next version
    tfvae.export(wider, str(tmp_path / "alone"), "gen")
    tfvae.export(first, str(tmp_path / "alone"), "gen", version=1, overwrite=True)  # replaces the only version


@pytest.mark.slow
def test_an_interrupted_export_leaves_no_half_model(digits, tmp_path, monkeypatch):
    model = trained(digits)
    tfvae.export(model, str(tmp_path), "gen")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(export_lib, "_write_onnx", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tfvae.export(model, str(tmp_path), "gen")
    assert sorted(os.listdir(tmp_path / "gen")) == ["1", "config.pbtxt"]
    assert sorted(os.listdir(tmp_path / "gen_encoder")) == ["1", "config.pbtxt"]


def _dead_pid():
    import subprocess

    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.mark.slow
def test_an_export_killed_between_its_parts_is_never_served_half_and_the_next_one_cleans_up(
    digits, tmp_path, monkeypatch
):
    from tfvae.serving.repository import load_repository

    model = trained(digits)
    tfvae.export(model, str(tmp_path), "gen")
    stale = tmp_path / "gen" / f".staging-{_dead_pid()}-2-x"  # what a kill -9 leaves
    os.makedirs(stale / "variables")
    commits = []

    def killed_after_the_decoder(staging, final, overwrite):
        if commits:
            raise KeyboardInterrupt
        commits.append(final)
        os.rename(staging, final)

    with monkeypatch.context() as patch:
        patch.setattr(export_lib, "_commit", killed_after_the_decoder)
        with pytest.raises(KeyboardInterrupt):
            tfvae.export(model, str(tmp_path), "gen")
    assert os.path.isdir(tmp_path / "gen" / "2") and not os.path.exists(tmp_path / "gen" / "2" / "manifest.json")
    assert not os.path.exists(tmp_path / "gen_encoder" / "2")
    served = load_repository(str(tmp_path))
    assert {name: sorted(v) for name, v in served.models.items()} == {"gen": ["1"], "gen_encoder": ["1"]}
    assert served.refused == {}  # a version without a manifest was never exported whole

    manifests = []
    real_write = export_lib.files.write_text

    def killed_between_the_manifests(path, text):
        if path.endswith("manifest.json") and manifests:
            raise KeyboardInterrupt
        manifests.append(path)
        real_write(path, text)

    with monkeypatch.context() as patch:
        patch.setattr(export_lib.files, "write_text", killed_between_the_manifests)
        with pytest.raises(KeyboardInterrupt):
            tfvae.export(model, str(tmp_path), "gen")
    assert not stale.exists()  # removed by the next export: its process is gone
    served = load_repository(str(tmp_path))
    assert sorted(served.models["gen"]) == ["1"] and sorted(served.models["gen_encoder"]) == ["1"]
    assert "the export is incomplete: its encoder (gen_encoder/3) has no manifest" in served.refused["gen"]
    assert tfvae.export(model, str(tmp_path), "gen").version == 4
    served = load_repository(str(tmp_path))
    assert sorted(served.models["gen"], key=int) == ["1", "4"] and served.refused == {}


@pytest.mark.slow
def test_versions_are_int64_and_a_refused_export_leaves_nothing(digits, tmp_path, monkeypatch, capsys):
    model = trained(digits)
    with pytest.raises(tfvae.ExportError, match=r"integer in \[1, 9223372036854775807\]"):
        tfvae.export(model, str(tmp_path), "gen", version=2**63)

    def disagrees(*args):
        raise tfvae.ExportError("the ONNX graph disagrees")

    monkeypatch.setattr(export_lib, "_check_onnx_parity", disagrees)
    with pytest.raises(tfvae.ExportError, match="disagrees"):
        tfvae.export(model, str(tmp_path / "repo"), "gen")
    assert os.listdir(tmp_path / "repo") == []


@pytest.mark.slow
def test_exported_savedmodel_maps_over_a_tf_data_pipeline(digits, tmp_path):
    model = trained(digits)
    result = tfvae.export(model, str(tmp_path), "gen")
    # Keep the loaded objects: a signature alone does not keep their variables alive.
    loaded_decoder = tf.saved_model.load(result.paths["decoder"])
    loaded_encoder = tf.saved_model.load(result.paths["encoder"])
    decoder = loaded_decoder.signatures["serving_default"]
    encoder = loaded_encoder.signatures["serving_default"]

    @tf.function
    def reconstruct(x):
        return decoder(z=encoder(x=x)["loc"])["mean"]

    pipeline = tf.data.Dataset.from_tensor_slices(digits.test).batch(32).map(reconstruct)
    got = np.concatenate(list(pipeline.as_numpy_iterator()))
    np.testing.assert_allclose(got, model.reconstruct(digits.test).numpy(), atol=TOLERANCE)


@pytest.mark.slow
def test_cli_export_writes_the_tree(tmp_path, capsys):
    run = str(tmp_path / "run")
    assert (
        cli.main(
            [
                "train",
                "--data",
                "digits",
                "--out",
                run,
                "--epochs",
                "1",
                "--latent-dim",
                "2",
                "--hidden-units",
                "16",
                "--quiet",
                "--no-pictures",
            ]
        )
        == 0
    )
    out = str(tmp_path / "repo")
    assert cli.main(["export", run, "--name", "digits", "--out", out]) == 0
    assert "wrote" in capsys.readouterr().out
    assert os.path.isfile(os.path.join(out, "digits", "1", "saved_model.pb"))
    assert os.path.isfile(os.path.join(out, "digits_encoder", "1", "model.onnx"))
    assert cli.main(["export", run, "--name", "digits", "--out", out, "--version", "1"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(["export", run, "--name", "digits", "--out", out, "--version", "1", "--overwrite"]) == 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["export", "{tmp}/missing", "--out", "{tmp}/repo"], "holds no model.keras"),
        (["export", "{tmp}/damaged", "--out", "{tmp}/repo"], "cannot be loaded as a tfvae model"),
        (["export", "{tmp}/damaged", "--name", "bad name", "--out", "{tmp}/repo"], "not usable as a folder"),
        (["export", "{tmp}/damaged", "--out", "{tmp}/afile/repo"], "Cannot write to the export folder"),
    ],
)
def test_cli_export_bad_input_is_one_line_and_writes_nothing(argv, message, tmp_path, capsys):
    os.makedirs(tmp_path / "damaged")
    (tmp_path / "damaged" / "model.keras").write_bytes(b"not a zip file")
    (tmp_path / "afile").write_text("a file, not a folder")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli.main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and message in error
    assert not os.path.exists(tmp_path / "repo" / "damaged")


def test_cli_export_rejects_an_unknown_part(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["export", "run", "--parts", "decoder,generator"])
    assert exit_info.value.code == 2
    assert "unknown part(s) generator" in capsys.readouterr().err


@pytest.mark.slow
def test_conditional_and_autoencoder_parts_export_with_their_inputs(digits, tmp_path):
    """A conditional model's parts take the labels as a second input; an autoencoder's encoder gives z."""
    conditional, autoencoder = trained_conditional_and_autoencoder(digits)
    rng = np.random.default_rng(0)
    z = rng.normal(size=(7, 4)).astype(np.float32)
    x, labels = digits.valid[:7], np.arange(7, dtype=np.int64)
    cases = [
        (conditional, "decoder", {"z": z, "labels": labels}, {"mean": conditional.decode(z, labels=labels).mean()}),
        (
            conditional,
            "encoder",
            {"x": x, "labels": labels},
            {
                "loc": conditional.encode(x, labels=labels).mean(),
                "scale": conditional.encode(x, labels=labels).stddev(),
            },
        ),
        (autoencoder, "decoder", {"z": z}, {"mean": autoencoder.decode(z).mean()}),
        (autoencoder, "encoder", {"x": x}, {"z": autoencoder.encode(x)}),
    ]
    for model, part, inputs, expected in cases:
        name = type(model).__name__.lower()
        result = tfvae.export(model, str(tmp_path), name, parts=(part,))
        folder = result.paths[part]
        entry = result.manifest["parts"][part]
        assert [t["name"] for t in entry["inputs"]] == list(inputs)
        assert result.manifest["conditional"] == model.conditional
        session = onnxruntime.InferenceSession(os.path.join(folder, "model.onnx"), providers=["CPUExecutionProvider"])
        saved = tf.saved_model.load(folder).signatures["serving_default"]
        from_saved = saved(**{k: tf.constant(v) for k, v in inputs.items()})
        for key, value in expected.items():
            assert np.max(np.abs(session.run([key], inputs)[0] - value.numpy())) <= TOLERANCE, (name, part, key)
            if key in from_saved:
                assert np.max(np.abs(from_saved[key].numpy() - value.numpy())) <= TOLERANCE
    with open(os.path.join(str(tmp_path), "conditionalvae", "config.pbtxt")) as f:
        config = f.read()
    assert '{ name: "labels" data_type: TYPE_INT64 dims: [ 1 ] reshape: { shape: [ ] } }' in config


def test_the_manifest_says_how_a_server_draws_from_each_prior():
    import tensorflow_probability as tfp

    from tfvae.exporting import prior_description

    class LaplacePrior(tfvae.Prior):  # a user's prior, which no server knows how to draw from
        def distribution(self):
            return tfp.distributions.Independent(tfp.distributions.Laplace(tf.zeros([3]), 1.0), 1)

    def described(prior):
        return prior_description(tfvae.VAE((64,), 3, hidden_units=(8,), prior=prior, seed=0))

    assert described("standard_normal") == {"distribution": "standard_normal"}
    vamp = {"distribution": "gaussian_mixture", "file": "prior.npz", "components": 4}
    assert described(tfvae.VampPrior(3, num_components=4)) == vamp
    assert described(LaplacePrior(3)) == {"distribution": "unsupported"}
    assert prior_description(tfvae.Autoencoder((64,), 3, hidden_units=(8,))) is None


def _loop_model(with_random=False, read_final_weights=False, scan_weights=False):
    """y = Σ over 4 iterations of x · Wᵀ, with W carried through the Loop unchanged, as
    tf2onnx writes a TensorFlow `While` that captures a weight."""
    from onnx import TensorProto, helper

    body_nodes = [
        helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        helper.make_node("Transpose", ["w_in"], ["w_t"], perm=[1, 0]),
        helper.make_node("MatMul", ["x", "w_t"], ["y"]),
    ]
    if with_random:  # reads no input, yet must draw anew each iteration
        body_nodes.append(helper.make_node("RandomUniform", [], ["u"], shape=[1, 2], seed=1.0))
        body_nodes.append(helper.make_node("Sum", ["acc_in", "y", "u"], ["acc_out"]))
    else:
        body_nodes.append(helper.make_node("Add", ["acc_in", "y"], ["acc_out"]))
    body = helper.make_graph(
        body_nodes,
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [1, 2]),
            helper.make_tensor_value_info("w_in", TensorProto.FLOAT, [2, 3]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [1, 2]),
            helper.make_tensor_value_info("w_in", TensorProto.FLOAT, [2, 3]),
            *([helper.make_tensor_value_info("w_in", TensorProto.FLOAT, [2, 3])] if scan_weights else []),
        ],
    )
    weights = np.arange(6, dtype=np.float32).reshape(2, 3)
    outputs = [helper.make_tensor_value_info("acc", TensorProto.FLOAT, [1, 2])]
    if read_final_weights:
        outputs.append(helper.make_tensor_value_info("w_final", TensorProto.FLOAT, [2, 3]))
    if scan_weights:
        outputs.append(helper.make_tensor_value_info("w_scan", TensorProto.FLOAT, [4, 2, 3]))
    loop_outputs = ["acc", "w_final", *(["w_scan"] if scan_weights else [])]
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trips", "go", "zeros", "w"], loop_outputs, body=body)],
        "loop",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        outputs,
        initializer=[
            onnx.numpy_helper.from_array(np.array(4, np.int64), "trips"),
            onnx.numpy_helper.from_array(np.array(True), "go"),
            onnx.numpy_helper.from_array(np.zeros((1, 2), np.float32), "zeros"),
            onnx.numpy_helper.from_array(weights, "w"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), weights


def test_loop_invariants_leave_the_loop_and_the_answer_stays_exact():
    from tfvae.onnx_loops import hoist_loop_invariants

    model, weights = _loop_model()
    x = np.array([[1.0, -2.0, 0.5]], np.float32)
    expected = 4 * x @ weights.T
    assert hoist_loop_invariants(model) == (1, 2)  # w no longer carried; Transpose and MatMul moved
    onnx.checker.check_model(model, full_check=True)
    (loop,) = [n for n in model.graph.node if n.op_type == "Loop"]
    body = loop.attribute[0].g
    assert [n.op_type for n in body.node] == ["Identity", "Add"]
    assert list(loop.input) == ["trips", "go", "zeros"] and list(loop.output) == ["acc"]
    (answer,) = onnxruntime.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    np.testing.assert_array_equal(answer, expected)
    # ONNX's reference implementation reads the moved values from the body's outer scope too.
    (answer,) = ReferenceEvaluator(model).run(None, {"x": x})
    np.testing.assert_array_equal(answer, expected)
    assert hoist_loop_invariants(model) == (0, 0)  # a fixed point


def test_invariants_of_a_loop_inside_a_loop_leave_both():
    """An outer Loop of 3 trips whose body runs an inner Loop of 4 on x · Wᵀ, W carried
    through both unchanged: the shape of a PixelCNN generator's rows and pixels."""
    from onnx import TensorProto, helper

    from tfvae.onnx_loops import hoist_loop_invariants

    def value(name, element, shape):
        return helper.make_tensor_value_info(name, element, shape)

    def loop_body(name, prefix, nodes, accumulated):
        inputs = [("i", TensorProto.INT64, []), ("cond_in", TensorProto.BOOL, [])]
        inputs += [("acc_in", TensorProto.FLOAT, [1, 2]), ("w_in", TensorProto.FLOAT, [2, 3])]
        outputs = [("cond_out", TensorProto.BOOL, []), ("acc_out", TensorProto.FLOAT, [1, 2])]
        nodes = [helper.make_node("Identity", [prefix + "cond_in"], [prefix + "cond_out"]), *nodes]
        nodes.append(helper.make_node("Add", [prefix + "acc_in", accumulated], [prefix + "acc_out"]))
        return helper.make_graph(
            nodes,
            name,
            [value(prefix + n, t, s) for n, t, s in inputs],
            [*(value(prefix + n, t, s) for n, t, s in outputs), value(prefix + "w_in", TensorProto.FLOAT, [2, 3])],
        )

    inner = loop_body(
        "inner",
        "j_",
        [
            helper.make_node("Transpose", ["j_w_in"], ["w_t"], perm=[1, 0]),
            helper.make_node("MatMul", ["x", "w_t"], ["y"]),
        ],
        "y",
    )
    loop = helper.make_node("Loop", ["four", "go", "zeros", "i_w_in"], ["inner_acc", "inner_w"], body=inner)
    outer = loop_body("outer", "i_", [loop], "inner_acc")
    weights = np.arange(6, dtype=np.float32).reshape(2, 3)
    constants = {"three": np.array(3, np.int64), "four": np.array(4, np.int64), "go": np.array(True)}
    constants.update(zeros=np.zeros((1, 2), np.float32), w=weights)
    graph = helper.make_graph(
        [helper.make_node("Loop", ["three", "go", "zeros", "w"], ["acc", "w_final"], body=outer)],
        "nested",
        [value("x", TensorProto.FLOAT, [1, 3])],
        [value("acc", TensorProto.FLOAT, [1, 2])],
        initializer=[onnx.numpy_helper.from_array(v, k) for k, v in constants.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.array([[1.0, -2.0, 0.5]], np.float32)
    # W leaves both loops' variables; Transpose and MatMul move out of the inner loop,
    # then out of the outer one.
    assert hoist_loop_invariants(model) == (2, 4)
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node] == ["Transpose", "MatMul", "Loop"]
    outer_body = model.graph.node[2].attribute[0].g
    assert [n.op_type for n in outer_body.node] == ["Identity", "Loop", "Add"]
    assert [n.op_type for n in outer_body.node[1].attribute[0].g.node] == ["Identity", "Add"]
    (answer,) = onnxruntime.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    np.testing.assert_array_equal(answer, 12 * x @ weights.T)
    assert hoist_loop_invariants(model) == (0, 0)


@pytest.mark.parametrize(
    "kwargs, moved",
    [({"read_final_weights": True}, (0, 0)), ({"scan_weights": True}, (0, 0)), ({"with_random": True}, (1, 2))],
    ids=["read-after-the-loop", "also-a-scan-output", "random-draw"],
)
def test_what_the_loop_still_needs_stays_inside(kwargs, moved):
    from tfvae.onnx_loops import hoist_loop_invariants

    model, weights = _loop_model(**kwargs)
    x = np.array([[1.0, -2.0, 0.5]], np.float32)
    before = onnxruntime.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    assert hoist_loop_invariants(model) == moved
    onnx.checker.check_model(model, full_check=True)
    (loop,) = [n for n in model.graph.node if n.op_type == "Loop"]
    assert ("RandomUniform" in [n.op_type for n in loop.attribute[0].g.node]) == ("with_random" in kwargs)
    after = onnxruntime.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    if "with_random" not in kwargs:
        for a, b in zip(before, after):
            np.testing.assert_array_equal(a, b)
