"""The reference for `make bench-serve`: kserve's own Python model server over the same ONNX file.

Runs in its own virtual environment (bench/.venv-kserve; kserve pins differ from
TensorFlow's). The model is written as kserve's custom-model docs show: ONNX Runtime
inside `predict`, v2 in and out.

    python bench/kserve_onnx_server.py --model-dir EXPORT_DIR/NAME/1 --name NAME --port 8081 [--grpc-port 8082]
"""

import argparse
import os

import onnxruntime
from kserve import InferOutput, InferResponse, Model, ModelServer
from kserve.utils.utils import generate_uuid


class OnnxDecoder(Model):
    def __init__(self, name, model_dir):
        super().__init__(name)
        self.model_dir = model_dir
        self.load()

    def load(self):
        self.session = onnxruntime.InferenceSession(
            os.path.join(self.model_dir, "model.onnx"), providers=["CPUExecutionProvider"]
        )
        self.ready = True
        return self.ready

    def predict(self, payload, headers=None, response_headers=None):
        z = payload.inputs[0].as_numpy()
        mean = self.session.run(["mean"], {"z": z})[0]
        output = InferOutput(name="mean", shape=list(mean.shape), datatype="FP32")
        output.set_data_from_numpy(mean, binary_data=False)
        return InferResponse(response_id=payload.id or generate_uuid(), model_name=self.name, infer_outputs=[output])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--grpc-port", type=int, default=None, help="also kserve's v2 gRPC server")
    args = parser.parse_args()
    grpc = {"enable_grpc": True, "grpc_port": args.grpc_port} if args.grpc_port else {"enable_grpc": False}
    ModelServer(http_port=args.port, workers=1, enable_latency_logging=False, **grpc).start(
        [OnnxDecoder(args.name, args.model_dir)]
    )
