"""An anchor for `make bench-serve`: Triton itself (nvidia-pytriton's bundled Triton server on
CPU, HTTP and gRPC) serving the same ONNX file through a Python callable.

Runs in its own virtual environment (bench/.venv-pytriton). pytriton binds a Python
function as a Triton model: Triton's C++ front ends and dynamic batcher take the
requests, the function runs ONNX Runtime on each batch.

    python bench/pytriton_onnx_server.py --model-dir EXPORT_DIR/NAME/1 --name NAME \
        --port 8000 --grpc-port 8001
"""

import argparse
import os
import socket

import numpy as np
import onnxruntime
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, default=8000, help="HTTP (KServe v2 REST)")
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=None, help="default: a free port")
    args = parser.parse_args()
    if args.metrics_port is None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            args.metrics_port = probe.getsockname()[1]
    session = onnxruntime.InferenceSession(
        os.path.join(args.model_dir, "model.onnx"), providers=["CPUExecutionProvider"]
    )
    latent = session.get_inputs()[0].shape[1]
    pixels = session.get_outputs()[0].shape[1]

    @batch
    def decode(z):
        return {"mean": session.run(["mean"], {"z": z})[0]}

    config = TritonConfig(http_port=args.port, grpc_port=args.grpc_port, metrics_port=args.metrics_port)
    with Triton(config=config) as triton:
        triton.bind(
            model_name=args.name,
            infer_func=decode,
            inputs=[Tensor(name="z", dtype=np.float32, shape=(latent,))],
            outputs=[Tensor(name="mean", dtype=np.float32, shape=(pixels,))],
            config=ModelConfig(max_batch_size=256, batcher=DynamicBatcher(max_queue_delay_microseconds=1000)),
        )
        triton.serve()
