# Custom Beam SDK container for Dataflow GPU workers (see README "Dataflow").
# Beam SDK 2.77 for Python 3.11; TensorFlow's pip wheel brings CUDA/cuDNN ([and-cuda]); the
# NVIDIA driver is installed by Dataflow (worker_accelerator ... install-nvidia-driver).
# This image cannot be built on the offline development machines; CI runs the same pip install.
FROM apache/beam_python3.11_sdk:2.77.0

WORKDIR /opt/orca-beam
ENV PIP_NO_CACHE_DIR=1 TF_FORCE_GPU_ALLOW_GROWTH=true TF_CPP_MIN_LOG_LEVEL=2

# Dependencies first (cache-friendly): only pyproject.toml changes invalidate this layer.
COPY pyproject.toml README.md ./
RUN mkdir -p orca_beam pipelines && touch orca_beam/__init__.py pipelines/__init__.py \
    && pip install ".[gpu]" && pip uninstall -y orca-beam

# Then the project itself.
COPY orca_beam ./orca_beam
COPY pipelines ./pipelines
COPY configs ./configs
RUN pip install --no-deps .

ENTRYPOINT ["/opt/apache/beam/boot"]
