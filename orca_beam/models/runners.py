"""Calling the models: runners that turn Pieces into embeddings (no Beam here).

Only the published TF Hub interfaces are used (see the registry):

* VGGish / YAMNet take one 1-D waveform per call. To batch many short pieces into one call, the
  runner *packs* them: each piece is placed at an offset that is a multiple of the model's hop, so
  the model's own grid inside the packed waveform lines up with every piece's grid, and the rows of
  each piece are read back from its offset. Windows straddling two pieces are computed and thrown
  away (1 per piece for VGGish, 2 for YAMNet, whose window is 240 samples longer than two hops).
* Humpback: ``front_end`` once per piece ([1, S, 1] -> PCEN), warm-up frames dropped, PCEN split
  into 128-frame windows (zero-padded tail), and ``features`` on batches of windows from any pieces.
* BirdNET: 3 s waveform windows cut at the hop (zero-filled past the end) and called in batches
  of windows from any pieces.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from orca_beam.core.framing import Piece
from orca_beam.core.registry import PATCH_FRAMES, ModelSpec
from orca_beam.features.thumbnails import to_images

LOG = logging.getLogger(__name__)

#: Default seconds of audio per packed VGGish/YAMNet call (the interface's efficient size).
DEFAULT_PACK_S = 60.0
#: Default humpback windows per ``features`` call.
DEFAULT_BATCH_WINDOWS = 32


@dataclass
class RunnerStats:
    """Counts kept by a runner: model calls, windows computed and windows kept, and the wall
    seconds spent inside the model's own calls (humpback: ``front_end`` and ``features``)."""

    calls: int = 0
    frames_computed: int = 0
    frames_kept: int = 0
    seconds_in_model: float = 0.0


def required_samples(spec: ModelSpec, piece: Piece) -> int:
    """Samples the piece's windows cover: (num_frames - 1) * hop + window (VGGish/YAMNet)."""
    return (piece.num_frames - 1) * spec.hop_samples + spec.window_samples


class WaveformRunner:
    """Embeds pieces with a 1-D waveform model (VGGish or YAMNet), packing them into few calls."""

    def __init__(self, spec: ModelSpec, model: Any, pack_samples: int):
        if spec.interface not in ("vggish", "yamnet"):
            raise ValueError(f"WaveformRunner cannot call {spec.interface}")
        self.spec = spec
        self.model = model
        self.pack_samples = max(pack_samples, spec.window_samples)
        self.stats = RunnerStats()

    def slot_samples(self, piece: Piece) -> int:
        """Samples the piece occupies in a packed waveform: its windows, rounded up to the hop."""
        hop = self.spec.hop_samples
        return math.ceil(required_samples(self.spec, piece) / hop) * hop

    def _call(self, waveform: np.ndarray, want_log_mel: bool = False
              ) -> tuple[np.ndarray, np.ndarray | None]:
        """One model call: embeddings [N, D], and with ``want_log_mel`` the log-mel [T, 64] of
        the same waveform (YAMNet returns it from the call; for VGGish the front end runs once
        on the whole packed waveform)."""
        import tensorflow as tf

        started = time.perf_counter()
        tensor = tf.constant(waveform, dtype=tf.float32)
        out = self.model(tensor)
        result = (out if self.spec.interface == "vggish" else out[1]).numpy()
        self.stats.seconds_in_model += time.perf_counter() - started
        log_mel = None
        if want_log_mel and self.spec.interface == "vggish":
            from orca_beam.models import frontends

            log_mel = frontends.log_mel(tensor, self.spec.front_end,
                                        self.spec.sample_rate_hz).numpy()
        elif want_log_mel:
            log_mel = out[2].numpy()
        self.stats.calls += 1
        self.stats.frames_computed += result.shape[0]
        return result, log_mel

    def _run_pack(self, pack: list[Piece], want_images: bool
                  ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        offsets, parts, cursor = [], [], 0
        for i, piece in enumerate(pack):
            need = required_samples(self.spec, piece)
            part = piece.samples[:need]
            length = need if i == len(pack) - 1 else self.slot_samples(piece)
            if len(part) < length:
                part = np.concatenate([part, np.zeros(length - len(part), np.float32)])
            offsets.append(cursor // self.spec.hop_samples)
            parts.append(part)
            cursor += length
        embeddings, log_mel = self._call(np.concatenate(parts), want_images)
        out, images = [], []
        frames_per_hop = self.spec.hop_samples // self.spec.front_end.stft_hop_samples
        for piece, first_row in zip(pack, offsets, strict=True):
            rows = embeddings[first_row:first_row + piece.num_frames]
            if rows.shape[0] != piece.num_frames:
                raise RuntimeError(
                    f"{self.spec.name}: packed call gave {rows.shape[0]} rows for "
                    f"{piece.source}@{piece.first_frame}, expected {piece.num_frames}")
            out.append(rows)
            if want_images:
                starts = (first_row + np.arange(piece.num_frames)) * frames_per_hop
                images.append(to_images(log_mel[starts[:, None] + np.arange(PATCH_FRAMES)]))
        self.stats.frames_kept += sum(p.num_frames for p in pack)
        return out, images

    def embed_with_thumbnails(self, pieces: Sequence[Piece]
                              ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """:meth:`embed` plus one [num_frames, 32, 32] uint8 image per piece of the log-mel
        patches the model saw, cut from each packed call's log-mel (no second pass per piece)."""
        return self._embed(pieces, want_images=True)

    def embed(self, pieces: Sequence[Piece]) -> list[np.ndarray]:
        """Returns one float32 [num_frames, dim] array per piece, in order."""
        return self._embed(pieces, want_images=False)[0]

    def _embed(self, pieces: Sequence[Piece], want_images: bool
               ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        packs: list[list[int]] = []
        size = 0
        for index, piece in enumerate(pieces):
            slot = self.slot_samples(piece)
            if not packs or size + slot > self.pack_samples:
                packs.append([])
                size = 0
            packs[-1].append(index)
            size += slot
        results: list = [None] * len(pieces)
        images: list = [None] * len(pieces)
        for members in packs:
            rows, pictures = self._run_pack([pieces[i] for i in members], want_images)
            for j, i in enumerate(members):
                results[i] = rows[j]
                if want_images:
                    images[i] = pictures[j]
        return results, images if want_images else []


class BatchedWindowRunner:
    """Embeds pieces by cutting each into its model windows (:meth:`windows`) and calling the
    model on batches of ``batch_windows`` windows from any pieces (:meth:`call`). Subclasses
    say how a piece becomes windows, how a batch is called and what a window's thumbnail is."""

    def __init__(self, spec: ModelSpec, model: Any, batch_windows: int):
        self.spec = spec
        self.model = model
        self.batch_windows = max(1, batch_windows)
        self.stats = RunnerStats()

    def windows(self, piece: Piece) -> np.ndarray:
        """[num_frames, ...] float32 model inputs of a piece."""
        raise NotImplementedError

    def call(self, batch: np.ndarray) -> np.ndarray:
        """Embeddings [B, dim] of a batch of windows."""
        raise NotImplementedError

    def thumbnails(self, windows: np.ndarray) -> np.ndarray:
        """[N, 32, 32] uint8 images of N windows."""
        raise NotImplementedError

    def embed(self, pieces: Sequence[Piece]) -> list[np.ndarray]:
        """Returns one float32 [num_frames, dim] array per piece, in order."""
        return self.embed_with_thumbnails(pieces, thumbnails=False)[0]

    def embed_with_thumbnails(self, pieces: Sequence[Piece], thumbnails: bool = True
                              ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Embeddings per piece, plus [num_frames, 32, 32] uint8 thumbnails per piece."""
        if not pieces:
            return [], []
        stacked = np.concatenate([self.windows(piece) for piece in pieces])
        outputs = []
        for begin in range(0, stacked.shape[0], self.batch_windows):
            started = time.perf_counter()
            outputs.append(self.call(stacked[begin:begin + self.batch_windows]))
            self.stats.seconds_in_model += time.perf_counter() - started
            self.stats.calls += 1
        embeddings = np.concatenate(outputs).astype(np.float32, copy=False)
        self.stats.frames_computed += embeddings.shape[0]
        self.stats.frames_kept += embeddings.shape[0]
        split_at = np.cumsum([piece.num_frames for piece in pieces])[:-1]
        images = list(np.split(self.thumbnails(stacked), split_at)) if thumbnails else []
        return list(np.split(embeddings, split_at)), images


class HumpbackRunner(BatchedWindowRunner):
    """Embeds pieces with the humpback model: ``front_end`` per piece, ``features`` per batch of
    128-frame PCEN windows; thumbnails of the PCEN windows."""

    def windows(self, piece: Piece) -> np.ndarray:
        """[num_frames, 128, 64] PCEN windows of a piece (warm-up dropped, zero-padded tail)."""
        import tensorflow as tf

        spec = self.spec
        started = time.perf_counter()
        pcen = self.model.front_end(tf.constant(piece.samples[None, :, None], tf.float32))
        pcen = pcen.numpy()[0, piece.warmup_units:]
        self.stats.seconds_in_model += time.perf_counter() - started
        need = (piece.num_frames - 1) * spec.hop_units + spec.window_units
        if pcen.shape[0] < need:
            pad = np.zeros((need - pcen.shape[0], pcen.shape[1]), np.float32)
            pcen = np.concatenate([pcen, pad])
        starts = np.arange(piece.num_frames) * spec.hop_units
        return np.stack([pcen[s:s + spec.window_units] for s in starts]).astype(np.float32)

    def call(self, batch: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        return self.model.features(tf.constant(batch)).numpy()

    def thumbnails(self, windows: np.ndarray) -> np.ndarray:
        return to_images(windows)


class WindowRunner(BatchedWindowRunner):
    """Embeds pieces with a model called on a batch of fixed-length waveform windows (BirdNET:
    [B, 144000] at 48 kHz -> [B, 1024]). Each window is cut from its piece at the model's hop
    and completed with zeros past the end of the audio."""

    def windows(self, piece: Piece) -> np.ndarray:
        """[num_frames, window_samples] float32 windows of a piece, zero-filled past its end."""
        spec = self.spec
        need = (piece.num_frames - 1) * spec.hop_samples + spec.window_samples
        samples = piece.samples[:need]
        if len(samples) < need:
            samples = np.concatenate([samples, np.zeros(need - len(samples), np.float32)])
        starts = np.arange(piece.num_frames) * spec.hop_samples
        return np.lib.stride_tricks.sliding_window_view(samples, spec.window_samples)[starts]

    def call(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.model(batch))

    def thumbnails(self, windows: np.ndarray) -> np.ndarray:
        """Log-mel images of the windows (the registry's display front end: BirdNET's own
        spectrograms are computed inside the model)."""
        import tensorflow as tf

        from orca_beam.models import frontends

        log_mel = frontends.log_mel(tf.constant(windows, tf.float32), self.spec.front_end,
                                    self.spec.sample_rate_hz)
        return to_images(log_mel.numpy())


Runner = WaveformRunner | HumpbackRunner | WindowRunner


def make_runner(spec: ModelSpec, model: Any, *, pack_s: float = DEFAULT_PACK_S,
                batch_windows: int = DEFAULT_BATCH_WINDOWS) -> Runner:
    """The runner that calls ``model`` through ``spec.interface``."""
    if spec.interface == "humpback":
        return HumpbackRunner(spec, model, batch_windows)
    if spec.interface == "birdnet":
        return WindowRunner(spec, model, batch_windows)
    return WaveformRunner(spec, model, int(pack_s * spec.sample_rate_hz))


#: Models already warmed up in this process (by id: a model object lives as long as the cache).
_WARMED: set[int] = set()


def warm_up(spec: ModelSpec, model: Any) -> float:
    """Calls ``model`` once on one window of silence through the runner the pipeline uses (so
    the same functions are traced and run), once per model object and process; returns the
    seconds taken (0.0 when already warm). TensorFlow's first execution of a loaded function
    costs about 0.25 s (measured for the YAMNet stand-in: 0.26 s on 1 s of input, then 0.05 s
    on 10 s); paying it here, at load time, keeps it out of the first bundle of real audio.
    The warm-up's calls are not counted in any runner's stats."""
    from orca_beam.core.framing import Chunker

    if id(model) in _WARMED:
        return 0.0
    started = time.perf_counter()
    chunker = Chunker(spec, "<warm-up>", channel=-1, chunk_frames=1)
    silence = np.zeros(spec.window_samples, np.float32)
    pieces = list(chunker.push(silence)) + list(chunker.finish())
    make_runner(spec, model).embed_with_thumbnails(pieces[:1])
    _WARMED.add(id(model))
    return time.perf_counter() - started
