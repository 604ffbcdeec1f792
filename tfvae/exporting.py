"""Export: a trained model's deterministic parts to SavedModel, ONNX and a Triton repository.

One call writes one model repository that both TF Serving and Triton load:

    EXPORT_DIR/NAME/config.pbtxt               Triton (onnxruntime backend)
    EXPORT_DIR/NAME/<version>/saved_model.pb   TF Serving (+ variables/)
    EXPORT_DIR/NAME/<version>/model.onnx       ONNX Runtime, Triton
    EXPORT_DIR/NAME/<version>/manifest.json    what was exported, with sha256 of every file
    EXPORT_DIR/NAME/<version>/prior.npz        a VampPrior's components, for servers to draw z
    EXPORT_DIR/NAME_encoder/...                the encoder, laid out the same way

`NAME` is the decoder, the generator: z in, the likelihood's mean out (and its raw
parameters under a second signature). Sampling stays outside the graphs: Keras'
stateless random ops do not convert to ONNX, and servers want deterministic graphs, so
a client (or `tfvae serve`) draws z itself.

Every part's version folder is built in a hidden staging folder beside it; only when
all parts are whole are they renamed into place, and then each gets the same
manifest.json, written last (atomically). `tfvae serve` serves a version only when every
part its manifest lists holds that same manifest, so an export killed at any instant is
either served whole or not at all (TF Serving and Triton, which do not read manifests,
see each part's folder appear whole). Staging folders left by a killed export are
removed by the next export.
"""

import dataclasses
import datetime
import json
import os
import re
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

from tfvae import files
from tfvae import manifest as manifests
from tfvae.errors import ExportError
from tfvae.manifest import MANIFEST_FILE, PARTS, PRIOR_FILE, sha256_file

ONNX_OPSET = 17
SAVED_MODEL_FILE = "saved_model.pb"
ONNX_FILE = "model.onnx"
MAX_VERSION = 2**63 - 1  # TF Serving and Triton read versions as int64
_STAGING, _RETIRED = ".staging-", ".retired-"
TRITON_CONFIG_FILE = "config.pbtxt"
TRITON_MAX_BATCH_SIZE = 256
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# An export whose ONNX graph disagrees with TensorFlow by more than this is refused.
_PARITY_TOLERANCE = 1e-4


@dataclasses.dataclass(frozen=True)
class Part:
    """One exported model: its repository name, inputs, and named outputs.

    `serving` is the output set of the `serving_default` signature; `extra` maps
    further signature names to output sets. The ONNX graph has every output.
    """

    kind: str
    model_name: str
    input_specs: tuple  # tf.TensorSpec per input, named
    outputs: object  # callable: input tensors -> {output name: tensor}
    serving: tuple
    extra: dict
    layers: tuple  # what the graph reads weights from
    # For a generator that draws x from uniform `noise` pixel by pixel: (*inputs, x) ->
    # (the draws TensorFlow gives each pixel of x given the pixels before it, and where
    # float rounding could move them); its ONNX graph is checked against these.
    draws_given: object = None


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """Where an export landed: `paths[part]` is that part's version folder."""

    name: str
    version: int
    export_dir: str
    paths: dict
    manifest: dict


def model_parts(model, name):
    """The deterministic parts of `model` that export, keyed by kind.

    A conditional model's parts take the class labels (int64 `[batch]`) as a last input.
    Where q(z|x) has no Gaussian parameters (`model.posterior_noise_dim`), the encoder
    takes `noise` `[batch, posterior_noise_dim]` after x and gives `z` and `log_posterior`.
    Where p(x|z) draws x pixel by pixel (`Likelihood.noise_shape`, a PixelCNN), the decoder
    takes uniforms `noise` `[batch, *noise_shape]` after z and gives the drawn image `x`.
    """
    labels_spec = (tf.TensorSpec([None], tf.int64, name="labels"),) if model.conditional else ()
    decoder_specs = (tf.TensorSpec([None, model.latent_dim], tf.float32, name="z"), *labels_spec)
    x_spec = tf.TensorSpec([None, *model.network_config.input_shape], tf.float32, name="x")
    if model.posterior_noise_dim is not None:
        noise_spec = tf.TensorSpec([None, model.posterior_noise_dim], tf.float32, name="noise")
        encoder_specs, encoder_outputs = (x_spec, noise_spec, *labels_spec), model.posterior_sample_outputs
    else:
        encoder_specs, encoder_outputs = (x_spec, *labels_spec), model.encoder_outputs

    def output_names(outputs, specs):  # run eagerly on one row of zeros
        return tuple(outputs(*[tf.zeros([1, *spec.shape[1:]], spec.dtype) for spec in specs]))

    parts = {
        "encoder": Part(
            kind="encoder",
            model_name=f"{name}_encoder",
            input_specs=encoder_specs,
            outputs=encoder_outputs,
            serving=output_names(encoder_outputs, encoder_specs),
            extra={},
            layers=model.encoder_layers,
        ),
    }
    noise_shape = model.likelihood_layer.noise_shape
    if noise_shape is None:
        names = output_names(model.decoder_outputs, decoder_specs)
        decoder = dict(
            input_specs=decoder_specs,
            outputs=model.decoder_outputs,
            serving=("mean",),
            extra={"params": tuple(n for n in names if n != "mean")},
        )
    else:  # a generator drawing x pixel by pixel from uniforms
        decoder = dict(
            input_specs=(decoder_specs[0], tf.TensorSpec([None, *noise_shape], tf.float32, name="noise"), *labels_spec),
            outputs=lambda z, noise, *labels: model.decoder_outputs(z, *labels, noise=noise),
            serving=("x",),
            extra={},
            draws_given=lambda z, noise, *rest: model.decoder_draws_given(z, noise, rest[-1], *rest[:-1]),
        )
    parts["decoder"] = Part(kind="decoder", model_name=name, layers=(model.decoder, model.likelihood_layer), **decoder)
    return parts


def computing_in_float32(model):
    """`model` where every layer computes in float32, else a float32 copy with its weights.

    A model built under a mixed-precision policy runs its networks in half precision;
    tf2onnx converts that into a graph the ONNX checker refuses ("B has inconsistent
    type tensor(bfloat16)"), and ONNX Runtime's CPU kernels are float32. Its weights are
    float32 either way (Keras keeps half-precision layers' variables in float32), so
    the copy computes what the model computes, at full precision.
    """
    if all(layer.compute_dtype == "float32" for layer in model._flatten_layers()):
        return model
    # The networks' configs name their policy layer by layer; layers a model builds
    # itself take the global one.
    config = _with_float32_policies(keras.saving.serialize_keras_object(model))
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        copy = keras.saving.deserialize_keras_object(config)
    finally:
        keras.config.set_dtype_policy(policy)
    copy.set_weights(model.get_weights())
    return copy


def _with_float32_policies(config):
    """A serialised Keras object with every dtype policy float32."""
    if isinstance(config, list):
        return [_with_float32_policies(item) for item in config]
    if not isinstance(config, dict):
        return config
    if config.get("class_name") == "DTypePolicy":
        return {**config, "config": {**config["config"], "name": "float32"}}
    return {key: _with_float32_policies(value) for key, value in config.items()}


def _select(outputs, names):
    return lambda *inputs: {key: outputs(*inputs)[key] for key in names}


def _write_saved_model(part, path):
    archive = keras.export.ExportArchive()
    for layer in part.layers:
        archive.track(layer)
    archive.add_endpoint("serving_default", _select(part.outputs, part.serving), list(part.input_specs))
    for signature, names in part.extra.items():
        archive.add_endpoint(signature, _select(part.outputs, names), list(part.input_specs))
    archive.write_out(path, verbose=False)


def _write_onnx(part, path, opset):
    import onnx
    import tf2onnx

    # TensorFlow's freezing has no public name in TF 2; tf2onnx itself imports it from here.
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    # Freezing and tf2onnx call TF 1 functions that log a deprecation (with "Instructions
    # for updating" the user cannot follow) on every export; TF's own switch quiets them.
    from tensorflow.python.util.deprecation import silence as silence_deprecations

    from tfvae.onnx_loops import hoist_loop_invariants

    specs = list(part.input_specs)
    traced = tf.function(part.outputs, input_signature=specs).get_concrete_function()
    # tf2onnx's `from_function` lists every tensor the function captures among its graph
    # inputs. Keras' Normalization (the encoder's `standardize` of 8-bit and table models)
    # holds its mean and variance as constant tensors, so they became required ONNX
    # inputs and the encoder could not run. Freezing first folds every capture, variables
    # and constants alike, into the graph, so the specs are its only inputs.
    with silence_deprecations():
        frozen = convert_variables_to_constants_v2(traced, lower_control_flow=False, aggressive_inlining=True)
        # The frozen function's outputs are a flat list in tf.nest's order of the traced
        # dict's values: sorted by key.
        keys = sorted(traced.structured_outputs)
        proto, _ = tf2onnx.convert.from_graph_def(
            frozen.graph.as_graph_def(add_shapes=True),
            name=part.model_name,
            input_names=[t.name for t in frozen.inputs],
            output_names=[t.name for t in frozen.outputs],
            opset=opset,
            tensors_to_rename={
                **{t.name: spec.name for t, spec in zip(frozen.inputs, specs)},
                **{t.name: key for t, key in zip(frozen.outputs, keys)},
            },
        )
    for value in [*proto.graph.input, *proto.graph.output]:  # name the dynamic batch axis
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    hoist_loop_invariants(proto)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, path)
    return proto


def example_inputs(input_specs, batch, num_classes=None, seed=0):
    """Random inputs for `input_specs`: uniform floats, and class ids below `num_classes`."""
    rng = np.random.default_rng(seed)
    return {
        spec.name: (
            rng.integers(0, num_classes, size=batch).astype(spec.dtype.as_numpy_dtype)
            if spec.dtype.is_integer
            else rng.uniform(size=[batch, *spec.shape[1:]]).astype(np.float32)
        )
        for spec in input_specs
    }


def prior_components(model):
    """A mixture prior's Gaussian components as arrays, or None for other priors.

    A VampPrior is the posterior at its pseudo-inputs: the decoder's folder carries their
    `loc` and `scale` (or `scale_tril`), `[num_components, ...]`, so a server can draw
    z from p(z) without the encoder or TensorFlow.
    """
    return model.prior_layer.mixture_components() if model.has_prior else None


def prior_description(model):
    """The manifest's "prior": what a server needs to draw z, in no Python class's name.

    None for a model without a prior (an autoencoder); `{"distribution":
    "standard_normal"}`; `{"distribution": "gaussian_mixture", "file": "prior.npz",
    "components": K}` for a mixture whose components are exported beside the decoder
    (a VampPrior); `{"distribution": "unsupported"}` for a prior a server cannot draw
    from (`Prior.served_as` None), which clients sample with tfvae.
    """
    if not model.has_prior:
        return None
    prior = model.prior_layer
    description = {"distribution": prior.served_as or "unsupported"}
    if prior.served_as == "gaussian_mixture":  # its components, in PRIOR_FILE beside the decoder
        description.update(file=PRIOR_FILE, components=prior.num_components)
    return description


def _write_prior_components(model, folder):
    components = prior_components(model)
    if components is not None:
        np.savez(os.path.join(folder, PRIOR_FILE), **components)


def _check_onnx_parity(part, path, num_classes):
    """Runs the saved ONNX file in ONNX Runtime against TensorFlow; returns the max difference."""
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    # A generator's probe images take H·W sequential passes each: two images still check
    # thousands of draws.
    inputs = example_inputs(part.input_specs, 7 if part.draws_given is None else 2, num_classes)
    tensors = [tf.constant(inputs[spec.name]) for spec in part.input_specs]
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(names, inputs)))
    if part.draws_given is not None:
        difference = draws_difference(part, tensors, got["x"])
    else:
        expected = {k: v.numpy() for k, v in part.outputs(*tensors).items()}
        difference = max(float(np.max(np.abs(got[k] - expected[k]))) for k in expected)
    if not difference <= _PARITY_TOLERANCE:
        raise ExportError(
            f"The ONNX {part.kind} differs from TensorFlow by {difference:g} "
            f"(> {_PARITY_TOLERANCE:g}); not exporting it."
        )
    return difference


def draws_difference(part, inputs, x):
    """How far images `x` that another runtime drew from `inputs` (z, uniform noise, ...)
    are from TensorFlow's draws: the largest difference, over the pixels whose draw float
    rounding cannot move, between x and what TensorFlow draws for each pixel given the
    pixels of x before it (`AutoregressiveImage.draws_given`). Redrawing the whole image
    instead would let one pixel rounded the other way change every pixel after it."""
    values, near = part.draws_given(*inputs, tf.constant(x))
    decisive = ~near.numpy()[..., None]  # [batch, H, W, 1]
    return float(np.max(np.abs(x - values.numpy()) * decisive))


def _tensor_entries(proto_values):
    import onnx

    return [
        {
            "name": value.name,
            "datatype": onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type).name,
            "shape": [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim],
        }
        for value in proto_values
    ]


_TRITON_TYPES = {"float32": "TYPE_FP32", "int64": "TYPE_INT64", "int32": "TYPE_INT32"}


def triton_config(model_name, inputs, outputs, max_batch_size=TRITON_MAX_BATCH_SIZE, sequential=False):
    """config.pbtxt text for Triton's onnxruntime backend, with dynamic batching.

    `inputs`/`outputs` are manifest tensor entries; Triton's dims leave out the batch axis.
    A `sequential` model (a generator drawing pixel by pixel) runs on one intra-op thread,
    as `tfvae serve` runs it (`serving.backends.OnnxBackend`).
    """

    def dims(entry):
        # Triton needs dims for a batched tensor of shape [batch]: [1], reshaped to [].
        if len(entry["shape"]) == 1:
            return "dims: [ 1 ] reshape: { shape: [ ] }"
        return f"dims: [ {', '.join(str(d) for d in entry['shape'][1:])} ]"

    def block(kind, entries):
        rows = ",\n".join(
            f'  {{ name: "{e["name"]}" data_type: {_TRITON_TYPES[e["datatype"]]} {dims(e)} }}' for e in entries
        )
        return f"{kind} [\n{rows}\n]"

    return "\n".join(
        [
            f'name: "{model_name}"',
            'backend: "onnxruntime"',
            f"max_batch_size: {max_batch_size}",
            block("input", inputs),
            block("output", outputs),
            "dynamic_batching { max_queue_delay_microseconds: 1000 }",
            *(['parameters { key: "intra_op_thread_count" value: { string_value: "1" } }'] if sequential else []),
            "",
        ]
    )


def _hash_tree(root):
    """`{path relative to root: sha256}` for every file below `root` but the manifest."""
    return {
        os.path.relpath(os.path.join(folder, f), root): sha256_file(os.path.join(folder, f))
        for folder, _, files in sorted(os.walk(root))
        for f in sorted(files)
        if f != MANIFEST_FILE
    }


def existing_versions(export_dir, model_name):
    """The numeric version folders of a model in the repository, ascending."""
    folder = os.path.join(export_dir, model_name)
    if not os.path.isdir(folder):
        return []
    return sorted(int(entry) for entry in os.listdir(folder) if entry.isdigit() and entry[0] != "0")


def _choose_version(export_dir, parts, version, overwrite):
    taken = sorted({v for p in parts for v in existing_versions(export_dir, p.model_name)})
    if version is None:
        return (taken[-1] + 1) if taken else 1
    if version in taken and not overwrite:
        raise ExportError(
            f"Version {version} of {parts[0].model_name} already exists in {export_dir}; "
            "pass --overwrite (overwrite=True) to replace it, or leave out --version to "
            "take the next one."
        )
    return version


def check_arguments(name, parts, version, export_dir):
    """Checks what can be checked before any work: the name, parts, version and target."""
    if not _NAME_PATTERN.match(name or ""):
        raise ExportError(
            f"Model name {name!r} is not usable as a folder and server model name; use "
            "letters, digits, '_', '-' and '.', starting with a letter or digit."
        )
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise ExportError(f"Unknown part(s) {unknown or parts}; choose from {', '.join(PARTS)}.")
    if version is not None and (
        not isinstance(version, int) or isinstance(version, bool) or not 0 < version <= MAX_VERSION
    ):
        raise ExportError(
            f"version must be an integer in [1, {MAX_VERSION}] (TF Serving and Triton read "
            f"versions as int64); got {version!r}."
        )
    try:
        files.check_writable(export_dir)
    except OSError as error:
        raise ExportError(
            f"Cannot write to the export folder {export_dir} ({error.strerror}); choose a "
            "writable --out or fix its permissions."
        ) from None


def _check_same_interface(export_dir, part, version, inputs, outputs):
    """Refuses a version whose tensors differ from the model's other versions': Triton
    reads one config.pbtxt for all of a model's versions, so an export of another
    latent size (or an encoder under a decoder's name) would leave the older versions
    unloadable there, and one name serving two interfaces here."""
    others = [v for v in existing_versions(export_dir, part.model_name) if v != version]
    config_path = os.path.join(export_dir, part.model_name, TRITON_CONFIG_FILE)
    if not others or not os.path.isfile(config_path):
        return
    with open(config_path, encoding="utf-8") as f:
        # Backend parameters (a generator's thread count) are no part of the interface, and
        # configs written before them had none.
        written = "".join(line for line in f if not line.startswith("parameters "))
    if written == triton_config(part.model_name, inputs, outputs):
        return

    def tensors(entries):
        return ", ".join(f"{e['name']} {e['datatype']} [{', '.join(map(str, e['shape']))}]" for e in entries)

    raise ExportError(
        f"{os.path.join(export_dir, part.model_name)} holds version(s) {', '.join(map(str, others))} of other "
        f"tensors than this {part.kind} (inputs {tensors(inputs)}; outputs {tensors(outputs)}; the others' are in "
        f"its {TRITON_CONFIG_FILE}). Every version of a model must take and give the same tensors (Triton reads "
        "one configuration for all of them): export under another --name, or remove the old versions."
    )


def _commit(staging, final, overwrite):
    """Renames a finished version folder into place; replacing an old one if allowed."""
    if os.path.exists(final):
        if not overwrite:
            raise ExportError(f"{final} appeared while exporting; not replacing it.")
        retired = tempfile.mkdtemp(prefix=f"{_RETIRED}{os.getpid()}-", dir=os.path.dirname(final))
        os.rename(final, os.path.join(retired, "old"))
        os.rename(staging, final)
        shutil.rmtree(retired)
    else:
        os.rename(staging, final)


def remove_stale_staging(model_folder):
    """Removes the staging and retired folders of exports that are no longer running."""
    if not os.path.isdir(model_folder):
        return
    for entry in os.listdir(model_folder):
        if entry.startswith((_STAGING, _RETIRED)) and not _alive(entry.split("-")[1]):
            shutil.rmtree(os.path.join(model_folder, entry), ignore_errors=True)


def _alive(pid):
    """Whether the process `pid` (a string from a folder name) runs on this machine."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def export(model, export_dir, name, version=None, parts=None, overwrite=False, opset=ONNX_OPSET):
    """Exports a trained model's parts as SavedModel + ONNX + Triton config + manifest.

    Args:
      model: a trained `tfvae.VAE`, `ConditionalVAE` (whose parts take the labels as a
        last input), `HierarchicalVAE` or `Autoencoder` (whose encoder outputs the code
        `z`). The encoder gives q(z|x)'s Gaussian parameters, or, where q has none (an
        IAF, a hierarchy: `model.posterior_noise_dim`), takes N(0, I) noise beside x and
        gives the sample of q(z|x) it maps to and its log density. The decoder of an
        autoregressive likelihood (a PixelCNN) takes uniforms `noise` beside z and gives
        the image `x` they draw, a loop over the H·W pixels in the graph.
      export_dir: the model repository (created if missing).
      name: the decoder's model name; the encoder is `name + "_encoder"`.
      version: the version folder; None takes the next free number (1 at first).
      parts: any of "decoder", "encoder"; None for both.
      overwrite: replace an existing version.
      opset: the ONNX opset of the converted graphs.

    Returns:
      `ExportResult`.

    Raises:
      ExportError: a bad name, part or version, an existing version without
        `overwrite`, an unwritable target, or an ONNX graph that disagrees with
        TensorFlow. Nothing is left half-written.
    """
    parts = tuple(PARTS if parts is None else parts)
    check_arguments(name, parts, version, export_dir)
    model = computing_in_float32(model)
    noise = model.likelihood_layer.noise_shape
    all_parts = model_parts(model, name)
    selected = [all_parts[kind] for kind in PARTS if kind in parts]
    version = _choose_version(export_dir, selected, version, overwrite)
    versions = _library_versions()  # imports the ONNX stack before anything is written
    staging = {}
    manifest = {
        "name": name,
        "version": version,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "latent_dim": model.latent_dim,
        "input_shape": list(model.network_config.input_shape),
        "image_shape": None if model.image_shape is None else list(model.image_shape),
        "likelihood": model.likelihood_layer.family,
        "model_class": type(model).__name__,
        # As --posterior spells it: one family, or one per layer of a hierarchy, bottom first.
        "posterior": ",".join(model.posterior_families) or None,
        "prior": prior_description(model),
        # What a server draws for the decoder's `noise` input beside z (a PixelCNN's pixels).
        "decoder_noise": None if noise is None else {"distribution": "uniform", "shape": list(noise)},
        "conditional": model.conditional,
        "num_classes": model.num_classes,
        "onnx_opset": opset,
        "versions": versions,
        "parts": {},
    }
    created = [
        os.path.join(export_dir, p.model_name)
        for p in selected
        if not os.path.isdir(os.path.join(export_dir, p.model_name))
    ]
    paths = {}
    try:
        for part in selected:
            model_folder = os.path.join(export_dir, part.model_name)
            os.makedirs(model_folder, exist_ok=True)
            remove_stale_staging(model_folder)
            folder = tempfile.mkdtemp(prefix=f"{_STAGING}{os.getpid()}-{version}-", dir=model_folder)
            staging[part.kind] = folder
            _write_saved_model(part, folder)
            proto = _write_onnx(part, os.path.join(folder, ONNX_FILE), opset)
            if part.kind == "decoder":
                _write_prior_components(model, folder)
            inputs, outputs = _tensor_entries(proto.graph.input), _tensor_entries(proto.graph.output)
            _check_same_interface(export_dir, part, version, inputs, outputs)
            manifest["parts"][part.kind] = {
                "model_name": part.model_name,
                "path": f"{part.model_name}/{version}",
                "inputs": inputs,
                "outputs": outputs,
                "signatures": {"serving_default": list(part.serving), **{k: list(v) for k, v in part.extra.items()}},
                "onnx_max_abs_difference": _check_onnx_parity(part, os.path.join(folder, ONNX_FILE), model.num_classes),
                "files": _hash_tree(folder),
            }
        manifests.check(manifest, f"the manifest of {name} version {version}")
        for part in selected:  # whole folders, each renamed atomically
            final = os.path.join(export_dir, part.model_name, str(version))
            _commit(staging.pop(part.kind), final, overwrite)
            paths[part.kind] = final
        text = json.dumps(manifest, indent=2) + "\n"
        for part in selected:  # last: what makes the version servable
            files.write_text(os.path.join(paths[part.kind], MANIFEST_FILE), text)
            entry = manifest["parts"][part.kind]
            config = triton_config(
                part.model_name, entry["inputs"], entry["outputs"], sequential=part.kind == "decoder" and bool(noise)
            )
            files.write_text(os.path.join(export_dir, part.model_name, TRITON_CONFIG_FILE), config)
    finally:
        for folder in staging.values():
            shutil.rmtree(folder, ignore_errors=True)
        for folder in created:  # a refused export leaves no empty model folder
            if os.path.isdir(folder) and not os.listdir(folder):
                os.rmdir(folder)
    return ExportResult(name=name, version=version, export_dir=export_dir, paths=paths, manifest=manifest)


def _library_versions():
    import onnx
    import onnxruntime
    import tf2onnx

    import tfvae

    return {
        "tfvae": tfvae.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "tf2onnx": tf2onnx.__version__,
    }
