"""Embedding rows -> the Embedding Projector files of one model, in one folder, relative names: the
steps, as plain functions (``stage.py`` runs them as a Beam stage; :func:`export_projector` runs
them in one process over an in-memory table).

Files: ``tensors.tsv`` (one point per line, tab-separated, no header), optional ``tensors.bytes``
(little-endian float32), ``metadata.tsv`` (header + columns), ``sprite.png`` (square grid of
thumbnails, row-major from the top left, <= 8192 px a side), ``projector_config.json`` (standalone
projector, optional public base URL), ``projector_config.pbtxt`` (``tensorboard --logdir``) and
``projector_summary.json`` (counts, the settings and the digest of the rows they came from).

The steps, each bounded by the number of points kept, never by the number of rows:

1. :func:`scan_keys`: a shard's key columns (source, start_s, end_s[, segment_id]) -> one
   :class:`Candidate` per point, carrying a hash of ``(seed, point key)``;
2. the ``max_points`` candidates with the smallest hashes are the sample: the same points
   whatever the order or sharding of the rows, so re-runs give byte-identical files;
3. :func:`assign_indices`: the sample sorted by (source, start_s, end_s[, segment_id]) gives each
   point its row in the files;
4. :func:`read_chosen_rows`: only the chosen rows' vectors, thumbnails and metadata are read;
5. :func:`make_point`, :func:`write_part` (points as they come, up to ``BLOCK_POINTS`` a part,
   each part sorted by point index) and :func:`assemble` (the parts merged by point index,
   streaming; the sprite drawn, the configs written).
"""

from __future__ import annotations

import hashlib
import heapq
import io
import json
import logging
import math
import struct
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from PIL import Image

from orca_beam.features.thumbnails import THUMB_PX, join_in_time, resize
from orca_beam.labels import LabelTable

LOG = logging.getLogger(__name__)
#: The projector fetches at most this many points (TensorBoard's LIMIT_NUM_POINTS).
MAX_POINTS = 100_000
#: Neither sprite side may exceed this (vz_projector MAX_SPRITE_IMAGE_SIZE_PX).
MAX_SPRITE_PX = 8192
#: Largest thumbnail drawn in the sprite.
MAX_THUMB_PX = 64
#: Most points written to one part file (one worker step's buffer) before they are joined.
BLOCK_POINTS = 2048
POINT_KINDS = ("frame", "file", "segment")
#: Row columns never copied to the metadata as extra columns (vectors, images, or already shown).
NOT_METADATA = {"embedding", "thumbnail", "source", "start_s", "end_s", "model_version", "model",
                "standin", "channel", "pooling", "window_start_s", "window_end_s",
                "segment_start_s", "segment_end_s", "frame_index", "stream", "time_source"}
SUMMARY_NAME = "projector_summary.json"


def sprite_geometry(count: int) -> tuple[int, int]:
    """(cells per side n, thumbnail px) for ``count`` points: n = ceil(sqrt(count)), thumbnail =
    min(64, 8192 // n), so the square sprite n * px is never over 8192 px a side."""
    cells = max(1, math.ceil(math.sqrt(count)))
    return cells, max(1, min(MAX_THUMB_PX, MAX_SPRITE_PX // cells))


def sanitise(value: object) -> str:
    """A metadata cell: tabs, carriage returns and newlines become spaces (they would shift rows);
    a missing value is empty; a time is ISO 8601 (``start_utc``: ``2021-10-01T00:00:02.500000Z``)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return str(value).replace("\t", " ").replace("\r", " ").replace("\n", " ")


def _fmt_seconds(value: float) -> str:
    return f"{value:.3f}"


def default_extra_columns(names: Sequence[str]) -> list[str]:
    """Row columns shown as metadata beside the base ones: every column that is not a vector,
    an image or already shown (segments mode: segment_id, kind, frames, zero_padded_s and every
    annotation column; file mode: none)."""
    return [name for name in names if name not in NOT_METADATA]


def key_columns(names: Sequence[str]) -> list[str]:
    """The columns that order and identify points: source, start_s, end_s (+ segment_id)."""
    return ["source", "start_s", "end_s", *(["segment_id"] if "segment_id" in names else [])]


def sample_hash(key: Sequence, seed: int) -> int:
    """64-bit hash of a point key and the seed: the sample keeps the smallest."""
    text = json.dumps([seed, *key], separators=(",", ":"))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


@dataclass(frozen=True, order=True)
class Candidate:
    """A possible point: its sample hash, its identity (``group``: the row key for frame points,
    ``(source,)`` for file points, ``(segment_id,)`` for segment points), its sort key (the
    smallest row key of its rows) and where its rows are ((shard, row position) pairs)."""

    hash: int
    group: tuple
    sort_key: tuple
    refs: tuple


def scan_keys(keys: pa.Table, shard: str, point: str, seed: int) -> Iterator[Candidate]:
    """One candidate per row of ``keys`` (key columns plus ``_row``, each row's position in
    ``shard``). Frame points are final; file and segment points come once per row and are
    merged by :func:`merge_candidates`."""
    if point not in POINT_KINDS:
        raise ValueError(f"point must be one of {POINT_KINDS}, got {point!r}")
    columns = [keys.column(name).to_pylist() for name in key_columns(keys.column_names)]
    rows = keys.column("_row").to_pylist()
    for n, row in enumerate(rows):
        sort_key = tuple(column[n] for column in columns)
        group = sort_key if point == "frame" else (
            (sort_key[0],) if point == "file" else (sort_key[3],))
        yield Candidate(sample_hash(group, seed), group, sort_key, ((shard, row),))


def merge_candidates(group, candidates: Iterable[Candidate]) -> Candidate:
    """One candidate from the per-row candidates of one file or segment point."""
    candidates = list(candidates)
    return Candidate(candidates[0].hash, tuple(group), min(c.sort_key for c in candidates),
                     tuple(sorted(ref for c in candidates for ref in c.refs)))


def assign_indices(chosen: Iterable[Candidate]) -> Iterator[tuple[str, tuple[int, int]]]:
    """The sample -> (shard, (row position, point index)) for every row of every point; point
    indices follow the sort key, so the files do not depend on row order or sharding."""
    for index, candidate in enumerate(sorted(chosen, key=lambda c: c.sort_key)):
        for shard, row in candidate.refs:
            yield shard, (row, index)


def read_key_columns(shard: str, sources: set[str] | None) -> pa.Table:
    """A shard's key columns plus ``_row`` (row position), for the rows whose source is in
    ``sources`` (None: all); reads only those columns' pages, no vector or thumbnail."""
    from orca_beam.store.reader import keep_sources

    with FileSystems.open(shard) as handle:
        parquet = pq.ParquetFile(handle)
        table = parquet.read(columns=key_columns(parquet.schema_arrow.names))
    return keep_sources(table.append_column(
        "_row", pa.array(np.arange(table.num_rows, dtype=np.int64))), sources)


def _rows_of_table(table: pa.Table, wanted: list[tuple[int, int]], extra: Sequence[str] | None
                   ) -> Iterator[tuple[int, tuple]]:
    """(point index, row) for the ``wanted`` (row position, point index) rows of ``table``; a
    row is the plain tuple (sort key, model_version, ((extra column, value), ...), float32
    vector bytes, thumbnail bytes), cheap to pass between workers."""
    positions = [row for row, _ in wanted]
    picked = table.take(pa.array(positions, pa.int64()))
    names = picked.column_names
    dim = picked.schema.field("embedding").type.list_size
    vectors = np.asarray(picked.column("embedding").combine_chunks().flatten(),
                         np.float32).reshape(len(positions), dim)
    thumbs = picked.column("thumbnail").to_pylist()
    shown = default_extra_columns(names) if extra is None else list(extra)
    keys = [picked.column(name).to_pylist() for name in key_columns(names)]
    versions = picked.column("model_version").to_pylist()
    extras = [picked.column(name).to_pylist() for name in shown]
    for n, (_, index) in enumerate(wanted):
        key = tuple(column[n] for column in keys)
        yield index, (key, versions[n], tuple((name, values[n]) for name, values in
                                             zip(shown, extras, strict=True)),
                      vectors[n].tobytes(), thumbs[n])


def read_chosen_rows(shard: str, wanted: Iterable[tuple[int, int]],
                     extra: Sequence[str] | None = None) -> Iterator[tuple[int, tuple]]:
    """(point index, row) for the chosen rows of one shard (``wanted``: (row position, point
    index) pairs), reading only the row groups that hold them."""
    wanted = sorted(wanted)
    with FileSystems.open(shard) as handle:
        parquet = pq.ParquetFile(handle)
        start = 0
        position = 0
        for group in range(parquet.num_row_groups):
            rows = parquet.metadata.row_group(group).num_rows
            mine = []
            while position < len(wanted) and wanted[position][0] < start + rows:
                row, index = wanted[position]
                mine.append((row - start, index))
                position += 1
            if mine:
                yield from _rows_of_table(parquet.read_row_group(group), mine, extra)
            start += rows


#: One projector point, a plain tuple: (index, float32 vector bytes, 32x32 uint8 thumbnail
#: bytes, metadata header (every column but ``point``), metadata cells).
Point = tuple


def make_point(index: int, rows: Sequence[tuple], labels: LabelTable | None = None) -> Point:
    """One point from its rows (one for frame points; for file and segment points the vector
    is the mean and the thumbnails are joined in time). With ``labels``, the label columns of
    the point's source follow the row's own metadata columns ("" where it has no label)."""
    rows = sorted(rows, key=lambda r: r[0])
    first, last = rows[0], rows[-1]
    if len(rows) == 1:
        vector = first[3]
    else:
        vector = np.mean([np.frombuffer(r[3], np.float32) for r in rows],
                         axis=0).astype(np.float32).tobytes()
    thumbs = [np.frombuffer(r[4], np.uint8).reshape(THUMB_PX, THUMB_PX) for r in rows]
    source, start, end = first[0][0], first[0][1], last[0][2]
    header = ["source", "start_s", "end_s", "clip", "model_version"]
    cells = [sanitise(source), _fmt_seconds(start), _fmt_seconds(end),
             sanitise(f"{source}#t={_fmt_seconds(start)},{_fmt_seconds(end)}"),
             sanitise(first[1])]
    for name, value in first[2] + (labels.cells(source) if labels is not None else ()):
        header.append(name)
        cells.append(sanitise(value))
    thumb = thumbs[0] if len(thumbs) == 1 else join_in_time(thumbs)
    return (index, vector, np.ascontiguousarray(thumb, np.uint8).tobytes(), tuple(header),
            tuple(cells))


def tensor_tsv(vectors: np.ndarray) -> bytes:
    """Tab-separated float32 values (9 significant digits: exact round trip), no header, no
    trailing tab, one line per point."""
    buffer = io.StringIO()
    np.savetxt(buffer, vectors, fmt="%.9g", delimiter="\t")
    return buffer.getvalue().encode()


def _write_bytes(path: str, data: bytes) -> None:
    with FileSystems.create(path) as handle:
        handle.write(data)


def _read_bytes(path: str) -> bytes:
    with FileSystems.open(path) as handle:
        return handle.read()


def parts_dir(out_dir: str, token: str) -> str:
    """Where the parts of one export are written before they are joined."""
    return f"{out_dir.rstrip('/')}/.parts-{token}"


_RECORD = struct.Struct("<qIII")  # point index, TSV line bytes, metadata line bytes, vector bytes


def write_part(parts: str, points: Iterable[Point], *, l2_normalize: bool = False) -> dict:
    """Writes points (any subset, any order) as one part file, sorted by point index: per
    point its index, tensor TSV line, metadata line (without the ``point`` column), float32
    vector and thumbnail. Points with NaN/inf values are left out. Returns the part's
    descriptor: path, kept, dropped, header, dimension."""
    points = sorted(points, key=lambda p: p[0])
    vectors = (np.stack([np.frombuffer(p[1], np.float32) for p in points]) if points
               else np.zeros((0, 0), np.float32))
    finite = np.isfinite(vectors).all(axis=1) if points else np.zeros(0, bool)
    kept = [p for p, ok in zip(points, finite, strict=True) if ok]
    vectors = vectors[finite]
    if l2_normalize and len(kept):
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = np.where(norms > 0, vectors / np.maximum(norms, 1e-30), vectors).astype(
            np.float32)
    lines = tensor_tsv(vectors).splitlines(keepends=True) if len(kept) else []
    buffer = io.BytesIO()
    for point, line, vector in zip(kept, lines, vectors, strict=True):
        meta = ("\t".join(point[4]) + "\n").encode()
        data = vector.astype("<f4").tobytes()
        buffer.write(_RECORD.pack(point[0], len(line), len(meta), len(data)))
        buffer.write(line)
        buffer.write(meta)
        buffer.write(data)
        buffer.write(point[2])
    path = f"{parts.rstrip('/')}/part-{uuid.uuid4().hex}.rec"
    _write_bytes(path, buffer.getvalue())
    return {"path": path, "kept": len(kept), "dropped": len(points) - len(kept),
            "header": list(kept[0][3]) if kept else [],
            "dimension": int(vectors.shape[1]) if len(kept) else 0}


def iter_part(path: str) -> Iterator[tuple[int, bytes, bytes, bytes, bytes]]:
    """The records of one part file, in index order: (index, TSV line, metadata line, float32
    vector bytes, thumbnail bytes); reads it sequentially."""
    with FileSystems.open(path) as handle:
        while header := handle.read(_RECORD.size):
            index, tsv_len, meta_len, vector_len = _RECORD.unpack(header)
            body = handle.read(tsv_len + meta_len + vector_len + THUMB_PX * THUMB_PX)
            yield (index, body[:tsv_len], body[tsv_len:tsv_len + meta_len],
                   body[tsv_len + meta_len:tsv_len + meta_len + vector_len],
                   body[tsv_len + meta_len + vector_len:])


#: Parts merged at once; more are first merged in groups of this many (bounds open files and
#: read buffers).
MAX_MERGE_FAN_IN = 64


def _merged(paths: Sequence[str]) -> Iterator[tuple]:
    return heapq.merge(*(iter_part(path) for path in paths), key=lambda record: record[0])


def _merge_to_part(parts: str, paths: Sequence[str]) -> str:
    path = f"{parts.rstrip('/')}/part-{uuid.uuid4().hex}.rec"
    with FileSystems.create(path) as out:
        for index, line, meta, vector, thumb in _merged(paths):
            out.write(_RECORD.pack(index, len(line), len(meta), len(vector)))
            out.write(line + meta + vector + thumb)
    FileSystems.delete(list(paths))
    return path


def assemble(out_dir: str, parts: str, descriptors: Sequence[dict], name: str, *, point: str,
             sampled_from: int | None, l2_normalize: bool = False, tensor_format: str = "tsv",
             base_url: str | None = None, rows_digest: str = "", settings: dict | None = None
             ) -> dict:
    """Merges the part files by point index into the projector files in ``out_dir`` (local or
    gs://), streaming: point numbers run over the kept points, the sprite is drawn as they
    come. Deletes the parts. Returns the summary (also written as projector_summary.json)."""
    count = sum(d["kept"] for d in descriptors)
    dropped = sum(d["dropped"] for d in descriptors)
    if count == 0:
        raise ValueError(f"{name}: no points to export")
    if dropped:
        LOG.warning("%s: %d points with NaN/inf values left out", name, dropped)
    dim = next(d["dimension"] for d in descriptors if d["kept"])
    header = next(d["header"] for d in descriptors if d["kept"])
    paths = sorted(d["path"] for d in descriptors if d["kept"])
    while len(paths) > MAX_MERGE_FAN_IN:
        paths = [_merge_to_part(parts, paths[i:i + MAX_MERGE_FAN_IN])
                 for i in range(0, len(paths), MAX_MERGE_FAN_IN)]
    out = out_dir.rstrip("/")
    cells, px = sprite_geometry(count)
    canvas = np.zeros((cells * px, cells * px), np.uint8)
    point_no = 0
    with FileSystems.create(f"{out}/tensors.tsv") as tsv, \
            FileSystems.create(f"{out}/metadata.tsv") as meta:
        binary = FileSystems.create(f"{out}/tensors.bytes") if tensor_format == "bytes" else None
        meta.write(("\t".join(["point", *header]) + "\n").encode())
        for _, line, meta_line, vector, thumb in _merged(paths):
            tsv.write(line)
            meta.write(f"{point_no}\t".encode() + meta_line)
            if binary is not None:
                binary.write(vector)
            row, col = divmod(point_no, cells)
            canvas[row * px:(row + 1) * px, col * px:(col + 1) * px] = resize(
                np.frombuffer(thumb, np.uint8).reshape(THUMB_PX, THUMB_PX), px)
            point_no += 1
        if binary is not None:
            binary.close()
    buffer = io.BytesIO()
    Image.fromarray(canvas, mode="L").save(buffer, format="PNG", optimize=False)
    _write_bytes(f"{out}/sprite.png", buffer.getvalue())
    prefix = (base_url.rstrip("/") + "/") if base_url else ""
    tensor_file = "tensors.bytes" if tensor_format == "bytes" else "tensors.tsv"
    config = {"embeddings": [{
        "tensorName": name, "tensorShape": [count, dim], "tensorPath": prefix + tensor_file,
        "metadataPath": prefix + "metadata.tsv",
        "sprite": {"imagePath": prefix + "sprite.png", "singleImageDim": [px, px]},
    }]}
    _write_bytes(f"{out}/projector_config.json", (json.dumps(config, indent=2) + "\n").encode())
    pbtxt = (f'embeddings {{\n  tensor_name: "{name}"\n  tensor_path: "tensors.tsv"\n'
             f'  metadata_path: "metadata.tsv"\n  tensor_shape: {count}\n  tensor_shape: {dim}\n'
             f'  sprite {{\n    image_path: "sprite.png"\n    single_image_dim: {px}\n'
             f'    single_image_dim: {px}\n  }}\n}}\n')
    _write_bytes(f"{out}/projector_config.pbtxt", pbtxt.encode())
    summary = {"name": name, "points": count, "dimension": dim, "point": point,
               "dropped_non_finite": dropped, "sampled_from": sampled_from,
               "thumbnail_px": px, "sprite_px": cells * px,
               "l2_normalized": l2_normalize, "tensor_format": tensor_format,
               "rows_digest": rows_digest, "settings": settings or {}}
    _write_bytes(f"{out}/{SUMMARY_NAME}", (json.dumps(summary, indent=2) + "\n").encode())
    found = FileSystems.match([f"{parts.rstrip('/')}/*"])[0].metadata_list
    if found:
        FileSystems.delete([m.path for m in found])
    if FileSystems.exists(parts):
        FileSystems.delete([parts])
    return summary


def export_settings(point: str = "frame", extra_columns: Sequence[str] | None = None,
                    max_points: int = MAX_POINTS, seed: int = 0, l2_normalize: bool = False,
                    tensor_format: str = "tsv", base_url: str | None = None,
                    labels: LabelTable | None = None) -> dict:
    """The export options as one dict (checked), recorded in projector_summary.json (the
    labels by path, key column and content fingerprint)."""
    if tensor_format not in ("tsv", "bytes"):
        raise ValueError("tensor_format must be 'tsv' or 'bytes'")
    if point not in POINT_KINDS:
        raise ValueError(f"point must be one of {POINT_KINDS}, got {point!r}")
    return {"point": point, "extra_columns": None if extra_columns is None else list(
        extra_columns), "max_points": max_points, "seed": seed, "l2_normalize": l2_normalize,
        "tensor_format": tensor_format, "base_url": base_url,
        "labels": None if labels is None else labels.settings()}


def is_up_to_date(out_dir: str, rows_digest: str, settings: dict) -> bool:
    """True when ``out_dir`` already holds projector files made from rows with this digest and
    these settings (a re-run whose rows did not change then rebuilds nothing)."""
    path = f"{out_dir.rstrip('/')}/{SUMMARY_NAME}"
    if not FileSystems.exists(path):
        return False
    try:
        summary = json.loads(_read_bytes(path).decode())
    except ValueError:
        return False
    return summary.get("rows_digest") == rows_digest and summary.get("settings") == settings


def export_projector(table: pa.Table, out_dir: str, name: str, *, point: str = "frame",
                     extra_columns: Sequence[str] | None = None, max_points: int = MAX_POINTS,
                     seed: int = 0, l2_normalize: bool = False, tensor_format: str = "tsv",
                     base_url: str | None = None, labels: LabelTable | None = None) -> dict:
    """The projector files of an in-memory table of rows, in one process, through the same steps
    as the Beam stage (for notebooks, tests and small tables). Points with non-finite values are
    left out; over ``max_points`` the points with the smallest seeded hashes are kept; with
    ``labels`` every point's metadata has the label columns of its source. Returns the summary
    dict (points, dimension, dropped, sampled, thumbnail px, ...)."""
    settings = export_settings(point, extra_columns, max_points, seed, l2_normalize,
                               tensor_format, base_url, labels)
    keys = table.select(key_columns(table.column_names)).append_column(
        "_row", pa.array(np.arange(table.num_rows, dtype=np.int64)))
    candidates = list(scan_keys(keys, "", point, seed))
    if point != "frame":
        grouped: dict[tuple, list[Candidate]] = {}
        for candidate in candidates:
            grouped.setdefault(candidate.group, []).append(candidate)
        candidates = [merge_candidates(g, c) for g, c in grouped.items()]
    total = len(candidates)
    chosen = sorted(candidates)[:max_points]
    rows_of: dict[int, list[tuple]] = {}
    wanted = [ref for _, ref in assign_indices(chosen)]
    for index, row in _rows_of_table(table, sorted(wanted), extra_columns):
        rows_of.setdefault(index, []).append(row)
    parts = parts_dir(out_dir, "inline")
    ordered = sorted(rows_of)
    descriptors = [write_part(parts, [make_point(i, rows_of[i], labels) for i in
                                      ordered[start:start + BLOCK_POINTS]],
                              l2_normalize=l2_normalize)
                   for start in range(0, len(ordered), BLOCK_POINTS)]
    if total > max_points:
        LOG.warning("%s: %d points over the projector's limit; kept a seeded sample of %d",
                    name, total, max_points)
    return assemble(out_dir, parts, descriptors, name, point=point,
                    sampled_from=total if total > max_points else None,
                    l2_normalize=l2_normalize, tensor_format=tensor_format, base_url=base_url,
                    settings=settings)


def projector_dir(output: str, model: str) -> str:
    """Where the projector files of ``model`` go under a run's output folder."""
    return f"{output.rstrip('/')}/projector/{model}"
