"""Runtimes that run an exported model on a batch: ONNX Runtime (default) or the SavedModel."""

import os

import numpy as np

BACKENDS = ("onnx", "savedmodel")


class OnnxBackend:
    """An ONNX Runtime session over `model.onnx`; runs every output at once."""

    def __init__(self, folder, threads=None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
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


def load_backend(kind, folder, manifest_entry, threads=None):
    if kind == "onnx":
        return OnnxBackend(folder, threads)
    if kind == "savedmodel":
        return SavedModelBackend(folder, manifest_entry["signatures"])
    raise ValueError(f"backend must be one of {BACKENDS}; got {kind!r}")
