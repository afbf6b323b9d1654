"""The Beam RunInference ``ModelHandler`` for the registry models (wraps :mod:`orca_beam.models.runners`).

One model per process, shared by its threads (Beam's ``shared.Shared`` over the process cache
``loading.cached_model``), loaded with ``tensorflow_hub.load`` in ``load_model`` (never in a
constructor, which would be pickled). Beam forms batches across files: by samples for
VGGish/YAMNet (packed into one call by the runner), by windows for humpback (stacked into
``features`` calls) and BirdNET (stacked into calls of ``batch_windows``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from orca_beam.core.framing import Piece
from orca_beam.core.registry import ModelSpec
from orca_beam.models.runners import (
    DEFAULT_BATCH_WINDOWS,
    DEFAULT_PACK_S,
    Runner,
    make_runner,
    warm_up,
)


@dataclass
class LoadedModel:
    """What a worker holds after loading: the runner and the model's identity."""

    runner: Runner
    version_label: str


def _without_samples(piece: Piece) -> Piece:
    return replace(piece, samples=np.zeros(0, np.float32))


class OrcaModelHandler(ModelHandler):
    """RunInference handler for one registry model, loading with ``tensorflow_hub.load``.

    One model per worker process, shared by its threads (Beam's ``shared.Shared``). Batches
    are formed by Beam across files: by samples for VGGish/YAMNet (packed into one call),
    by windows for humpback and BirdNET.
    """

    def __init__(self, spec: ModelSpec, handle: str, *, expected_sha256: str | None = None,
                 pack_s: float = DEFAULT_PACK_S, batch_windows: int = DEFAULT_BATCH_WINDOWS,
                 large_model: bool = False):
        self.spec = spec
        self.handle = handle
        self.expected_sha256 = expected_sha256
        self.pack_s = pack_s
        self.batch_windows = batch_windows
        if spec.interface in ("humpback", "birdnet"):
            target = batch_windows
            size_fn = _piece_windows
        else:
            target = int(pack_s * spec.sample_rate_hz)
            size_fn = _piece_samples
        # min = max: every batch is filled to the target (BatchElements' adaptive sizing would
        # start at one piece and vary with timing), so batches are large and, for the same input
        # order, the same from run to run.
        super().__init__(min_batch_size=target, max_batch_size=target, element_size_fn=size_fn,
                         large_model=large_model)

    def load_model(self) -> LoadedModel:
        from orca_beam.models.loading import cached_model

        # in-process runners reuse the model the launcher loaded and checked; a worker process
        # of its own loads it once and verifies it holds the launcher's content
        model, version = cached_model(self.handle, self.expected_sha256,
                                      self.spec.embedding_tensor)
        warm_up(self.spec, model)  # once per process: the first call's cost, at load time
        runner = make_runner(self.spec, model, pack_s=self.pack_s,
                             batch_windows=self.batch_windows)
        return LoadedModel(runner, version.label)

    def run_inference(self, batch: Sequence[Piece], model: LoadedModel,
                      inference_args: dict | None = None) -> Iterable[PredictionResult]:
        from apache_beam.metrics import Metrics

        stats = model.runner.stats
        before = (stats.calls, stats.frames_computed, stats.frames_kept,
                  int(stats.seconds_in_model * 1000))
        embeddings, thumbnails = model.runner.embed_with_thumbnails(list(batch))
        namespace = self.get_metrics_namespace()
        for name, old, new in zip(("model_calls", "frames_computed", "frames_kept", "model_ms"),
                                  before, (stats.calls, stats.frames_computed, stats.frames_kept,
                                           int(stats.seconds_in_model * 1000)), strict=True):
            Metrics.counter(namespace, name).inc(new - old)
        return [PredictionResult(_without_samples(piece), (rows, images), model.version_label)
                for piece, rows, images in zip(batch, embeddings, thumbnails, strict=True)]

    def get_num_bytes(self, batch: Sequence[Piece]) -> int:
        return sum(piece.samples.nbytes for piece in batch)

    def get_metrics_namespace(self) -> str:
        return f"orca_beam.{self.spec.name}"


def _piece_samples(piece: Piece) -> int:
    return max(1, len(piece.samples))


def _piece_windows(piece: Piece) -> int:
    return max(1, piece.num_frames)
