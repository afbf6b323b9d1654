"""Projector files: geometry, row agreement, sanitising, determinism, limits."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from orca_beam.projector.export import MAX_SPRITE_PX, export_projector, sprite_geometry
from orca_beam.store.schema import embedding_table


def make_rows(count: int, dim: int = 4, seed: int = 0, sources: int | None = None) -> pa.Table:
    rng = np.random.default_rng(seed)
    sources = sources or max(1, count // 10)
    tables = []
    per = np.array_split(np.arange(count), sources)
    for s, idx in enumerate(per):
        if len(idx) == 0:
            continue
        k = len(idx)
        tables.append(embedding_table(
            source=f"data/file_{s:05d}.wav", channel=-1, start_s=np.arange(k) * 0.48,
            end_s=np.arange(k) * 0.48 + 0.975, model="yamnet", model_version="h@sha256:x",
            standin=True, embeddings=rng.normal(size=(k, dim)).astype(np.float32),
            thumbnails=rng.integers(0, 255, (k, 32, 32), dtype=np.uint8)))
    return pa.concat_tables(tables)


def read_outputs(folder):
    tensor_lines = (folder / "tensors.tsv").read_text().split("\n")
    meta_lines = (folder / "metadata.tsv").read_text().split("\n")
    sprite = Image.open(folder / "sprite.png")
    config = json.loads((folder / "projector_config.json").read_text())
    return tensor_lines, meta_lines, sprite, config


@pytest.mark.parametrize("count", [1, 2, 3, 1000, 70_000])
def test_square_sprite_within_limits_and_rows_agree(tmp_path, count):
    summary = export_projector(make_rows(count, sources=min(count, 50)), str(tmp_path), "yamnet")
    tensors, meta, sprite, config = read_outputs(tmp_path)
    assert tensors[-1] == "" and meta[-1] == ""  # each file ends with one newline
    assert len(tensors) - 1 == count == len(meta) - 2  # metadata has a header
    assert all(len(line.split("\t")) == 4 and not line.endswith("\t") for line in tensors[:-1])
    cells, px = sprite_geometry(count)
    assert sprite.size == (cells * px, cells * px) and max(sprite.size) <= MAX_SPRITE_PX
    assert cells * cells >= count and (cells - 1) * (cells - 1) < count
    assert config["embeddings"][0]["sprite"]["singleImageDim"] == [px, px]
    assert config["embeddings"][0]["tensorShape"] == [count, 4]
    assert summary["points"] == count and summary["thumbnail_px"] == px
    pbtxt = (tmp_path / "projector_config.pbtxt").read_text()
    assert f"tensor_shape: {count}\n" in pbtxt and f"single_image_dim: {px}\n" in pbtxt


def test_geometry_table():
    assert sprite_geometry(1) == (1, 64) and sprite_geometry(3) == (2, 64)
    assert sprite_geometry(70_000) == (265, 30)
    assert sprite_geometry(100_000) == (317, 25)


def test_labels_with_tabs_and_newlines_do_not_shift_rows(tmp_path):
    rows = make_rows(6, sources=2)
    sources = rows.column("source").to_pylist()
    sources = [s.replace("file_00001", "bad\tname\nwith\rbreaks") for s in sources]
    rows = rows.set_column(0, "source", pa.array(sources))
    export_projector(rows, str(tmp_path), "yamnet")
    meta = (tmp_path / "metadata.tsv").read_text().split("\n")
    # point, source, start_s, end_s, clip, model_version, start_utc (empty: no clock)
    assert len(meta) == 8 and all(len(line.split("\t")) == 7 for line in meta[:-1])
    assert "bad name with breaks" in meta[1] + meta[4]


def test_sorted_by_a_stable_key_so_runs_are_byte_identical(tmp_path):
    rows = make_rows(500, sources=20, seed=4)
    shuffled = rows.take(np.random.default_rng(1).permutation(500))
    export_projector(rows, str(tmp_path / "a"), "yamnet", tensor_format="bytes")
    export_projector(shuffled, str(tmp_path / "b"), "yamnet", tensor_format="bytes")
    for name in ("tensors.tsv", "tensors.bytes", "metadata.tsv", "sprite.png",
                 "projector_config.json", "projector_config.pbtxt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    meta = (tmp_path / "a" / "metadata.tsv").read_text().splitlines()[1:]
    keys = [(m.split("\t")[1], float(m.split("\t")[2])) for m in meta]
    assert keys == sorted(keys)
    values = np.fromfile(tmp_path / "a" / "tensors.bytes", "<f4").reshape(500, 4)
    np.testing.assert_array_equal(values, np.loadtxt(tmp_path / "a" / "tensors.tsv",
                                                     dtype=np.float32, ndmin=2))
    assert meta[0].split("\t")[4] == f"{keys[0][0]}#t=0.000,0.975"  # the clip column


def test_non_finite_points_are_left_out_and_counted(tmp_path):
    rows = make_rows(10, sources=1)
    vectors = np.asarray(rows.column("embedding").to_pylist(), np.float32)
    vectors[3, 1] = np.nan
    vectors[7, 0] = np.inf
    flat = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), 4)
    rows = rows.set_column(rows.schema.get_field_index("embedding"), "embedding", flat)
    summary = export_projector(rows, str(tmp_path), "yamnet")
    assert summary["dropped_non_finite"] == 2 and summary["points"] == 8
    text = (tmp_path / "tensors.tsv").read_text().lower()
    assert "nan" not in text and "inf" not in text


def test_over_the_limit_a_seeded_sample_is_kept_and_options_apply(tmp_path):
    rows = make_rows(300, sources=30)
    first = export_projector(rows, str(tmp_path / "a"), "yamnet", max_points=100, seed=3,
                             l2_normalize=True, base_url="https://storage.googleapis.com/b/p")
    again = export_projector(rows, str(tmp_path / "b"), "yamnet", max_points=100, seed=3,
                             l2_normalize=True)
    assert first["points"] == 100 and first["sampled_from"] == 300
    assert (tmp_path / "a" / "metadata.tsv").read_bytes() == (
        tmp_path / "b" / "metadata.tsv").read_bytes()
    values = np.loadtxt(tmp_path / "a" / "tensors.tsv", ndmin=2)
    np.testing.assert_allclose(np.linalg.norm(values, axis=1), 1.0, rtol=1e-5)
    config = json.loads((tmp_path / "a" / "projector_config.json").read_text())
    assert config["embeddings"][0]["tensorPath"] == (
        "https://storage.googleapis.com/b/p/tensors.tsv")
    del again


def test_one_point_per_file_is_the_mean(tmp_path):
    rows = make_rows(30, sources=3)
    export_projector(rows, str(tmp_path), "yamnet", point="file")
    values = np.loadtxt(tmp_path / "tensors.tsv", ndmin=2)
    vectors = np.asarray(rows.column("embedding").to_pylist())
    np.testing.assert_allclose(values[0], vectors[:10].mean(axis=0), rtol=1e-6)
    meta = (tmp_path / "metadata.tsv").read_text().splitlines()
    assert len(meta) == 4 and meta[1].split("\t")[3] == f"{9 * 0.48 + 0.975:.3f}"


def test_one_point_per_labelled_segment_carries_label_columns(tmp_path):
    rows = make_rows(12, sources=2)
    segment = [f"seg{i // 3}" for i in range(12)]  # four segments of three frames
    rows = rows.append_column("segment_id", pa.array(segment))
    rows = rows.append_column("call_type", pa.array([f"S{i // 3:02d}\tx" for i in range(12)]))
    summary = export_projector(rows, str(tmp_path), "yamnet", point="segment",
                               extra_columns=["call_type"])
    assert summary["points"] == 4
    values = np.loadtxt(tmp_path / "tensors.tsv", ndmin=2)
    vectors = np.asarray(rows.column("embedding").to_pylist())
    np.testing.assert_allclose(values[1], vectors[3:6].mean(axis=0), rtol=1e-6)
    meta = (tmp_path / "metadata.tsv").read_text().splitlines()
    assert meta[0].split("\t")[-1] == "call_type" and meta[2].split("\t")[-1] == "S01 x"
