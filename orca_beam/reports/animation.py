"""The seed's embedding animation, made right: a video of a window sliding over one recording,
with its waveform, its spectrogram and one panel per model's embeddings, the audio muxed in
sync (H.264 and AAC in MP4, written with PyAV).

Each panel is drawn once over the whole recording as a strip of ``px_per_s`` pixel columns per
second; frame ``k`` (at ``k / fps`` seconds) is the ``window_s`` of the strips centred on that
second, with a cursor there. So the picture under the cursor is the audio being heard. Frames:
``ceil(duration * fps)``; the video lasts the recording to within one frame. Memory: the strips,
about 3 bytes x 96 px/s x the panels' height per second of audio (a 10-minute file: about 80 MB).

An embedding panel shows, per pixel column, the embedding of the model window that covers that
second (the latest one starting at or before it): its ``rows`` dimensions of largest variance over the
recording, each scaled to its own range over the recording, ordered by their weight on the first
principal component. A stand-in model's panel says so in its title.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from orca_beam.core.audio import load_audio
from orca_beam.review.clips import CLIP_RATE_HZ, HOP_SAMPLES, spectrogram_rgb

AUDIO_RATE_HZ = 48_000
FRAME_WIDTH = 1120
LABEL_WIDTH = 160
PANEL_HEIGHT = 120
HEADER_HEIGHT = 28
BACKGROUND = (255, 255, 255)
CURSOR = np.array([220, 30, 30], np.uint8)
#: Colour map anchors of the embedding panels (low -> high), dark blue to yellow.
EMBEDDING_COLOURS = np.array([[35, 23, 92], [43, 115, 142], [62, 188, 116], [250, 231, 35]],
                             np.float64)


@dataclass(frozen=True)
class AnimationSettings:
    """``fps`` frames per second; ``window_s`` seconds shown per frame; ``px_per_s`` is derived
    (the plot width over the window)."""

    fps: float = 10.0
    window_s: float = 10.0

    @property
    def plot_width(self) -> int:
        """Pixel columns of the sliding window (even, as H.264 wants)."""
        return FRAME_WIDTH - LABEL_WIDTH

    @property
    def px_per_s(self) -> float:
        """Pixel columns per second of audio."""
        return self.plot_width / self.window_s


@dataclass(frozen=True)
class Panel:
    """One strip: its title and its picture [height, columns, 3] uint8 over the recording."""

    title: str
    picture: np.ndarray


def _columns(duration_s: float, px_per_s: float) -> int:
    return max(1, math.ceil(duration_s * px_per_s))


def waveform_strip(samples: np.ndarray, rate_hz: int, px_per_s: float,
                   height: int = PANEL_HEIGHT) -> np.ndarray:
    """The waveform as min/max per pixel column, [height, columns, 3] uint8."""
    columns = _columns(len(samples) / rate_hz, px_per_s)
    edges = np.minimum((np.arange(columns + 1) / px_per_s * rate_hz).astype(np.int64),
                       len(samples))
    peak = max(float(np.abs(samples).max()) if len(samples) else 0.0, 1e-9)
    picture = np.full((height, columns, 3), 255, np.uint8)
    middle = (height - 1) / 2
    for c in range(columns):
        part = samples[edges[c]:max(edges[c + 1], edges[c] + 1)]
        if not len(part):
            continue
        top = int(round(middle - part.max() / peak * middle))
        bottom = int(round(middle - part.min() / peak * middle))
        picture[max(top, 0):min(bottom, height - 1) + 1, c] = (31, 97, 191)
    return picture


def spectrogram_strip(samples_clip_rate: np.ndarray, px_per_s: float,
                      height: int = PANEL_HEIGHT) -> np.ndarray:
    """The review's spectrogram (CLIP_RATE_HZ, 0 Hz at the bottom) resampled to pixel columns."""
    rgb = spectrogram_rgb(samples_clip_rate, CLIP_RATE_HZ, height=height)
    columns = _columns(len(samples_clip_rate) / CLIP_RATE_HZ, px_per_s)
    frame_of = np.minimum((np.arange(columns) / px_per_s * CLIP_RATE_HZ / HOP_SAMPLES)
                          .astype(np.int64), rgb.shape[1] - 1)
    return rgb[:, frame_of]


def embedding_strip(embeddings: np.ndarray, start_s: np.ndarray, duration_s: float,
                    px_per_s: float, rows: int = PANEL_HEIGHT) -> np.ndarray:
    """A model's embeddings [N, D] at their windows' ``start_s`` as [rows, columns, 3] uint8
    (see the module docstring)."""
    columns = _columns(duration_s, px_per_s)
    picture = np.full((rows, columns, 3), 255, np.uint8)
    if not len(embeddings):
        return picture
    x = np.asarray(embeddings, np.float64)
    keep = np.argsort(-x.var(axis=0))[:rows]
    x = x[:, keep]
    centred = x - x.mean(axis=0)
    if len(x) > 1 and np.abs(centred).sum() > 0:
        first = np.linalg.svd(centred, full_matrices=False)[2][0]
        x = x[:, np.argsort(first)]
    low, high = x.min(axis=0), x.max(axis=0)
    scaled = (x - low) / np.where(high > low, high - low, 1.0)
    position = scaled * (len(EMBEDDING_COLOURS) - 1)
    lower = np.floor(position).astype(int).clip(0, len(EMBEDDING_COLOURS) - 2)
    weight = (position - lower)[..., None]
    colours = (EMBEDDING_COLOURS[lower] * (1 - weight) + EMBEDDING_COLOURS[lower + 1] * weight)
    times = np.arange(columns) / px_per_s
    frame = np.searchsorted(np.asarray(start_s, np.float64), times, side="right") - 1
    shown = frame >= 0
    height = x.shape[1]
    picture[:height, shown] = colours[frame[shown]].transpose(1, 0, 2).astype(np.uint8)
    return picture


def _text_image(lines: Sequence[str], size: tuple[int, int]) -> np.ndarray:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((6, 6 + 14 * i), line, fill=(20, 20, 20))
    return np.asarray(image)


def frame_count(duration_s: float, fps: float) -> int:
    """Frames of a video of ``duration_s`` at ``fps``: ceil(duration * fps), at least 1."""
    return max(1, math.ceil(duration_s * fps - 1e-9))


def frames(panels: Sequence[Panel], duration_s: float, name: str,
           settings: AnimationSettings) -> Iterator[np.ndarray]:
    """The video's frames, [height, FRAME_WIDTH, 3] uint8 each (see the module docstring)."""
    width, pps = settings.plot_width, settings.px_per_s
    half = width // 2
    padded = [np.concatenate([np.full((p.picture.shape[0], half, 3), 255, np.uint8), p.picture,
                              np.full((p.picture.shape[0], width, 3), 255, np.uint8)], axis=1)
              for p in panels]
    labels = [_text_image(p.title.split("\n"), (LABEL_WIDTH, p.picture.shape[0]))
              for p in panels]
    for k in range(frame_count(duration_s, settings.fps)):
        t = k / settings.fps
        at = int(round(t * pps))
        header = _text_image([f"{name}   t = {t:6.2f} s of {duration_s:.2f} s   "
                              f"(window {settings.window_s:g} s, {settings.fps:g} frames/s)"],
                             (FRAME_WIDTH, HEADER_HEIGHT))
        rows = [header]
        for label, strip in zip(labels, padded, strict=True):
            view = strip[:, at:at + width].copy()
            view[:, half - 1:half + 2] = CURSOR  # 3 px: it survives 4:2:0 chroma
            rows.append(np.concatenate([label, view], axis=1))
        yield np.concatenate(rows, axis=0)


def write_video(path: str, pictures: Iterator[np.ndarray], audio: np.ndarray,
                settings: AnimationSettings) -> dict:
    """Encodes ``pictures`` (H.264, yuv420p, ``fps``) and ``audio`` (mono float32 at
    AUDIO_RATE_HZ, AAC) into an MP4 at ``path`` (local); returns frames written and seconds."""
    from fractions import Fraction

    import av

    rate = Fraction(settings.fps).limit_denominator(1000)
    written = 0
    with av.open(path, "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=rate)
        video.pix_fmt = "yuv420p"
        video.options = {"crf": "23", "preset": "veryfast"}
        sound = out.add_stream("aac", rate=AUDIO_RATE_HZ, layout="mono")
        first = True
        for picture in pictures:
            if first:
                video.height, video.width = picture.shape[0] - picture.shape[0] % 2, \
                    picture.shape[1] - picture.shape[1] % 2
                first = False
            frame = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(picture[:video.height, :video.width]), format="rgb24")
            frame.pts = written
            frame.time_base = 1 / rate
            for packet in video.encode(frame):
                out.mux(packet)
            written += 1
        for packet in video.encode(None):
            out.mux(packet)
        block = 1024
        for start in range(0, len(audio), block):
            chunk = np.ascontiguousarray(audio[start:start + block][None, :], np.float32)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate = AUDIO_RATE_HZ
            frame.pts = start
            for packet in sound.encode(frame):
                out.mux(packet)
        for packet in sound.encode(None):
            out.mux(packet)
    return {"frames": written, "video_s": written / settings.fps,
            "audio_s": len(audio) / AUDIO_RATE_HZ}


def animate(source: str, embeddings: Sequence, output: str,
            settings: AnimationSettings = AnimationSettings()) -> dict:
    """The animation of ``source`` (a path or URL) with the ``embeddings`` of its models
    (:class:`~orca_beam.models.embed.FileEmbeddings`, from ``embed_file``) into ``output``
    (an .mp4, local). Returns what was written: frames, fps, window_s, seconds, models."""
    audio = load_audio(source, AUDIO_RATE_HZ)
    duration_s = len(audio) / AUDIO_RATE_HZ
    pps = settings.px_per_s
    panels = [Panel("waveform", waveform_strip(audio, AUDIO_RATE_HZ, pps)),
              Panel(f"spectrogram\n0-{CLIP_RATE_HZ // 2000} kHz",
                    spectrogram_strip(load_audio(source, CLIP_RATE_HZ), pps))]
    for item in embeddings:
        title = f"{item.model}\n{item.embeddings.shape[1]}-d, {len(item.embeddings)} windows"
        if item.standin:
            title += "\nSTAND-IN: random\nweights, not a real\nembedding"
        panels.append(Panel(title, embedding_strip(item.embeddings, item.start_s, duration_s,
                                                   pps)))
    name = source.rstrip("/").rsplit("/", 1)[-1]
    summary = write_video(output, frames(panels, duration_s, name, settings), audio, settings)
    return {**summary, "fps": settings.fps, "window_s": settings.window_s,
            "duration_s": duration_s, "models": [e.model for e in embeddings],
            "standin": {e.model: e.standin for e in embeddings}, "output": output}
