"""tfvae: variational autoencoders in Keras 3 and TensorFlow Probability."""

import importlib
import os
import sys

from tfvae._native import keep_freed_memory, native_stderr_silenced
from tfvae.errors import ConfigError, DataError, ExportError, RunError, TfvaeError

# INFO lines from TensorFlow's C++ runtime (graph optimiser sessions during ONNX
# conversion, device probing) would flood the CLI; warnings and errors still show,
# and a user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

_API = {
    "objectives": "tfvae.objectives",
    "AveragedWeights": "tfvae.callbacks",
    "KLWarmup": "tfvae.callbacks",
    "DataSplits": "tfvae.data",
    "available_datasets": "tfvae.data",
    "load_dataset": "tfvae.data",
    "register_dataset": "tfvae.data",
    "BernoulliLikelihood": "tfvae.distributions",
    "CoupledLogisticMixture": "tfvae.distributions",
    "CoupledLogisticMixtureLikelihood": "tfvae.distributions",
    "DiscretizedLogisticLikelihood": "tfvae.distributions",
    "DiscretizedLogisticMixtureLikelihood": "tfvae.distributions",
    "GaussianLikelihood": "tfvae.distributions",
    "GaussianPosterior": "tfvae.distributions",
    "Likelihood": "tfvae.distributions",
    "AutoregressiveImage": "tfvae.distributions",
    "PixelCNNLikelihood": "tfvae.distributions",
    "evaluate": "tfvae.evaluation",
    "ExportResult": "tfvae.exporting",
    "export": "tfvae.exporting",
    "AutoregressiveNetwork": "tfvae.flows",
    "IAFPosterior": "tfvae.flows",
    "MaskedDense": "tfvae.flows",
    "VAE": "tfvae.models",
    "Autoencoder": "tfvae.models",
    "ConditionalVAE": "tfvae.models",
    "HierarchicalVAE": "tfvae.models",
    "LatentModel": "tfvae.models",
    "GatedDense": "tfvae.networks",
    "DropoutAfter": "tfvae.networks",
    "PixelCNN": "tfvae.pixelcnn",
    "NetworkConfig": "tfvae.networks",
    "build_decoder": "tfvae.networks",
    "build_encoder": "tfvae.networks",
    "Adam": "tfvae.optimizers",
    "Prior": "tfvae.priors",
    "StandardNormalPrior": "tfvae.priors",
    "VampPrior": "tfvae.priors",
}


def _load_tensorflow():
    """TensorFlow, quietly and with malloc keeping what its steps free
    (`keep_freed_memory`), then Keras on its TensorFlow backend."""
    keep_freed_memory()
    with native_stderr_silenced():
        import tensorflow  # noqa: F401  (imported here, quietly, before Keras loads it)

    import keras

    if keras.backend.backend() != "tensorflow":
        raise ImportError(
            f"tfvae needs Keras' TensorFlow backend, but Keras is using {keras.backend.backend()!r}. "
            "Set KERAS_BACKEND=tensorflow before importing keras or tfvae."
        )


def __getattr__(name):
    """The API's names, imported on first use in a serving process (PEP 562)."""
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'tfvae' has no attribute {name!r}")
    _load_tensorflow()
    loaded = importlib.import_module(module)
    value = loaded if module.endswith("." + name) else getattr(loaded, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *_API})


def _serving_only():
    """Whether this process is `tfvae serve`, the console script.

    The server runs exported graphs (ONNX Runtime by default) and needs neither
    TensorFlow nor Keras: importing them would cost it seconds of start-up, about
    0.5 GB, and full garbage collections walking their objects (README, "Serve"). In
    that process the API is imported on first use. Everywhere else it is imported with
    the package, so that Keras finds every tfvae class when it loads a `.keras` file.
    """
    return os.path.basename(sys.argv[0]) == "tfvae" and sys.argv[1:2] == ["serve"]


__version__ = "0.1.0"

__all__ = [
    "VAE",
    "Adam",
    "Autoencoder",
    "AutoregressiveImage",
    "AutoregressiveNetwork",
    "AveragedWeights",
    "BernoulliLikelihood",
    "ConditionalVAE",
    "ConfigError",
    "CoupledLogisticMixture",
    "CoupledLogisticMixtureLikelihood",
    "DataError",
    "DataSplits",
    "DiscretizedLogisticLikelihood",
    "DiscretizedLogisticMixtureLikelihood",
    "DropoutAfter",
    "ExportError",
    "ExportResult",
    "GaussianLikelihood",
    "GatedDense",
    "GaussianPosterior",
    "HierarchicalVAE",
    "IAFPosterior",
    "KLWarmup",
    "LatentModel",
    "Likelihood",
    "MaskedDense",
    "NetworkConfig",
    "PixelCNN",
    "PixelCNNLikelihood",
    "Prior",
    "RunError",
    "StandardNormalPrior",
    "TfvaeError",
    "VampPrior",
    "available_datasets",
    "build_decoder",
    "build_encoder",
    "evaluate",
    "export",
    "load_dataset",
    "objectives",
    "register_dataset",
]

if not _serving_only():
    for _name in _API:
        __getattr__(_name)
    del _name
