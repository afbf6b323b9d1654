"""Embedding rows -> the Embedding Projector files of one model, in one folder, relative names.

``tensors.tsv`` (one point per line, tab-separated, no header), optional ``tensors.bytes``
(little-endian float32), ``metadata.tsv`` (header + columns), ``sprite.png`` (square grid of
thumbnails, row-major from the top left, <= 8192 px a side), ``projector_config.json`` (standalone
projector, optional public base URL) and ``projector_config.pbtxt`` (``tensorboard --logdir``).
Row i of the tensor, row i of the metadata and sprite cell i are the same point: points are sorted
by (source, start_s, end_s) so two runs on the same rows give byte-identical files.
"""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from PIL import Image

from orca_beam.projector.thumbnails import THUMB_PX, join_in_time, resize

LOG = logging.getLogger(__name__)
#: The projector fetches at most this many points (TensorBoard's LIMIT_NUM_POINTS).
MAX_POINTS = 100_000
#: Neither sprite side may exceed this (vz_projector MAX_SPRITE_IMAGE_SIZE_PX).
MAX_SPRITE_PX = 8192
#: Largest thumbnail drawn in the sprite.
MAX_THUMB_PX = 64
POINT_KINDS = ("frame", "file", "segment")
BASE_COLUMNS = ("point", "source", "start_s", "end_s", "clip", "model_version")
#: Row columns never copied to the metadata as extra columns (vectors, images, or already shown).
NOT_METADATA = {"embedding", "thumbnail", "source", "start_s", "end_s", "model_version", "model",
                "standin", "channel", "pooling", "window_start_s", "window_end_s",
                "segment_start_s", "segment_end_s", "frame_index"}


@dataclass
class Points:
    """The points of one projector: vectors [N, D], thumbnails [N, 32, 32], metadata columns."""

    vectors: np.ndarray
    thumbnails: np.ndarray
    columns: dict[str, list[str]]


def sprite_geometry(count: int) -> tuple[int, int]:
    """(cells per side n, thumbnail px) for ``count`` points: n = ceil(sqrt(count)), thumbnail =
    min(64, 8192 // n), so the square sprite n * px is never over 8192 px a side."""
    cells = max(1, math.ceil(math.sqrt(count)))
    return cells, max(1, min(MAX_THUMB_PX, MAX_SPRITE_PX // cells))


def sanitise(value: object) -> str:
    """A metadata cell: tabs, carriage returns and newlines become spaces (they would shift rows)."""
    return str(value).replace("\t", " ").replace("\r", " ").replace("\n", " ")


def read_rows(paths: Sequence[str]) -> pa.Table:
    """Concatenated embedding rows of Parquet shards (local or gs:// paths)."""
    tables = []
    for path in sorted(paths):
        with FileSystems.open(path) as handle:
            tables.append(pq.read_table(io.BytesIO(handle.read())))
    if not tables:
        raise ValueError("no embedding shards to export")
    return pa.concat_tables(tables)


def _fmt_seconds(value: float) -> str:
    return f"{value:.3f}"


def default_extra_columns(table: pa.Table) -> list[str]:
    """Row columns shown as metadata beside the base ones: every column that is not a vector,
    an image or already shown (segments mode: segment_id, kind, frames, zero_padded_s and every
    annotation column; file mode: none)."""
    return [name for name in table.column_names if name not in NOT_METADATA]


def points_from_rows(table: pa.Table, point: str = "frame",
                     extra_columns: Sequence[str] | None = None) -> Points:
    """Rows -> points, sorted by (source, start_s, end_s[, segment_id]). ``point``: "frame" (one
    per row), "file" (mean of a file's rows; thumbnails joined in time), "segment" (mean per
    distinct ``segment_id`` column). ``extra_columns`` (label columns the rows carry; default
    :func:`default_extra_columns`) go to the metadata, from each point's first row."""
    if point not in POINT_KINDS:
        raise ValueError(f"point must be one of {POINT_KINDS}, got {point!r}")
    if extra_columns is None:
        extra_columns = default_extra_columns(table)
    data = table.to_pydict()
    count = table.num_rows
    dim = table.schema.field("embedding").type.list_size
    vectors = np.asarray(table.column("embedding").combine_chunks().flatten(),
                         np.float32).reshape(count, dim)
    thumbs = np.frombuffer(b"".join(data["thumbnail"]), np.uint8).reshape(
        count, THUMB_PX, THUMB_PX) if count else np.zeros((0, THUMB_PX, THUMB_PX), np.uint8)
    ids = data.get("segment_id", [""] * count)
    order = sorted(range(count), key=lambda i: (data["source"][i], data["start_s"][i],
                                                data["end_s"][i], ids[i]))
    if point == "frame":
        groups = [[i] for i in order]
    else:
        key_name = "source" if point == "file" else "segment_id"
        grouped: dict[object, list[int]] = {}
        for i in order:
            grouped.setdefault(data[key_name][i], []).append(i)
        groups = sorted(grouped.values(), key=lambda g: (data["source"][g[0]],
                                                         data["start_s"][g[0]]))
    columns: dict[str, list[str]] = {c: [] for c in (*BASE_COLUMNS, *extra_columns)}
    out_vectors = np.zeros((len(groups), dim), np.float32)
    out_thumbs = np.zeros((len(groups), THUMB_PX, THUMB_PX), np.uint8)
    for n, group in enumerate(groups):
        first, last = group[0], group[-1]
        out_vectors[n] = vectors[group].mean(axis=0) if len(group) > 1 else vectors[first]
        out_thumbs[n] = join_in_time([thumbs[i] for i in group])
        source, start, end = data["source"][first], data["start_s"][first], data["end_s"][last]
        columns["point"].append(str(n))
        columns["source"].append(sanitise(source))
        columns["start_s"].append(_fmt_seconds(start))
        columns["end_s"].append(_fmt_seconds(end))
        columns["clip"].append(sanitise(f"{source}#t={_fmt_seconds(start)},{_fmt_seconds(end)}"))
        columns["model_version"].append(sanitise(data["model_version"][first]))
        for name in extra_columns:
            columns[name].append(sanitise(data[name][first]))
    return Points(out_vectors, out_thumbs, columns)


def _select(points: Points, keep: np.ndarray) -> Points:
    return Points(points.vectors[keep], points.thumbnails[keep],
                  {k: [v[i] for i in keep] for k, v in points.columns.items()})


def _write_bytes(path: str, data: bytes) -> None:
    with FileSystems.create(path) as handle:
        handle.write(data)


def tensor_tsv(vectors: np.ndarray) -> bytes:
    """Tab-separated float32 values (9 significant digits: exact round trip), no header, no
    trailing tab, one line per point."""
    buffer = io.StringIO()
    np.savetxt(buffer, vectors, fmt="%.9g", delimiter="\t")
    return buffer.getvalue().encode()


def sprite_png(thumbnails: np.ndarray) -> tuple[bytes, int]:
    """The sprite PNG of [N, 32, 32] thumbnails and its thumbnail edge in px."""
    cells, px = sprite_geometry(len(thumbnails))
    canvas = np.zeros((cells * px, cells * px), np.uint8)
    for i, thumb in enumerate(thumbnails):
        row, col = divmod(i, cells)
        canvas[row * px:(row + 1) * px, col * px:(col + 1) * px] = resize(thumb, px)
    buffer = io.BytesIO()
    Image.fromarray(canvas, mode="L").save(buffer, format="PNG", optimize=False)
    return buffer.getvalue(), px


def export_projector(table: pa.Table, out_dir: str, name: str, *, point: str = "frame",
                     extra_columns: Sequence[str] | None = None, max_points: int = MAX_POINTS,
                     seed: int = 0, l2_normalize: bool = False, tensor_format: str = "tsv",
                     base_url: str | None = None) -> dict:
    """Writes the projector files for one model's rows into ``out_dir`` (local or gs://).

    ``tensor_format`` "tsv" or "bytes" picks which tensor file the JSON config points at (the
    TensorBoard pbtxt always uses the TSV). ``base_url`` prefixes every path in the JSON config.
    Points with non-finite values are left out; over ``max_points`` a seeded sample is kept.
    Returns a summary dict (points, dimension, dropped, sampled, thumbnail px, files).
    """
    if tensor_format not in ("tsv", "bytes"):
        raise ValueError("tensor_format must be 'tsv' or 'bytes'")
    points = points_from_rows(table, point, extra_columns)
    finite = np.isfinite(points.vectors).all(axis=1)
    dropped = int((~finite).sum())
    if dropped:
        LOG.warning("%s: %d points with NaN/inf values left out", name, dropped)
        points = _select(points, np.flatnonzero(finite))
    total = len(points.vectors)
    sampled = total > max_points
    if sampled:
        keep = np.sort(np.random.default_rng(seed).choice(total, max_points, replace=False))
        LOG.warning("%s: %d points over the projector's limit; kept a seeded sample of %d",
                    name, total, max_points)
        points = _select(points, keep)
    if len(points.vectors) == 0:
        raise ValueError(f"{name}: no points to export")
    vectors = points.vectors
    if l2_normalize:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = np.where(norms > 0, vectors / np.maximum(norms, 1e-30), vectors)
    vectors = vectors.astype(np.float32)
    out = out_dir.rstrip("/")
    count, dim = vectors.shape
    _write_bytes(f"{out}/tensors.tsv", tensor_tsv(vectors))
    if tensor_format == "bytes":
        _write_bytes(f"{out}/tensors.bytes", vectors.astype("<f4").tobytes())
    header = list(points.columns)
    lines = ["\t".join(header)] + ["\t".join(points.columns[c][i] for c in header)
                                   for i in range(count)]
    _write_bytes(f"{out}/metadata.tsv", ("\n".join(lines) + "\n").encode())
    sprite, px = sprite_png(points.thumbnails)
    _write_bytes(f"{out}/sprite.png", sprite)
    prefix = (base_url.rstrip("/") + "/") if base_url else ""
    tensor_file = "tensors.bytes" if tensor_format == "bytes" else "tensors.tsv"
    config = {"embeddings": [{
        "tensorName": name, "tensorShape": [count, dim], "tensorPath": prefix + tensor_file,
        "metadataPath": prefix + "metadata.tsv",
        "sprite": {"imagePath": prefix + "sprite.png", "singleImageDim": [px, px]},
    }]}
    _write_bytes(f"{out}/projector_config.json",
                 (json.dumps(config, indent=2) + "\n").encode())
    pbtxt = (f'embeddings {{\n  tensor_name: "{name}"\n  tensor_path: "tensors.tsv"\n'
             f'  metadata_path: "metadata.tsv"\n  tensor_shape: {count}\n  tensor_shape: {dim}\n'
             f'  sprite {{\n    image_path: "sprite.png"\n    single_image_dim: {px}\n'
             f'    single_image_dim: {px}\n  }}\n}}\n')
    _write_bytes(f"{out}/projector_config.pbtxt", pbtxt.encode())
    summary = {"name": name, "points": count, "dimension": dim, "point": point,
               "dropped_non_finite": dropped, "sampled_from": total if sampled else None,
               "thumbnail_px": px, "sprite_px": sprite_geometry(count)[0] * px,
               "l2_normalized": l2_normalize, "tensor_format": tensor_format}
    _write_bytes(f"{out}/projector_summary.json", (json.dumps(summary, indent=2) + "\n").encode())
    return summary


def projector_dir(output: str, model: str) -> str:
    """Where the projector files of ``model`` go under a run's output folder."""
    return f"{output.rstrip('/')}/projector/{model}"
