import re

from setuptools import find_packages, setup


def version():
    """The one version, written in tfvae/__init__.py."""
    with open("tfvae/__init__.py", encoding="utf-8") as f:
        return re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)


setup(
    name="tfvae",
    version=version(),
    description="Variational autoencoders in Keras 3 and TensorFlow Probability: train with fit, "
    "evaluate honestly, export and serve.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # serving/ is a top-level folder of the repository but installs as tfvae.serving,
    # so no bare `serving` module lands in site-packages.
    packages=find_packages(include=["tfvae", "tfvae.*"]) + ["tfvae.serving"],
    package_dir={"tfvae.serving": "serving"},
    install_requires=[
        # Versions checked to work together; tf_keras (pulled in by [tf]) is only
        # there because TFP refuses to import without it: models are Keras 3.
        "tensorflow==2.21.0",
        "keras==3.15.1",
        "tensorflow-probability[tf]==0.25.0",
        "numpy>=1.26",
        "scikit-learn>=1.4",
        "matplotlib>=3.8",
        "tf2onnx==1.17.0",
        "onnx==1.23.2",
        "onnxruntime==1.32.0",
        "starlette==1.10.0",
        "uvicorn[standard]==0.54.0",
        "orjson==3.13.0",
        "prometheus-client==0.26.0",
        "jsonschema==4.26.0",
        # The server's gRPC front end uses the KServe v2 stubs that tritonclient ships.
        "tritonclient[grpc]==2.73.0",
        # grpc.health.v1 (the standard health service). 1.81 is the newest release that takes
        # the protobuf 6 tritonclient 2.73 needs (1.82 was yanked, 1.83 on need protobuf 7).
        "grpcio-health-checking==1.81.0",
        # TF Serving's gRPC API (`tfvae serve --tfserving-grpc`): its stubs and TensorProto.
        "tensorflow-serving-api==2.21.0",
    ],
    extras_require={
        # TensorFlow with the CUDA 12 libraries it needs on an NVIDIA GPU (about 2.5 GB).
        "gpu": ["tensorflow[and-cuda]==2.21.0"],
        # httpx2: the client of Starlette's TestClient (which warns when it finds only httpx).
        "test": [
            "pytest>=8",
            "pytest-xdist==3.8.0",
            "trustme==1.2.1",
            "httpx==0.28.1",
            "httpx2==2.16.2",
            "tritonclient[http]==2.73.0",
            "hypothesis==6.170.17",
            "ruff==0.17.6",
        ],
    },
    entry_points={"console_scripts": ["tfvae=tfvae.cli:main"]},
)
