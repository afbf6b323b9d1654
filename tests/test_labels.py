"""The label table: TSV or CSV, key column, matching by base name or stem, clear errors."""

from __future__ import annotations

import pytest

from orca_beam.labels import parse_labels, read_labels


def test_tsv_keyed_by_its_first_column_matches_base_name_then_stem(tmp_path):
    path = tmp_path / "labels.tsv"
    path.write_text("wav_filename\tcall_type\tpod\nS01-J-1.wav\tS01\tJ\nS02-K-1\tS02\tK\n\n")
    table = read_labels(str(path))
    assert (table.key_column, table.columns) == ("wav_filename", ("call_type", "pod"))
    assert table.lookup("gs://bucket/calls/S01-J-1.wav") == ("S01", "J")
    assert table.lookup("recordings/S02-K-1.flac") == ("S02", "K")
    assert table.lookup("recordings/S03.wav") is None
    assert table.cells("recordings/S03.wav") == (("call_type", ""), ("pod", ""))
    assert table.as_dict("S01-J-1.wav") == {"call_type": "S01", "pod": "J"}
    assert table.settings()["fingerprint"].startswith("crc32c:")


def test_csv_with_another_key_column_and_quoted_cells():
    table = parse_labels('call,file\n"S01, loud",a.wav\nS02,b.wav\n', "l.csv", "file")
    assert table.columns == ("call",)
    assert table.lookup("x/a.wav") == ("S01, loud",)


@pytest.mark.parametrize("text, key, message", [
    ("", None, "no header"),
    ("file\tcall\na.wav\tS01\n", "name", "no column 'name'"),
    ("file\tcall\na.wav\tS01\na.wav\tS02\n", None, "line 3: 'file' 'a.wav' appears twice"),
    ("file\tcall\n\tS01\n", None, "line 2: empty 'file'"),
    ("file\tcall\na.wav\tS01\textra\n", None, "line 2: 3 cells, the header has 2"),
])
def test_bad_tables_are_refused_with_the_line(text, key, message):
    with pytest.raises(ValueError, match=message):
        parse_labels(text, "labels.tsv", key)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        read_labels(str(tmp_path / "nope.tsv"))
