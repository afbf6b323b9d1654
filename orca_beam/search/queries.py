"""Query vectors: audio clips embedded with the rows' own model version, or rows already in
the store.

A query holds one vector per model window of its clip (``vectors`` [W, D]); how windows are
pooled into scores is :func:`orca_beam.search.scores.pooled_scores`' ``pool``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf

from orca_beam.core.audio import load_audio
from orca_beam.core.errors import UsageError
from orca_beam.models.embed import embed_file
from orca_beam.models.loading import cached_model
from orca_beam.review.verdicts import ROW_MATCH_S, read_table_rows
from orca_beam.store.manifest import iter_entries
from orca_beam.store.reader import read_current_rows_of_shard
from orca_beam.store.version import VersionInfo


@dataclass(frozen=True)
class Query:
    """One query: its ``name`` (as given), its window vectors [W, D] float32, and the regions
    ``(group, start_s, end_s)`` of the store it comes from (never returned as its own hits)."""

    name: str
    vectors: np.ndarray = field(repr=False)
    excluded: tuple = ()


def parse_clip(text: str) -> tuple[str, float | None, float | None]:
    """``FILE``, ``FILE#t=START`` or ``FILE#t=START,END`` (seconds) -> (path, start, end)."""
    path, _, fragment = text.partition("#t=")
    if not fragment:
        return text, None, None
    try:
        parts = [float(p) for p in fragment.split(",")]
    except ValueError:
        raise UsageError(f"query {text!r}: #t= takes START or START,END in seconds") from None
    start, end = parts[0], parts[1] if len(parts) > 1 else None
    if start < 0 or (end is not None and end <= start):
        raise UsageError(f"query {text!r}: #t= needs 0 <= START < END")
    return path, start, end


def clip_query(text: str, version: VersionInfo, handle: str | None = None,
               name: str | None = None) -> Query:
    """Embeds the clip ``text`` (:func:`parse_clip`; local, gs:// or s3://) with the rows' model
    version. ``handle``: where to load that model from (default: the version's own handle). A
    model whose content hash differs from the rows' is refused (UsageError): its vectors would
    not be comparable. A clip shorter than one window is zero-padded to one window."""
    spec = version.spec
    _, found = cached_model(handle or version.handle, embedding_tensor=spec.embedding_tensor)
    if found.content_sha256 != version.content_sha256:
        raise UsageError(
            f"query {text!r}: the model at {handle or version.handle} has content sha256 "
            f"{found.content_sha256[:16]}, the rows in {version.folder} were embedded with "
            f"{version.content_sha256[:16]} ({version.label}); pass --model_handle with that "
            "model")
    path, start, end = parse_clip(text)
    rate = spec.sample_rate_hz
    waveform = load_audio(path, rate, channel=version.channel, name=path)
    first = 0 if start is None else round(start * rate)
    last = len(waveform) if end is None else min(len(waveform), round(end * rate))
    clip = waveform[first:last]
    if not len(clip):
        raise UsageError(f"query {text!r}: no audio in that range ({len(waveform) / rate:.3f} s "
                         "in the file)")
    if len(clip) < spec.window_samples:
        clip = np.concatenate([clip, np.zeros(spec.window_samples - len(clip), np.float32)])
    buffer = io.BytesIO()
    sf.write(buffer, clip, rate, format="WAV", subtype="FLOAT")
    embedded = embed_file(buffer.getvalue(), spec.name, handle or version.handle,
                          hop_frames=spec.hop_units)
    clip_end = (last if end is not None else len(waveform)) / rate
    return Query(name or text, embedded.embeddings,
                 ((path, first / rate, clip_end),))


def row_query(text: str, version: VersionInfo) -> Query:
    """The stored row ``SOURCE@START_S`` (the row of that source starting within
    ROW_MATCH_S of START_S) as a query; UsageError naming the nearest start when none does."""
    source, _, at = text.rpartition("@")
    try:
        start_s = float(at)
    except ValueError:
        raise UsageError(f"--query_row {text!r}: expected SOURCE@START_S") from None
    entry = next((e for e in iter_entries(version.folder) if e["source"] == source), None)
    if entry is None or not entry["shards"]:
        raise UsageError(f"--query_row {text!r}: {source} has no rows in {version.folder}")
    columns = ["source", "stream", "start_s", "end_s", "embedding"]
    best = None
    for shard in entry["shards"]:
        table = read_current_rows_of_shard(shard, {source}, columns)
        starts = np.asarray(table.column("start_s"), np.float64)
        if not len(starts):
            continue
        i = int(np.argmin(np.abs(starts - start_s)))
        if best is None or abs(starts[i] - start_s) < abs(best[0] - start_s):
            row = table.slice(i, 1).to_pylist()[0]
            best = (float(starts[i]), row)
    if best is None or abs(best[0] - start_s) > ROW_MATCH_S:
        nearest = "" if best is None else f" (the nearest starts at {best[0]:.3f} s)"
        raise UsageError(f"--query_row {text!r}: no row of {source} starts at {start_s} s"
                         f"{nearest}")
    row = best[1]
    return Query(text, np.asarray(row["embedding"], np.float32)[None, :],
                 ((row["stream"] or row["source"], row["start_s"], row["end_s"]),))


def table_queries(path: str, version: VersionInfo, handle: str | None = None) -> list[Query]:
    """The clips of a CSV table (local, gs:// or s3://) with a ``source`` column and optional
    ``start_s``, ``end_s`` (seconds) and ``query`` (a name) columns; with a ``verdict`` column
    (the review page's export), only rows whose verdict is ``yes``. Each is a :func:`clip_query`."""
    rows = read_table_rows(path, "--queries_from")
    if rows and "source" not in rows[0]:
        raise UsageError(f"--queries_from {path}: needs a source column")
    queries = []
    for row in rows:
        if "verdict" in row and row["verdict"].strip().lower() != "yes":
            continue
        clip = row["source"]
        if row.get("start_s"):
            clip += f"#t={row['start_s']}" + (f",{row['end_s']}" if row.get("end_s") else "")
        queries.append(clip_query(clip, version, handle, row.get("query") or None))
    if not queries:
        raise UsageError(f"--queries_from {path}: no clips in it")
    return queries
