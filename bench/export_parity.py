"""Exports a trained run and measures how far each runtime is from the Keras model.

    python bench/export_parity.py RUN_DIR [--out bench/results/export_parity.json]

For the decoder and the encoder, at batch sizes 1, 7 and 256: the max |difference| of
every output between the Keras model and (a) the SavedModel's signatures loaded with
tf.saved_model.load, (b) ONNX Runtime, (c) the ONNX reference evaluator.
"""

import argparse
import json
import os
import tempfile
import time

import keras
import numpy as np
import onnx
import onnxruntime
import tensorflow as tf
from onnx.reference import ReferenceEvaluator
from results_io import provenance, write_result

import tfvae
from tfvae.exporting import model_parts

BATCH_SIZES = (1, 7, 256)


def runtime_outputs(folder, signatures, input_name, inputs):
    saved = tf.saved_model.load(folder)
    from_saved = {}
    for signature in signatures:
        result = saved.signatures[signature](**{input_name: tf.constant(inputs)})
        from_saved.update({k: v.numpy() for k, v in result.items()})
    path = os.path.join(folder, "model.onnx")
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    from_ort = dict(zip(names, session.run(names, {input_name: inputs})))
    reference = ReferenceEvaluator(onnx.load(path))
    from_reference = dict(zip(names, reference.run(names, {input_name: inputs})))
    return {"savedmodel": from_saved, "onnxruntime": from_ort, "onnx_reference": from_reference}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--out", default="bench/results/export_parity.json")
    args = parser.parse_args()
    model = keras.models.load_model(os.path.join(args.run_dir, "model.keras"))
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as repository:
        started = time.perf_counter()
        result = tfvae.export(model, repository, "parity")
        parts = model_parts(model, "parity")  # the Keras computation each export reproduces
        export_seconds = time.perf_counter() - started
        table, relative = {}, {}  # max |difference|, and that over max |expected|
        for part, folder in result.paths.items():
            entry = result.manifest["parts"][part]
            input_name = entry["inputs"][0]["name"]
            for batch in BATCH_SIZES:
                shape = (batch, model.latent_dim) if part == "decoder" else (batch, *model.network_config.input_shape)
                inputs = (
                    rng.normal(size=shape).astype(np.float32)
                    if part == "decoder"
                    else (rng.random(shape) > 0.5).astype(np.float32)
                )
                expected = {k: v.numpy() for k, v in parts[part].outputs(tf.constant(inputs)).items()}
                for runtime, got in runtime_outputs(folder, entry["signatures"], input_name, inputs).items():
                    for key in expected:
                        difference = float(np.max(np.abs(got[key] - expected[key])))
                        scale = float(np.max(np.abs(expected[key])))
                        table[f"{part}/{key}/{runtime}/batch_{batch}"] = difference
                        relative[f"{part}/{key}/{runtime}/batch_{batch}"] = difference / scale
    report = {
        "run_dir": args.run_dir,
        "model": {
            "latent_dim": model.latent_dim,
            "input_shape": list(model.network_config.input_shape),
            "posterior": model.posterior_layer.covariance,
            "likelihood": model.likelihood_layer.family,
        },
        "onnx_opset": result.manifest["onnx_opset"],
        "export_seconds": round(export_seconds, 2),
        "max_abs_difference": table,
        "max_abs_difference_over_max_abs_value": relative,
        "worst": max(table.values()),
        "worst_by_output": {
            output: max(v for k, v in table.items() if k.split("/")[1] == output)
            for output in sorted({k.split("/")[1] for k in table})
        },
        "versions": result.manifest["versions"],
        **provenance(),
        "command": f"python bench/export_parity.py {args.run_dir}",
    }
    write_result(args.out, report)
    print(json.dumps(report["worst_by_output"], indent=1))
    print(f"worst {report['worst']:.3g}; wrote {args.out}")


if __name__ == "__main__":
    main()
