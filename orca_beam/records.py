"""Row schemas, defined once: embedding rows (Parquet), outcome rows, the run summary.

Embedding rows (``<output>/<model>/<version>/rows-<run>-SSSSS-of-NNNNN.parquet``):

=============== ===================================== ===============================================
column          type                                  meaning
=============== ===================================== ===============================================
source          string                                the input file's path as matched; in an HLS
                                                      stream, the segment the window's last sample
                                                      is in (its owner: one outcome per segment)
channel         int32                                 channel used; -1 = all channels mixed to mono
start_s         float64                               window start in seconds from the file start
                                                      (HLS: from the start of the folder's stream)
end_s           float64                               window end (real span), clipped to the file
stream          string                                HLS: the folder (``.../hls/<unix s>/``); null
                                                      for a file
start_utc       timestamp[us, UTC]                    the window's start in UTC; null when unknown
time_source     string                                how start_utc was obtained:
                                                      ``program_date_time``,
                                                      ``folder_plus_durations``, ``file_name`` or
                                                      ``none`` (see README, "Orcasound's archive")
model           string                                vggish / yamnet / humpback
model_version   string                                ``<handle>@sha256:<16 hex>[+standin]``
standin         bool                                  True: stand-in model, the vector is NOT real
embedding       fixed_size_list<float32>[dim]         the embedding (128 / 1024 / 2048)
thumbnail       fixed_size_binary[1024]               32x32 uint8 image of the patch the model saw
=============== ===================================== ===============================================

Outcome rows (``<output>/outcomes/outcomes-*.jsonl``), one per (input file or HLS segment, model):
``source``, ``model``, ``status`` (``embedded`` | ``too_short`` | ``failed``; segments:
``embedded`` | ``not_in_playlist`` (read and embedded, but not listed) | ``unreadable`` |
``empty`` | ``failed``), ``embeddings`` (rows written),
``duration_s``, ``sample_rate_hz`` (native), ``channels``, ``error_class``, ``error`` (message),
``size_bytes``, ``fingerprint``, ``stream``, ``start_utc`` (ISO 8601, UTC), ``time_source`` and
``labels`` (with ``--label_table``: the source's label
columns; null where the table has no row for it, and without a table). Failed ones are also in
``<output>/errors/errors-*.jsonl``. Each gap in an HLS stream is one more outcome row, status
``gap``, model ``""``: ``stream``, ``start_utc`` and ``duration_s`` of the gap, and its cause in
``error`` (a segment missing from the folder, or a jump in the MPEG-TS timestamps); ``source`` is
the missing segment, or the segment the audio resumes in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from orca_beam.projector.thumbnails import THUMB_PX

EMBEDDED = "embedded"
TOO_SHORT = "too_short"
FAILED = "failed"
STATUSES = (EMBEDDED, TOO_SHORT, FAILED)
#: HLS segments' statuses besides embedded and failed, and the status of a gap row.
NOT_IN_PLAYLIST = "not_in_playlist"
UNREADABLE = "unreadable"
EMPTY = "empty"
SEGMENT_STATUSES = (NOT_IN_PLAYLIST, UNREADABLE, EMPTY)
GAP = "gap"
#: The type of ``start_utc``: microseconds, UTC.
UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")
#: ``time_source`` of rows without a clock.
NO_TIME = "none"


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


@dataclass(frozen=True)
class FileRecord:
    """What decoding learned about one input file: its native format and expected rows."""

    source: str
    duration_s: float
    sample_rate_hz: int
    channels: int
    channel: int
    #: model name -> embeddings one whole-file call yields (0 = too short for that model)
    expected: dict[str, int]
    size_bytes: int | None = None
    fingerprint: str = ""
    #: the models this run embeds the file with (the others were unchanged and skipped)
    models: tuple[str, ...] = ()
    #: HLS segments: the folder, the segment's UTC start (ISO 8601) and its time source, and
    #: whether the playlist lists it ("" stream: a plain file)
    stream: str = ""
    start_utc: str | None = None
    time_source: str = NO_TIME
    in_playlist: bool = True


@dataclass(frozen=True)
class SourceState:
    """A file this run decodes: its size, fingerprint, modification time and the models it is
    (re-)embedded with."""

    source: str
    size_bytes: int
    fingerprint: str
    models: tuple[str, ...]
    mtime_s: float | None = None  # modification time, seconds since the epoch (UTC)
    compared: str = ""  # how the plan compared it with the manifest (manifest.COMPARED_*)


@dataclass(frozen=True)
class Failure:
    """A file (or a file's model) that could not be embedded."""

    source: str
    model: str  # "" when it applies to every model (decoding failed)
    stage: str  # "decode" | "inference"
    error_class: str
    error: str
    segment_id: str = ""  # segments mode: the segment whose inference failed


@dataclass(frozen=True)
class Outcome:
    """The one outcome of one input file for one model."""

    source: str
    model: str
    status: str
    embeddings: int
    duration_s: float | None
    sample_rate_hz: int | None
    channels: int | None
    error_class: str = ""
    error: str = ""
    size_bytes: int | None = None
    fingerprint: str = ""
    #: with --label_table: the source's label columns, or None where the label file has no row
    labels: dict | None = None
    #: HLS segments and gaps: the folder; the segment's (gap's) UTC start, ISO 8601
    stream: str | None = None
    start_utc: str | None = None
    time_source: str = NO_TIME

    def to_dict(self) -> dict:
        """Plain dict for JSON."""
        return asdict(self)


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


@dataclass(frozen=True)
class SegmentOutcome:
    """The one outcome of one segment (an annotation row, or a sampled negative).

    ``status``: ``embedded`` | ``rejected`` (``reason`` says why) | ``no_call`` (the row marks a
    call-free file) | ``failed`` (inference raised). ``frames``: model -> frames embedded.
    """

    segment_id: str
    row: int | None
    kind: str
    wav_filename: str
    source: str
    status: str
    reason: str = ""
    detail: str = ""
    start_s: float | None = None
    end_s: float | None = None
    file_duration_s: float | None = None
    frames: dict | None = None

    def to_dict(self) -> dict:
        """Plain dict for JSON."""
        return asdict(self)
