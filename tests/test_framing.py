"""Frame counts follow the published formulas; chunking reproduces the whole-file grid."""

from __future__ import annotations

import math

import numpy as np
import pytest

from orca_beam.core.framing import Chunker, frame_times_s, num_frames
from orca_beam.core.registry import get_model_spec

VGGISH, YAMNET, HUMPBACK, BIRDNET = (get_model_spec(n)
                                     for n in ("vggish", "yamnet", "humpback", "birdnet"))


def vggish_formula(n):
    return max(0, (n - 15600) // 15360 + 1)


def yamnet_formula(n):
    return 1 + math.ceil(max(0, n - 15600) / 7680)


def humpback_formula(n, hop=128):
    frames = 0 if n < 1024 else 1 + (n - 1024) // 300
    return 0 if frames == 0 else 1 + math.ceil(max(0, frames - 128) / hop)


@pytest.mark.parametrize("n", [1, 399, 15599, 15600, 15601, 23280, 23281, 30959, 30960, 48000,
                               160000, 980000, 16000 * 3600])
def test_counts_match_the_published_formulas(n):
    assert num_frames(VGGISH, n) == vggish_formula(n)
    assert num_frames(YAMNET, n) == yamnet_formula(n)


@pytest.mark.parametrize("n", [1023, 1024, 39123, 39124, 49024, 100000, 18_000_000])
@pytest.mark.parametrize("hop", [128, 64, 33])
def test_humpback_counts(n, hop):
    assert num_frames(HUMPBACK.with_hop_units(hop), n) == humpback_formula(n, hop)


def birdnet_segments(n, hop_s=3.0, rate=48000):
    """BirdNET-Analyzer's segments (``birdnet`` 1.1 ``get_segments_with_overlap_all_int``): one
    starts at every hop before the end of the audio."""
    starts, start, step = [], 0, int(round(hop_s * rate))
    while start < n:
        starts.append(start)
        start += step
    return starts


@pytest.mark.parametrize("n", [1, 33_600, 47_999, 48_000, 143_999, 144_000, 144_001, 191_999,
                               192_000, 345_600, 48_000 * 3600])
@pytest.mark.parametrize("hop_s", [3.0, 1.5, 1.0])
def test_birdnet_counts_follow_birdnet_analyzer(n, hop_s):
    spec = BIRDNET.with_hop_units(int(hop_s * 48000))
    assert num_frames(spec, n) == len(birdnet_segments(n, hop_s))
    start, end = frame_times_s(spec, 0, num_frames(spec, n), n)
    np.testing.assert_allclose(start, np.array(birdnet_segments(n, hop_s)) / 48000)
    np.testing.assert_allclose(end, np.minimum(start + 3.0, n / 48000))


def test_documented_table_values():
    assert [num_frames(YAMNET, n) for n in (0, 1, 15600, 15601, 23281, 48000, 980000)] == [
        0, 1, 1, 2, 3, 6, 127]
    assert [num_frames(VGGISH, n) for n in (15599, 15600, 30959, 30960, 48000)] == [0, 1, 1, 2, 3]
    # BirdNET: a 0.7 s catalogue clip gives one zero-filled window; 7.2 s gives three
    assert [num_frames(BIRDNET, n) for n in (0, 33_600, 144_000, 144_001, 345_600)] == [
        0, 1, 1, 2, 3]


def test_times_are_the_window_span_clipped_to_the_file():
    start, end = frame_times_s(YAMNET, 0, 3, 23281)
    np.testing.assert_allclose(start, [0.0, 0.48, 0.96])
    np.testing.assert_allclose(end, [0.975, 1.455, 23281 / 16000])
    start, end = frame_times_s(HUMPBACK, 2, 1)
    assert start[0] == pytest.approx(7.68) and end[0] == pytest.approx(7.68 + 3.9124)


@pytest.mark.parametrize("spec", [VGGISH, YAMNET, HUMPBACK, HUMPBACK.with_hop_units(50), BIRDNET,
                                  BIRDNET.with_hop_units(50_000)],
                         ids=["vggish", "yamnet", "humpback", "humpback-hop50", "birdnet",
                              "birdnet-hop50000"])
@pytest.mark.parametrize("n", [500, 15600, 40000, 200_003, 1_000_000])
def test_chunker_pieces_tile_the_whole_file_grid(spec, n):
    signal = np.arange(n, dtype=np.float32)
    chunker = Chunker(spec, "f.wav", channel=0, chunk_frames=7)
    pieces = []
    for block in np.array_split(signal, 13):
        pieces += list(chunker.push(block))
    pieces += list(chunker.finish())
    expected = num_frames(spec, n)
    assert sum(p.num_frames for p in pieces) == expected
    next_frame = 0
    for piece in pieces:
        assert piece.first_frame == next_frame
        next_frame += piece.num_frames
        assert piece.num_frames <= 7
        # the piece holds exactly the file's samples from its offset
        np.testing.assert_array_equal(
            piece.samples, signal[piece.offset_samples:piece.offset_samples + len(piece.samples)])
        first_unit = piece.first_frame * spec.hop_units
        assert piece.offset_samples == (first_unit - piece.warmup_units) * spec.unit_hop_samples
        # full pieces hold every sample their windows need
        if not piece.is_last:
            need_end = (piece.first_frame + piece.num_frames - 1) * spec.hop_samples \
                + spec.window_samples
            assert piece.offset_samples + len(piece.samples) == need_end
    assert pieces == [] or pieces[-1].is_last or expected % 7 == 0


@pytest.mark.parametrize("name", ["vggish", "yamnet", "humpback"])
def test_run_chunker_spans_give_the_full_windows_of_one_pass(name):
    """A stream cut into spans (each with look-behind, owning the frames that end in it) gives
    the full windows of one pass: same frames, same samples, none twice, none zero-padded."""
    from orca_beam.core.framing import RunChunker

    spec = get_model_spec(name)
    rate = spec.sample_rate_hz
    signal = np.random.default_rng(3).standard_normal(rate * 40).astype(np.float32)
    whole = RunChunker(spec, "s", channel=-1, chunk_frames=5, origin=0, valid_from=0)
    whole.own(owned_from=0)
    one = [p for block in np.array_split(signal, 7) for p in whole.push(block)]
    one += list(whole.finish())
    frames = [f for p in one for f in range(p.first_frame, p.first_frame + p.num_frames)]
    full = (len(signal) - spec.window_samples) // spec.hop_samples + 1
    assert frames == list(range(full))
    cuts = [0, rate * 13 + 7, rate * 29 + 11, len(signal)]
    behind = spec.window_samples + (512 * 300 if name == "humpback" else 0) + rate // 5
    got = []
    for lo, hi in zip(cuts, cuts[1:], strict=False):
        start = max(0, lo - behind)
        chunker = RunChunker(spec, "s", channel=-1, chunk_frames=5, origin=start,
                             valid_from=start if start == 0 else start + behind
                             - spec.window_samples)
        pieces = list(chunker.push(signal[start:lo]))
        chunker.own(owned_from=lo)
        if hi < len(signal):
            chunker.own(owned_to=hi)
        pieces += list(chunker.push(signal[lo:min(hi + rate, len(signal))]))
        pieces += list(chunker.finish())
        got += pieces
    got_frames = [f for p in got for f in range(p.first_frame, p.first_frame + p.num_frames)]
    assert got_frames == frames
    for piece in got:
        first_unit = piece.first_frame * spec.hop_units
        assert piece.warmup_units == min(whole.warmup_units, first_unit)  # PCEN fully warmed
        assert piece.offset_samples == (first_unit - piece.warmup_units) * spec.unit_hop_samples
        np.testing.assert_array_equal(
            piece.samples, signal[piece.offset_samples:piece.offset_samples
                                  + len(piece.samples)])
        assert piece.offset_samples + len(piece.samples) == (
            (piece.first_frame + piece.num_frames - 1) * spec.hop_samples + spec.window_samples)


@pytest.mark.parametrize("name", ["vggish", "yamnet", "humpback", "birdnet"])
def test_run_chunker_rows_cover_a_run_between_two_gaps(name):
    """A run that starts between two grid frames (after a gap) and ends before a gap: its first
    row starts at its first sample, its last row ends at its last sample (zero-padded), the rows
    cover every sample of it, and spans of the run (each with look-behind) give the same rows."""
    from orca_beam.core.framing import RunChunker

    spec = get_model_spec(name)
    rate, hop, window = spec.sample_rate_hz, spec.hop_samples, spec.window_samples
    origin = 17 * hop + hop // 3  # the first sample after a gap, off the grid
    end = origin + rate * 31 + 123  # the last sample before the next gap, + 1
    signal = np.random.default_rng(5).standard_normal(end).astype(np.float32)

    def rows(pieces):
        out = []
        for piece in pieces:
            start, stop = piece.bounds_samples(spec)
            out += [(int(a), int(b), piece.first_frame + k) for k, (a, b)
                    in enumerate(zip(start, stop, strict=True))]
            np.testing.assert_array_equal(  # the samples are the stream's, from the offset
                piece.samples, signal[piece.offset_samples:piece.offset_samples
                                      + len(piece.samples)])
        return out

    whole = RunChunker(spec, "s", channel=-1, chunk_frames=4, origin=origin, valid_from=origin,
                       true_start=True)
    whole.own(owned_from=origin)
    one = [p for block in np.array_split(signal[origin:], 9) for p in whole.push(block)]
    one += list(whole.finish(gap=True))
    got = rows(one)
    assert got[0][:2] == (origin, origin + window)
    assert one[0].shift_samples == origin - 17 * hop and one[0].first_frame == 17
    assert got[1][0] == 18 * hop and all(p.shift_samples == 0 for p in one[1:])
    assert got[-1][1] == end and one[-1].file_samples == end
    assert got[-2][1] < end  # the padded window is needed: the last full one ends earlier
    covered = np.zeros(end, bool)
    for a, b, _ in got:
        covered[a:b] = True
    assert covered[origin:].all() and not covered[:origin].any()
    # without a gap after it (the end of the audio so far), the partial hop is left out
    again = RunChunker(spec, "s", channel=-1, chunk_frames=4, origin=origin, valid_from=origin,
                       true_start=True)
    again.own(owned_from=origin)
    assert rows([*again.push(signal[origin:]), *again.finish()]) == got[:-1]
    # spans owning [cut_k, cut_k+1), each decoding from a look-behind that reaches the gap
    # (a true start) or starts later (settling, no start window)
    behind = window + (512 * 300 if name == "humpback" else 0) + rate // 5
    cuts = [origin, origin + rate * 2, origin + rate * 13 + 7, end]
    spans = []
    for lo, hi in zip(cuts, cuts[1:], strict=False):
        start = max(origin, lo - behind)
        chunker = RunChunker(spec, "s", channel=-1, chunk_frames=4, origin=start,
                             valid_from=start if start == origin else start + behind - window,
                             true_start=start == origin)
        pieces = list(chunker.push(signal[start:lo]))
        chunker.own(owned_from=lo)
        if hi < end:
            chunker.own(owned_to=hi)
        pieces += list(chunker.push(signal[lo:min(hi + rate * 10, end)]))
        pieces += list(chunker.finish(gap=hi + rate * 10 >= end))
        spans += pieces
    assert sorted(rows(spans)) == sorted(got)
