"""pipelines.animate on a real hydrophone recording, opened again with PyAV: the frame count and
duration (to one frame), the audio stream in sync with the recording (its lag found by
cross-correlation), the frame's layout and cursor, and a stand-in model's panel named as one."""

from __future__ import annotations

import math

import numpy as np
import pytest

from orca_beam.core.audio import load_audio
from orca_beam.reports.animation import (
    AUDIO_RATE_HZ,
    CURSOR,
    FRAME_WIDTH,
    HEADER_HEIGHT,
    LABEL_WIDTH,
    PANEL_HEIGHT,
    embedding_strip,
    frame_count,
)

FPS = 5.0


def test_embedding_strip_shows_the_window_covering_each_second():
    embeddings = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)
    strip = embedding_strip(embeddings, np.array([0.0, 1.0]), 2.0, px_per_s=10, rows=2)
    assert strip.shape == (2, 20, 3)
    assert (strip[:, :10] == strip[:, :1]).all() and (strip[:, 10:] == strip[:, 10:11]).all()
    assert not (strip[:, 0] == strip[:, 10]).all()
    assert frame_count(11.714, 5.0) == 59 and frame_count(2.0, 5.0) == 10


@pytest.mark.e2e
def test_animation_has_every_frame_and_the_audio_in_sync(orca_calls, standin_dir, tmp_path):
    import av

    from pipelines import animate

    recording = str(orca_calls / "hydrophone" / "210825-1925_L-highlight.wav")
    output = tmp_path / "anim.mp4"
    summary = animate.run([recording, "--model=birdnet", "--model=vggish",
                           f"--model_handle=vggish={standin_dir / 'vggish'}",
                           f"--output={output}", f"--fps={FPS:g}", "--window_s=8"])
    original = load_audio(recording, AUDIO_RATE_HZ)
    duration = len(original) / AUDIO_RATE_HZ
    frames = math.ceil(duration * FPS)
    assert summary["frames"] == frames == 59 and summary["standin"] == {
        "birdnet": False, "vggish": True}
    with av.open(str(output)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0]
        assert (video.codec_context.name, audio.codec_context.name) == ("h264", "aac")
        assert float(video.average_rate) == FPS
        assert (video.width, video.height) == (FRAME_WIDTH, HEADER_HEIGHT + 4 * PANEL_HEIGHT)
        pictures = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(pictures) == frames
    assert abs(frames / FPS - duration) <= 1 / FPS
    with av.open(str(output)) as container:
        sound = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])
    assert len(sound) / AUDIO_RATE_HZ == pytest.approx(duration, abs=0.05)
    span = 4 * AUDIO_RATE_HZ
    lag = int(np.argmax(np.correlate(sound[:span + 4800], original[:span], "valid")))
    assert lag <= AUDIO_RATE_HZ // 1000  # in sync to 1 ms
    assert np.corrcoef(sound[lag:lag + span], original[:span])[0, 1] > 0.95
    # the cursor: the middle column of the plots is red in every panel row
    middle = LABEL_WIDTH + (FRAME_WIDTH - LABEL_WIDTH) // 2
    column = pictures[30][HEADER_HEIGHT:, middle].astype(int)
    redness = column[:, 0] - column[:, 1:].max(axis=1)
    assert CURSOR[0] > 200 and (redness > 80).mean() > 0.9
    # frames move: the waveform under the cursor differs from frame to frame
    assert not np.array_equal(pictures[10][HEADER_HEIGHT:HEADER_HEIGHT + PANEL_HEIGHT],
                              pictures[20][HEADER_HEIGHT:HEADER_HEIGHT + PANEL_HEIGHT])
