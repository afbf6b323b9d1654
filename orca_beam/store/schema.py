"""The store's schemas, defined once: embedding rows, call rows ("segments"), manifest entries, and
the row format they belong to. No stage is imported here. ``docs/output-schema.md`` is generated
from this module (``python -m orca_beam.store.schema_doc > docs/output-schema.md``; a test checks
that the page is current), so the meanings below are the documentation.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from orca_beam.core.statuses import NO_TIME
from orca_beam.features.thumbnails import THUMB_PX

#: Bump when the row schema or the framing code changes what a version's rows hold.
ROW_FORMAT = 3
#: The type of ``start_utc``: microseconds, UTC.
UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")

#: What each embedding-row column holds (``<output>/<model>/<version>/rows-*.parquet``).
EMBEDDING_COLUMNS = {
    "source": "the input file's path as matched; in an HLS stream, the segment the window's last "
              "sample is in (its owner: one outcome per segment)",
    "channel": "channel used; -1 = all channels mixed to mono",
    "start_s": "window start in seconds from the file start (HLS: from the start of the "
               "folder's stream)",
    "end_s": "window end in seconds (the real span), clipped to the file (HLS: to the last "
             "sample before a gap); a window shorter than the model's was zero-padded",
    "stream": "HLS: the folder (`.../hls/<unix s>/`); null for a file",
    "start_utc": "the window's start in UTC; null when unknown",
    "time_source": "how start_utc was obtained: `program_date_time`, `folder_plus_durations`, "
                   "`file_name` or `none` (see docs/orcasound-archive.md)",
    "model": "vggish / yamnet / humpback / birdnet",
    "model_version": "`<handle>@sha256:<16 hex>[+standin]`",
    "standin": "True: a stand-in model (random weights): the vector is NOT a real embedding",
    "embedding": "the embedding (128 / 1024 / 2048 / 1024 floats)",
    "thumbnail": f"{THUMB_PX}x{THUMB_PX} uint8 image of the patch the model saw (row-major)",
}

def embedding_schema(dim: int) -> pa.Schema:
    """Arrow schema of the embedding rows of a model with ``dim``-sized embeddings."""
    return pa.schema([
        ("source", pa.string()),
        ("channel", pa.int32()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("stream", pa.string()),
        ("start_utc", UTC_TIMESTAMP),
        ("time_source", pa.string()),
        ("model", pa.string()),
        ("model_version", pa.string()),
        ("standin", pa.bool_()),
        ("embedding", pa.list_(pa.float32(), dim)),
        ("thumbnail", pa.binary(THUMB_PX * THUMB_PX)),
    ])


def embedding_table(*, source: str | list[str], channel: int, start_s: np.ndarray,
                    end_s: np.ndarray, model: str, model_version: str, standin: bool,
                    embeddings: np.ndarray, thumbnails: np.ndarray, stream: str | None = None,
                    start_utc_s: np.ndarray | None = None,
                    time_source: str | list[str] = NO_TIME) -> pa.Table:
    """A table of ``len(embeddings)`` rows in :func:`embedding_schema` (embeddings [k, dim],
    thumbnails [k, 32, 32] uint8). ``source`` and ``time_source``: one value, or one per row;
    ``start_utc_s``: UTC seconds since the epoch per row (NaN or None: unknown)."""
    count, dim = embeddings.shape
    flat = pa.array(np.ascontiguousarray(embeddings, np.float32).reshape(-1), pa.float32())
    if start_utc_s is None:
        utc = pa.nulls(count, UTC_TIMESTAMP)
    else:
        seconds = np.asarray(start_utc_s, np.float64)
        micros = np.round(np.nan_to_num(seconds) * 1e6).astype(np.int64)
        utc = pa.array(micros, UTC_TIMESTAMP, mask=np.isnan(seconds))
    return pa.Table.from_arrays([
        pa.array([source] * count if isinstance(source, str) else source, pa.string()),
        pa.array(np.full(count, channel, np.int32)),
        pa.array(np.asarray(start_s, np.float64)),
        pa.array(np.asarray(end_s, np.float64)),
        pa.array([stream] * count, pa.string()),
        utc,
        pa.array([time_source] * count if isinstance(time_source, str) else time_source,
                 pa.string()),
        pa.array([model] * count, pa.string()),
        pa.array([model_version] * count, pa.string()),
        pa.array(np.full(count, standin, bool)),
        pa.FixedSizeListArray.from_arrays(flat, dim),
        pa.array([bytes(t) for t in np.ascontiguousarray(thumbnails, np.uint8)],
                 pa.binary(THUMB_PX * THUMB_PX)),
    ], schema=embedding_schema(dim))



#: Columns every segment row has, before the annotation's own columns.
SEGMENT_BASE_COLUMNS = (
    "source", "channel", "segment_id", "kind", "start_s", "end_s", "segment_start_s",
    "segment_end_s", "frame_index", "frames", "pooling", "window_start_s", "window_end_s",
    "zero_padded_s", "model", "model_version", "standin", "embedding", "thumbnail")


def annotation_field_names(columns: list[str]) -> list[str]:
    """Parquet/metadata names of annotation columns: unchanged, unless a name collides with a
    segment row's own column, which then gets the prefix ``annotation_``."""
    return [f"annotation_{c}" if c in SEGMENT_BASE_COLUMNS else c for c in columns]


def segment_schema(dim: int, annotation_columns: list[str]) -> pa.Schema:
    """Arrow schema of segment rows (``<output>/<model>/segments-*.parquet``).

    One row per segment (pooled: ``frame_index`` -1) or per frame (``--pooling frames``).
    ``start_s``/``end_s``: the row's span (the segment, or the frame); ``segment_start_s``/
    ``segment_end_s``: the annotated (or negative) span; ``window_start_s``/``window_end_s``: the
    audio the model saw (may pass the file's edges; ``zero_padded_s`` of it were zeros); then every
    annotation column as text, unchanged (see :func:`annotation_field_names`)."""
    return pa.schema([
        ("source", pa.string()), ("channel", pa.int32()), ("segment_id", pa.string()),
        ("kind", pa.string()), ("start_s", pa.float64()), ("end_s", pa.float64()),
        ("segment_start_s", pa.float64()), ("segment_end_s", pa.float64()),
        ("frame_index", pa.int32()), ("frames", pa.int32()), ("pooling", pa.string()),
        ("window_start_s", pa.float64()), ("window_end_s", pa.float64()),
        ("zero_padded_s", pa.float64()), ("model", pa.string()), ("model_version", pa.string()),
        ("standin", pa.bool_()), ("embedding", pa.list_(pa.float32(), dim)),
        ("thumbnail", pa.binary(THUMB_PX * THUMB_PX)),
        *[(name, pa.string()) for name in annotation_field_names(annotation_columns)],
    ])


def segment_table(schema: pa.Schema, rows: list[dict], embeddings: np.ndarray,
                  thumbnails: np.ndarray) -> pa.Table:
    """A table in ``schema`` (from :func:`segment_schema`): ``rows`` hold every column but
    ``embedding`` [k, dim] and ``thumbnail`` [k, 32, 32] uint8, which come as arrays."""
    count, dim = embeddings.shape
    arrays = []
    for item in schema:
        if item.name == "embedding":
            flat = pa.array(np.ascontiguousarray(embeddings, np.float32).reshape(-1), pa.float32())
            arrays.append(pa.FixedSizeListArray.from_arrays(flat, dim))
        elif item.name == "thumbnail":
            arrays.append(pa.array([bytes(t) for t in np.ascontiguousarray(thumbnails, np.uint8)],
                                   item.type))
        else:
            arrays.append(pa.array([row[item.name] for row in rows], item.type))
    return pa.Table.from_arrays(arrays, schema=schema)



#: What each manifest-entry column holds (``_manifest/entries-*.parquet``), one row per source.
ENTRY_COLUMNS = {
    "source": "the source's path as matched",
    "size_bytes": "its size in bytes when it was planned",
    "mtime_s": "its modification time, seconds since the epoch (UTC; s3://: the listing's "
               "LastModified); null: unknown",
    "fingerprint": "content fingerprint: `crc32c:<base64>` (local, gs://) or `etag:<ETag>` "
                   "(s3://)",
    "compared": "how the plan compared it with the previous entry (see docs/reruns.md)",
    "status": "its outcome (embedded, too_short, failed, not_in_playlist, unreadable, empty)",
    "embeddings": "rows it has in the version",
    "shards": "the row shards holding those rows",
    "run_id": "the run that wrote this entry",
    "duration_s": "audio seconds decoded",
    "error_class": "the exception's class when it failed",
    "error": "the error message when it failed",
    "stream": "HLS: the folder; null for a file (and in entries written before row format 3's "
              "coverage columns)",
    "start_utc": "the source's first sample in UTC; null when unknown",
    "time_source": "how start_utc was obtained (as on the rows)",
    "gaps": "the stream gaps this entry accounts for: the missing segments before it (it is the "
            "next present one) and a timestamp jump inside it; each with its UTC start, "
            "seconds and cause (see docs/reports.md)",
}

#: One gap in a stream, as an entry holds it.
GAP_TYPE = pa.struct([("start_utc", UTC_TIMESTAMP), ("duration_s", pa.float64()),
                      ("cause", pa.string())])

ENTRY_SCHEMA = pa.schema([
    ("source", pa.string()),
    ("size_bytes", pa.int64()),
    ("mtime_s", pa.float64()),
    ("fingerprint", pa.string()),
    ("compared", pa.string()),
    ("status", pa.string()),
    ("embeddings", pa.int64()),
    ("shards", pa.list_(pa.string())),
    ("run_id", pa.string()),
    ("duration_s", pa.float64()),
    ("error_class", pa.string()),
    ("error", pa.string()),
    ("stream", pa.string()),
    ("start_utc", UTC_TIMESTAMP),
    ("time_source", pa.string()),
    ("gaps", pa.list_(GAP_TYPE)),
])

#: What each outcome row holds (``<output>/outcomes/<run_id>/outcomes-*.jsonl``, JSON lines),
#: one per (input file or HLS segment, model); failed ones also in ``errors/<run_id>/``.
OUTCOME_COLUMNS = {
    "source": "the input file (or HLS segment)",
    "model": "the model; \"\" on a gap row",
    "status": "files: `embedded`, `too_short`, `failed`; HLS segments: `embedded`, "
              "`not_in_playlist` (read and embedded, but not listed), `unreadable`, `empty`, "
              "`failed`; `gap`: a gap in a stream (one row per gap)",
    "embeddings": "rows written",
    "duration_s": "audio seconds decoded (a gap row: the gap's length)",
    "sample_rate_hz": "the native sample rate (Hz)",
    "channels": "the native channel count",
    "error_class": "the exception's class when it failed",
    "error": "the error message; on a gap row, its cause (a missing segment, a timestamp jump)",
    "size_bytes": "the source's size in bytes",
    "fingerprint": "its content fingerprint",
    "labels": "with --label_table: the source's label columns; null where the table has no row",
    "stream": "HLS: the folder; null for a file",
    "start_utc": "the segment's (gap's) UTC start, ISO 8601",
    "time_source": "how start_utc was obtained",
    "owner": "a gap row: the segment whose manifest entry records the gap (after a missing "
             "segment, the next present one; on a timestamp jump, the segment itself)",
}
