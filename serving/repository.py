"""Finding and loading the models of an export repository.

A model version is a numeric folder with a manifest.json (written last by
`tfvae export`); its manifest says which part (decoder or encoder) the folder is, and
its tensors. Files are checked against the manifest's sha256 before anything runs.
"""
import dataclasses
import json
import logging
import os

from tfvae.errors import TfvaeError
import numpy as np

from tfvae.exporting import MANIFEST_FILE, PRIOR_FILE, sha256_file
from tfvae.serving.backends import load_backend

logger = logging.getLogger("tfvae.serving")


class RepositoryError(TfvaeError):
    """An export repository that cannot be served."""


@dataclasses.dataclass
class ModelVersion:
    """One servable model version: its tensors, its signatures and its runtime."""

    name: str
    version: str
    part: str  # "decoder" or "encoder"
    manifest: dict
    inputs: list  # [{"name", "datatype", "shape"}], shape[0] is "batch"
    outputs: list
    signatures: dict  # signature name -> output names
    backend: object
    prior_components: dict = None  # a mixture prior's {"loc", "scale" | "scale_tril"} arrays
    batcher: object = None

    @property
    def input_names(self):
        return [tensor["name"] for tensor in self.inputs]

    @property
    def output_names(self):
        return [tensor["name"] for tensor in self.outputs]


def _verify(folder, files):
    for relative, expected in files.items():
        path = os.path.join(folder, relative)
        if not os.path.isfile(path) or sha256_file(path) != expected:
            raise RepositoryError(f"{path} is missing or differs from its manifest's sha256")


def _load_version(export_dir, name, version, backend_kind, threads):
    folder = os.path.join(export_dir, name, version)
    with open(os.path.join(folder, MANIFEST_FILE), encoding="utf-8") as f:
        manifest = json.load(f)
    entries = [(part, entry) for part, entry in manifest["parts"].items() if entry["model_name"] == name]
    if not entries:
        raise RepositoryError(f"{folder}/{MANIFEST_FILE} describes no part named {name!r}")
    part, entry = entries[0]
    _verify(folder, entry["files"])
    backend = load_backend(backend_kind, folder, entry, threads)
    inputs = [
        {**tensor, "classes": manifest["num_classes"]} if tensor["name"] == "labels" else tensor
        for tensor in entry["inputs"]
    ]
    components = None
    if PRIOR_FILE in entry["files"]:  # verified above with the other files
        with np.load(os.path.join(folder, PRIOR_FILE), allow_pickle=False) as archive:
            components = {key: archive[key] for key in archive.files}
    return ModelVersion(
        name=name, version=version, part=part, manifest=manifest, inputs=inputs, prior_components=components,
        outputs=entry["outputs"], signatures=entry["signatures"], backend=backend,
    )


def load_repository(export_dir, backend_kind="onnx", threads=None):
    """Every model version in `export_dir`: `{name: {version: ModelVersion}}`.

    Raises:
      RepositoryError: the folder is missing or holds no exported model.
    """
    if not os.path.isdir(export_dir):
        raise RepositoryError(f"{export_dir} is not a folder; give the --out folder of `tfvae export`.")
    models = {}
    for name in sorted(os.listdir(export_dir)):
        model_folder = os.path.join(export_dir, name)
        if name.startswith(".") or not os.path.isdir(model_folder):
            continue
        for version in sorted(os.listdir(model_folder), key=lambda v: int(v) if v.isdigit() else -1):
            if not version.isdigit() or not os.path.isfile(os.path.join(model_folder, version, MANIFEST_FILE)):
                continue
            try:
                loaded = _load_version(export_dir, name, version, backend_kind, threads)
            except (RepositoryError, OSError, ValueError, KeyError) as error:
                logger.error("not serving %s version %s: %s", name, version, error)
                continue
            models.setdefault(name, {})[version] = loaded
    if not models:
        raise RepositoryError(
            f"{export_dir} holds no servable model (no <name>/<version>/{MANIFEST_FILE}); "
            "write one with `tfvae export`."
        )
    return models


def latest(versions):
    """The highest-numbered version of a model."""
    return versions[max(versions, key=int)]
