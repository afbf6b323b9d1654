"""HLS folders: playlist parsing, segment order past live999, folder choice, UTC start times
in any machine zone, and one continuous decode across segments, against fixtures written here by
PyAV's own HLS muxer from a real recording (the way Orcasound's nodes write theirs)."""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from orca_beam.core.hls import (
    FOLDER_PLUS_DURATIONS,
    PROGRAM_DATE_TIME,
    PTS_WRAP_S,
    Decoded,
    Segment,
    Unreadable,
    decode_segments,
    folder_start,
    order_segments,
    parse_datetime,
    parse_playlist,
    pts_difference_s,
    segment_starts,
    select_folders,
    unwrap_offset_s,
)
from orca_beam.testing.hls_fixtures import write_hls_folder

FOLDER_S = 1_633_046_400  # 2021-10-01T00:00:00Z


@pytest.fixture(scope="module")
def audio(orca_calls) -> np.ndarray:
    samples, rate = sf.read(str(orca_calls / "hydrophone" / "210825-1925_L-highlight.wav"),
                            dtype="float32", always_2d=True)
    assert rate == 48000
    return np.concatenate([samples] * 3)[:48000 * 35]  # 35 s: 3 full segments and a part


@pytest.fixture(scope="module")
def folder(audio, tmp_path_factory) -> Path:
    first = datetime(2021, 10, 1, 0, 0, 2, 500000, tzinfo=UTC)  # 2.5 s after the folder name
    return write_hls_folder(audio, tmp_path_factory.mktemp("hls") / str(FOLDER_S),
                            first_pdt=first)


def test_playlist_durations_and_program_date_times(folder):
    segments = parse_playlist((folder / "live.m3u8").read_text())
    assert [s.name for s in segments] == [f"live{i:03d}.ts" for i in range(4)]
    assert [s.number for s in segments] == [0, 1, 2, 3]
    assert all(abs(s.duration_s - 10.005333) < 1e-6 for s in segments[:3])
    assert 4.9 < segments[3].duration_s < 5.2
    assert segments[0].program_date_time == datetime(2021, 10, 1, 0, 0, 2, 500000, tzinfo=UTC)
    starts = segment_starts(segments, folder_start(folder.name))
    assert [source for _, source in starts] == [PROGRAM_DATE_TIME] * 4
    assert abs((starts[2][0] - starts[0][0]).total_seconds() - 2 * 10.005333) < 1e-3


def test_without_date_times_the_folder_time_plus_real_durations(audio, tmp_path):
    older = write_hls_folder(audio, tmp_path / str(FOLDER_S), date_times=False)
    segments = parse_playlist((older / "live.m3u8").read_text())
    assert all(s.program_date_time is None for s in segments)
    starts = segment_starts(segments, folder_start(older.name))
    assert starts[0] == (datetime(2021, 10, 1, tzinfo=UTC), FOLDER_PLUS_DURATIONS)
    # the real #EXTINF sum, not 10 s (#EXT-X-TARGETDURATION) per segment
    assert (starts[3][0] - starts[0][0]).total_seconds() == pytest.approx(3 * 10.005333)


@pytest.mark.parametrize("text", ["2021-10-01T00:00:02.500Z", "2021-10-01T00:00:02.500+00:00",
                                  "2021-10-01T00:00:02.500+0000",
                                  "2021-09-30T17:00:02.500-07:00"])
def test_date_times_with_any_offset_are_the_same_utc_instant(text):
    assert parse_datetime(text) == datetime(2021, 10, 1, 0, 0, 2, 500000, tzinfo=UTC)


def test_a_time_without_zone_is_refused():
    with pytest.raises(ValueError, match="no zone"):
        parse_datetime("2021-10-01T00:00:02")


@pytest.mark.parametrize("zone", ["America/Los_Angeles", "Asia/Kolkata"])
def test_the_machine_zone_never_matters(folder, zone):
    saved = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        assert folder_start(str(FOLDER_S)) == datetime(2021, 10, 1, tzinfo=UTC)
        segments = parse_playlist((folder / "live.m3u8").read_text())
        starts = segment_starts(segments, folder_start(folder.name))
        assert starts[1][0].isoformat(timespec="milliseconds") == "2021-10-01T00:00:12.505+00:00"
        plain = [replace_pdt(s) for s in segments]
        assert segment_starts(plain, folder_start(folder.name))[1][0] == datetime(
            2021, 10, 1, 0, 0, 10, 5333, tzinfo=UTC)
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()


def replace_pdt(segment: Segment) -> Segment:
    from dataclasses import replace

    return replace(segment, program_date_time=None)


def test_segments_sort_by_number_past_999_and_strays_are_marked():
    playlist = parse_playlist("#EXTM3U\n#EXTINF:10.005,\nlive998.ts\n#EXTINF:10.005,\n"
                              "live999.ts\n#EXTINF:10.005,\nlive1000.ts\n#EXTINF:0.085,\n"
                              "live1001.ts\n")
    files = ["hls/1/live1000.ts", "hls/1/live999.ts", "hls/1/live1001.ts", "hls/1/live1002.ts",
             "hls/1/live.m3u8"]
    ordered = order_segments(playlist, files)
    assert [s.name for s in ordered] == ["live998.ts", "live999.ts", "live1000.ts",
                                         "live1001.ts", "live1002.ts"]
    assert [(s.in_playlist, s.present) for s in ordered] == [
        (True, False), (True, True), (True, True), (True, True), (False, True)]
    assert ordered[3].duration_s == 0.085 and ordered[4].duration_s is None


def test_folders_overlapping_a_range_include_the_one_begun_before():
    names = ["hls/1633046400", "hls/1633068000", "hls/1633089600", "hls/latest.txt"]
    at = datetime.fromtimestamp
    assert select_folders(names, at(1633050000, UTC), at(1633070000, UTC)) == [
        "hls/1633046400", "hls/1633068000"]
    assert select_folders(names, at(1633068000, UTC), at(1633068001, UTC)) == ["hls/1633068000"]
    assert select_folders(names, at(1633000000, UTC), at(1633046400, UTC)) == []


def test_one_decoder_across_segments_equals_ffmpegs_own_hls_demuxer(folder):
    import av

    with av.open(str(folder / "live.m3u8")) as container:
        reference = np.concatenate([f.to_ndarray().T for f in container.decode(audio=0)])
    segments = order_segments(parse_playlist((folder / "live.m3u8").read_text()),
                              [p.name for p in folder.iterdir()])
    decoded = list(decode_segments((s, (folder / s.name).read_bytes()) for s in segments))
    assert all(isinstance(d, Decoded) for d in decoded)
    assert [d.gap_before_s for d in decoded] == [None, 0.0, 0.0, 0.0]
    joined = np.concatenate([d.samples for d in decoded])
    assert joined.shape == reference.shape
    np.testing.assert_array_equal(joined, reference)
    # each segment holds its #EXTINF of audio (469 or 470 AAC frames of 1024 samples)
    for item in decoded[:3]:
        assert abs(len(item.samples) / 48000 - item.segment.duration_s) < 1024 / 48000


def test_a_missing_segment_is_a_timestamp_gap_and_a_corrupt_one_is_unreadable(folder):
    segments = order_segments(parse_playlist((folder / "live.m3u8").read_text()),
                              [p.name for p in folder.iterdir()])
    data = {s.name: (folder / s.name).read_bytes() for s in segments}
    decoded = list(decode_segments((s, data[s.name]) for s in segments if s.number != 1))
    assert decoded[1].segment.number == 2
    assert decoded[1].gap_before_s == pytest.approx(segments[1].duration_s, abs=0.03)
    assert decoded[1].first_pts_s - decoded[0].first_pts_s == pytest.approx(
        segments[0].duration_s + segments[1].duration_s, abs=0.03)
    broken = b"\x47" + bytes(187) * 1 + b"not a transport stream" * 100
    items = [(segments[0], data["live000.ts"]), (segments[1], broken),
             (segments[2], data["live002.ts"])]
    results = list(decode_segments(items))
    assert isinstance(results[0], Decoded) and isinstance(results[2], Decoded)
    assert isinstance(results[1], Unreadable) and results[1].segment.number == 1
    assert re.search(r"\w", results[1].error)


def test_mpeg_ts_times_across_the_33_bit_wrap():
    """A folder longer than 26.5 h: its clock wraps, and the playlist's durations say how often."""
    wrap = PTS_WRAP_S
    assert pts_difference_s(5.0, wrap - 5.0) == pytest.approx(10.0)
    assert pts_difference_s(wrap - 5.0, 5.0) == pytest.approx(-10.0)
    assert unwrap_offset_s(pts_difference_s(100.0, 50.0), 50.0) == pytest.approx(50.0)
    # 30 h into a folder the difference has wrapped once: the estimate picks the right turn
    later = (50.0 + 30 * 3600) % wrap
    assert unwrap_offset_s(pts_difference_s(later, 50.0), 30 * 3600 + 0.4) == pytest.approx(
        30 * 3600)
    assert unwrap_offset_s(pts_difference_s(later, 50.0), None) == pytest.approx(
        30 * 3600 - wrap)
