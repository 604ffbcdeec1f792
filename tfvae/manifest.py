"""The export manifest: its format and its checks, importing neither TensorFlow nor Keras.

`tfvae export` writes one manifest.json into every part's version folder, the same
text in each, after every part is in place; the server reads it. A manifest says
what was exported (the model's latent size, input shape, likelihood, prior, labels),
and for each part (decoder, encoder) its folder, tensors, signatures and the sha256
of every file.

A version is servable only when its manifest passes `check` (a JSON schema and the
facts the schema cannot state) and every part it lists holds the same manifest: an
export killed between its parts' renames, or a manifest edited by hand, is refused
with its reason instead of being served half.
"""

import hashlib

import jsonschema

from tfvae.errors import TfvaeError

MANIFEST_FILE = "manifest.json"
PRIOR_FILE = "prior.npz"
PARTS = ("decoder", "encoder")

_TENSOR = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "datatype": {"enum": ["float32", "int64", "int32"]},
        "shape": {
            "type": "array",
            "minItems": 1,
            "prefixItems": [{"const": "batch"}],
            "items": {"type": "integer", "minimum": 1},
        },
    },
}
_PART = {
    "type": "object",
    "required": ["model_name", "path", "inputs", "outputs", "signatures", "files"],
    "properties": {
        "model_name": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"},
        "path": {"type": "string"},
        "inputs": {"type": "array", "minItems": 1, "items": _TENSOR},
        "outputs": {"type": "array", "minItems": 1, "items": _TENSOR},
        "signatures": {
            "type": "object",
            "required": ["serving_default"],
            "additionalProperties": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        },
        "files": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        },
    },
}
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": [
        "name",
        "version",
        "latent_dim",
        "input_shape",
        "likelihood",
        "prior",
        "conditional",
        "num_classes",
        "parts",
    ],
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
        "latent_dim": {"type": "integer", "minimum": 1},
        "input_shape": {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 1}},
        "likelihood": {"type": "string"},
        "prior": {
            "oneOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "required": ["distribution"],
                    "properties": {"distribution": {"enum": ["standard_normal", "unsupported"]}},
                },
                {
                    "type": "object",
                    "required": ["distribution", "file", "components"],
                    "properties": {
                        "distribution": {"const": "gaussian_mixture"},
                        "file": {"const": PRIOR_FILE},
                        "components": {"type": "integer", "minimum": 1},
                    },
                },
            ]
        },
        "decoder_noise": {
            "oneOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "required": ["distribution", "shape"],
                    "properties": {
                        "distribution": {"const": "uniform"},
                        "shape": {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 1}},
                    },
                },
            ]
        },
        "conditional": {"type": "boolean"},
        "num_classes": {"type": ["integer", "null"], "minimum": 1},
        "parts": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"enum": list(PARTS)},
            "additionalProperties": _PART,
        },
    },
}
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


class ManifestError(TfvaeError, ValueError):
    """A manifest that does not describe a servable export."""


def sha256_file(path):
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check(manifest, where):
    """Checks a parsed manifest; returns it.

    Raises:
      ManifestError: naming `where`, the first field that breaks the schema, or the
        tensor that disagrees with the manifest's latent size, input shape or labels.
    """
    error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(manifest))
    if error is not None:
        field = "/".join(str(p) for p in error.absolute_path) or "the top level"
        raise ManifestError(f"{where}: {field}: {error.message}")
    latent = ["batch", manifest["latent_dim"]]
    expected = {
        ("decoder", "input", "z"): latent,
        ("encoder", "input", "x"): ["batch", *manifest["input_shape"]],
        ("encoder", "output", "loc"): latent,
        ("encoder", "input", "noise"): latent,  # a sampling encoder's (an IAF's, a hierarchy's)
        ("encoder", "output", "z"): latent,
        ("decoder", "input", "labels"): ["batch"],
        # Uniforms on (0, 1) that a generator drawing pixel by pixel takes beside z.
        ("decoder", "input", "noise"): ["batch", *(manifest.get("decoder_noise") or {}).get("shape", ())],
        ("encoder", "input", "labels"): ["batch"],
    }
    for part, entry in manifest["parts"].items():
        for kind, tensors in (("input", entry["inputs"]), ("output", entry["outputs"])):
            for tensor in tensors:
                shape = expected.get((part, kind, tensor["name"]))
                if shape is not None and tensor["shape"] != shape:
                    raise ManifestError(
                        f"{where}: the {part}'s {kind} {tensor['name']!r} has shape {tensor['shape']}, but the "
                        f"manifest's latent_dim, input_shape and labels make it {shape}"
                    )
        if part == "decoder" and (manifest["prior"] or {}).get("file") and PRIOR_FILE not in entry["files"]:
            raise ManifestError(f"{where}: the prior is a mixture in {PRIOR_FILE}, but the decoder has no such file")
        names = {tensor["name"] for tensor in entry["inputs"]}
        if part == "decoder" and ("noise" in names) != bool(manifest.get("decoder_noise")):
            raise ManifestError(
                f"{where}: the decoder's inputs {sorted(names)} disagree with decoder_noise="
                f"{manifest.get('decoder_noise')}: a generator takes uniform noise exactly when the manifest "
                "says what to draw for it"
            )
        if ("labels" in names) != manifest["conditional"] or (manifest["conditional"] and not manifest["num_classes"]):
            raise ManifestError(
                f"{where}: the {part}'s inputs {sorted(names)} disagree with conditional="
                f"{manifest['conditional']} and num_classes={manifest['num_classes']}"
            )
    return manifest
