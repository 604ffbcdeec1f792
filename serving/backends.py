"""Runtimes that run an exported model on a batch: ONNX Runtime (default) or the SavedModel."""

import os

import numpy as np

BACKENDS = ("onnx", "savedmodel")


class OnnxBackend:
    """An ONNX Runtime session over `model.onnx`; runs every output at once.

    Args:
      folder: the version folder holding model.onnx.
      threads: intra-op threads; None for all cores, or one for a `sequential` model.
      sequential: the model is a generator that draws pixel by pixel (its manifest's
        `decoder_noise`): a `Loop` of H·W steps, each of small nodes.
    """

    def __init__(self, folder, threads=None, sequential=False):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # A pixel's nodes are too small to split between threads: handing each to the pool
        # and back costs about what it gains. On one thread the 32x32x3 photo-patch
        # generator drew 0.95x, 1.03-1.56x and 1.16-1.22x as many images per second as on
        # both cores at batch 1, 8 and 64 (`make bench-generator`, two runs on idle cores
        # of a 2-core EPYC), and it leaves the other core to the server.
        options.intra_op_num_threads = threads or (1 if sequential else os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        # Spinning worker threads would take the cores the event loop and the other
        # requests' parsing need; a served model runs many small batches, not one big one.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(
            os.path.join(folder, "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.output_names = [output.name for output in self.session.get_outputs()]

    def run(self, inputs):
        """`{input name: array}` -> `{output name: array}`."""
        return dict(zip(self.output_names, self.session.run(self.output_names, inputs)))


class SavedModelBackend:
    """The SavedModel's signatures (serving_default plus the rest), merged into one output dict."""

    def __init__(self, folder, signatures):
        import tensorflow as tf

        self._tf = tf
        self.loaded = tf.saved_model.load(folder)  # kept: signatures need its variables alive
        self.functions = [self.loaded.signatures[name] for name in signatures]

    def run(self, inputs):
        tensors = {name: self._tf.constant(value) for name, value in inputs.items()}
        outputs = {}
        for function in self.functions:
            outputs.update({k: np.asarray(v) for k, v in function(**tensors).items()})
        return outputs


def load_backend(kind, folder, manifest_entry, threads=None, sequential=False):
    """The backend `kind` over a version folder; `sequential` as `OnnxBackend` takes it."""
    if kind == "onnx":
        return OnnxBackend(folder, threads, sequential)
    if kind == "savedmodel":
        return SavedModelBackend(folder, manifest_entry["signatures"])
    raise ValueError(f"backend must be one of {BACKENDS}; got {kind!r}")
