"""The records the extraction passes between its stages: what decoding learned about a source,
a failure, and the one outcome per (source, model). The row schemas are the store's
(:mod:`orca_beam.store.schema`); outcome rows are documented in ``docs/output-schema.md``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from orca_beam.core.statuses import NO_TIME


@dataclass(frozen=True)
class WorkItem:
    """A file this run decodes: the models it is embedded with, and its fingerprint when the
    plan already computed it ("" otherwise: computed while the bytes are read)."""

    path: str
    size_bytes: int
    mtime_s: float | None
    models: tuple[str, ...]
    fingerprint: str = ""
    compared: str = ""


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
    #: a gap row: the segment whose manifest entry records the gap
    owner: str | None = None

    def to_dict(self) -> dict:
        """Plain dict for JSON."""
        return asdict(self)



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
