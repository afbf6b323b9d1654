"""HLS folders written the way Orcasound's nodes write theirs (FFmpeg's HLS muxer, inside PyAV),
for the tests and the benchmarks. Generated on the fly, never kept in the repository."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from orca_beam.core.hls import PLAYLIST_NAME


def write_hls_folder(samples: np.ndarray, folder: Path, *, date_times: bool = True,
                     first_pdt: datetime | None = None, jump_at_s: float | None = None,
                     jump_s: float = 0.0) -> Path:
    """Writes ``samples`` [n, channels] (48 kHz) as an HLS folder with FFmpeg's HLS muxer inside
    PyAV (AAC, 10 s segments, live%03d.ts, live.m3u8 listing all). The muxer stamps
    #EXT-X-PROGRAM-DATE-TIME from the clock: the lines are rewritten to ``first_pdt`` plus the
    segments' #EXTINF, or removed (an older folder). ``jump_at_s`` / ``jump_s``: the audio from
    that second on is stamped ``jump_s`` later (a timestamp jump: samples lost at the node)."""
    import av

    folder.mkdir(parents=True, exist_ok=True)
    layout = "mono" if samples.shape[1] == 1 else "stereo"
    options = {"hls_time": "10", "hls_segment_filename": str(folder / "live%03d.ts"),
               "hls_flags": "program_date_time", "hls_list_size": "0"}
    with av.open(str(folder / PLAYLIST_NAME), "w", format="hls", options=options) as out:
        stream = out.add_stream("aac", rate=48000, layout=layout)
        for start in range(0, len(samples), 48000):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples[start:start + 48000].T), format="fltp",
                layout=layout)
            late = jump_at_s is not None and start >= jump_at_s * 48000
            frame.sample_rate = 48000
            frame.pts = start + (round(jump_s * 48000) if late else 0)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    playlist = folder / PLAYLIST_NAME
    lines, at, duration = [], first_pdt, 0.0
    for line in playlist.read_text().splitlines():
        if line.startswith("#EXT-X-PROGRAM-DATE-TIME"):
            if date_times:
                lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{at.isoformat(timespec='milliseconds')}")
            continue
        if line.startswith("#EXTINF:"):
            duration = float(line.split(":", 1)[1].rstrip(","))
        elif not line.startswith("#") and at is not None:
            at += timedelta(seconds=duration)  # the next segment's date-time
        lines.append(line)
    playlist.write_text("\n".join(line for line in lines if line) + "\n")
    return folder
