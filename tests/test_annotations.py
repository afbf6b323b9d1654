"""Annotation parsing, column mappings, path safety, row decisions, negatives and model windows."""

from __future__ import annotations

import pytest

from orca_beam.core.annotations import (
    BAD_ROW,
    DEFAULT_CONFIG,
    EMBEDDED,
    NO_CALL,
    OUTSIDE_FILE,
    REJECTED,
    ZERO_DURATION,
    load_mapping,
    parse_annotations,
    plan_window,
    resolve_under_root,
    sample_negatives,
    zero_padded_samples,
)
from orca_beam.core.annotations import decide_rows as decide
from orca_beam.core.framing import num_frames
from orca_beam.core.registry import get_model_spec

ORCAML = ("dataset\twav_filename\tstart_time_s\tduration_s\tlocation\tdate\t"
          "pst_or_master_tape_identifier\n"
          "podcast_round1\t60012.wav\t34.126\t2.918\tDabob Bay, Seattle, Washington\t1960-10-28"
          "\t60012\n"
          "podcast_round1\t60013.wav\t0.0\t0.0\tDabob Bay, Seattle, Washington\t1960-10-28"
          "\t60013\n")


def test_orcaml_config_reads_the_published_format_unchanged():
    mapping = load_mapping(DEFAULT_CONFIG)
    header, rows = parse_annotations(ORCAML, mapping, "annotations.tsv")
    assert header == ["dataset", "wav_filename", "start_time_s", "duration_s", "location",
                      "date", "pst_or_master_tape_identifier"]
    assert [(r.row, r.file, r.start_s, r.duration_s) for r in rows] == [
        (1, "60012.wav", 34.126, 2.918), (2, "60013.wav", 0.0, 0.0)]
    assert rows[0].columns["location"] == "Dabob Bay, Seattle, Washington"
    assert rows[0].columns["start_time_s"] == "34.126"
    assert rows[0].segment_id == "row:1"


def test_other_layouts_work_by_config_alone(tmp_path):
    config = tmp_path / "tags.yaml"
    config.write_text("annotations:\n  time_scale: 0.001\n"
                      "  columns: {file: filename, start_s: begin_ms, end_s: end_ms}\n")
    text = ("filename,begin_ms,end_ms,tag,date\n"
            "a.wav,1500,2250,S01,1629919500\n"
            "b.wav,x,10,S02,1629919501\n")
    header, rows = parse_annotations(text, load_mapping(config), "calls.csv")
    assert header == ["filename", "begin_ms", "end_ms", "tag", "date"]
    assert rows[0].start_s == pytest.approx(1.5) and rows[0].duration_s == pytest.approx(0.75)
    assert rows[0].columns == {"filename": "a.wav", "begin_ms": "1500", "end_ms": "2250",
                               "tag": "S01", "date": "1629919500"}
    assert rows[1].start_s is None and rows[1].duration_s is None
    assert decide([rows[1]], 10.0)[0].reason == BAD_ROW


def test_config_and_header_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("columns: {file: f, start_s: s}\n")
    with pytest.raises(ValueError, match="exactly one of duration_s / end_s"):
        load_mapping(bad)
    bad.write_text("colums: {}\n")
    with pytest.raises(ValueError, match="unknown keys"):
        load_mapping(bad)
    with pytest.raises(ValueError, match=r"columns \['duration_s'\] not in the header"):
        parse_annotations("wav_filename\tstart_time_s\nx.wav\t1\n", load_mapping(), "a.tsv")


@pytest.mark.parametrize("name, resolved", [
    ("60012.wav", "/root/wav/60012.wav"),
    ("sub/60012.wav", "/root/wav/sub/60012.wav"),
    ("./sub//60012.wav", "/root/wav/sub/60012.wav"),
    ("../catalog/S01.wav", None),
    ("sub/../../x.wav", None),
    ("sub/../x.wav", None),
    ("/etc/passwd", None),
    ("\\\\server\\share\\x.wav", None),
    ("gs://other-bucket/x.wav", None),
    ("C:/x.wav", None),
    ("", None),
])
def test_file_names_never_leave_the_root(name, resolved):
    assert resolve_under_root("/root/wav/", name) == resolved


def test_gs_roots_join_the_same_way():
    assert resolve_under_root("gs://bucket/orcaml/wav", "a b,c.wav") == \
        "gs://bucket/orcaml/wav/a b,c.wav"


def test_row_decisions():
    mapping = load_mapping()
    text = ORCAML.splitlines()[0] + "\n" + "".join(
        f"d\t{f}\t{s}\t{d}\tl\tx\tt\n" for f, s, d in [
            ("a.wav", 1.0, 2.0), ("a.wav", 0.0, 0.0), ("a.wav", 9.0, 2.0),
            ("a.wav", 9.0, 1.0005), ("a.wav", -1, 1), ("b.wav", 0.0, 0.0)])
    _, rows = parse_annotations(text, mapping)
    got = [(d.status, d.reason) for d in decide(rows[:5], 10.0)]
    assert got == [(EMBEDDED, ""), (REJECTED, ZERO_DURATION), (REJECTED, OUTSIDE_FILE),
                   (EMBEDDED, ""), (REJECTED, BAD_ROW)]
    assert [(d.status, d.reason) for d in decide(rows[5:], 10.0)] == [(NO_CALL, "")]


def test_negatives_are_call_free_seeded_and_order_independent():
    calls = [(2.5, 5.6), (10.0, 10.2), (20.25, 25.75)]
    first = sample_negatives(calls, 33.6, 3, 3.0, 3.9124, seed=0, key="someCalls.wav")
    again = sample_negatives(list(reversed(calls)), 33.6, 3, 3.0, 3.9124, 0, "someCalls.wav")
    other = sample_negatives(calls, 33.6, 3, 3.0, 3.9124, 1, "someCalls.wav")
    assert first == again and first != other
    assert len(first) == 3 and first == sorted(first)
    for start, end in first:
        assert end - start == pytest.approx(3.0)
        centre = (start + end) / 2
        clear = (centre - 3.9124 / 2, centre + 3.9124 / 2)
        assert clear[0] >= -1e-9 and clear[1] <= 33.6 + 1e-9
        assert all(clear[1] <= a + 1e-9 or clear[0] >= b - 1e-9 for a, b in calls)
    # more than fit: every tile, no overlap
    many = sample_negatives(calls, 33.6, 100, 3.0, 3.9124, 0, "someCalls.wav")
    assert len(many) == 5
    assert all(b[0] - a[1] >= 0.9124 - 1e-6 for a, b in zip(many, many[1:], strict=False))
    assert sample_negatives([(0.0, 33.6)], 33.6, 2, 3.0, 3.9, 0, "x") == []


@pytest.mark.parametrize("model, start_s, end_s, frames", [
    ("vggish", 10.0, 10.2, 1),     # shorter than a window: one, centred
    ("vggish", 2.5, 5.6, 3),       # 3.1 s: frames wholly inside the call
    ("yamnet", 0.3, 1.8, 3),       # YAMNet covers the call: 1 + ceil((24000-15600)/7680)
    ("humpback", 20.25, 25.75, 2),
    ("humpback", 0.3, 1.8, 1),
])
def test_model_windows_are_centred_on_the_call(model, start_s, end_s, frames):
    spec = get_model_spec(model)
    window = plan_window(spec, start_s, end_s)
    rate = spec.sample_rate_hz
    assert window.num_frames == frames
    assert window.num_frames == max(1, num_frames(spec, round((end_s - start_s) * rate)))
    assert window.num_samples == (frames - 1) * spec.hop_samples + spec.window_samples
    centre = window.start_sample + window.num_samples / 2
    assert abs(centre - (start_s + end_s) / 2 * rate) <= 0.5


def test_zero_padding_is_counted_at_the_file_edges():
    spec = get_model_spec("humpback")
    window = plan_window(spec, 0.3, 1.8)  # centred at 1.05 s: 0.906 s before the file start
    assert window.start_sample == -9062
    assert zero_padded_samples(window, 117_000) == 9062
    assert zero_padded_samples(window, 20_000) == 9062 + window.num_samples - 9062 - 20_000


def test_pooling_mean_max_and_frames():
    import numpy as np

    from orca_beam.sources.calls import pool

    frames = np.array([[1.0, -2.0], [3.0, 4.0], [2.0, 1.0]], np.float32)
    np.testing.assert_array_equal(pool(frames, "mean"), [[2.0, 1.0]])
    np.testing.assert_array_equal(pool(frames, "max"), [[3.0, 4.0]])
    assert pool(frames, "frames") is frames
    with pytest.raises(ValueError, match="pooling"):
        pool(frames, "median")
