"""The protocol every input kind of the stream extraction implements (files, HLS folders), and
the outcome rule each brings. The extract pipeline asks a Source to list its inputs and to decode
the work the plan leaves; it never asks which kind it has.

Per-element error policy, the same for every input kind: an exception while reading, decoding or
cutting one source becomes a Failure row for that source (``unreadable`` for an HLS segment,
``failed`` otherwise) and the run goes on; an exception in inference fails the pieces of that
batch (RunInference's exception handling). What stops the job: a UsageError in the launcher
(before the pipeline starts), a model whose content changed on a worker (ModelChangedError), and
errors writing the outputs themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import apache_beam as beam

from orca_beam.core.statuses import EMBEDDED, FAILED, TOO_SHORT
from orca_beam.records import FileRecord


class OutcomeRule(Protocol):
    """How an input kind names the outcome of a source that was read (the shared checks, a
    failure, a missing record, a row count mismatch, are the pipeline's)."""

    #: the status of a source whose decoding failed
    decode_failed: str

    def too_short(self, record: FileRecord, model: str) -> bool:
        """True when ``record`` is too short for one window of ``model`` (its outcome is then
        ``too_short``, with no rows)."""

    def embedded(self, record: FileRecord) -> str:
        """The status of a source whose rows were all written."""


@dataclass(frozen=True)
class FileOutcomeRule:
    """Files: a decoding failure is ``failed``; a file shorter than one window is
    ``too_short``; else ``embedded``."""

    decode_failed: str = FAILED

    def too_short(self, record: FileRecord, model: str) -> bool:
        """True when ``model`` gets no window from ``record``."""
        return record.expected[model] == 0

    def embedded(self, record: FileRecord) -> str:
        """Always ``embedded``."""
        return EMBEDDED


@dataclass(frozen=True)
class Listed:
    """What a Source's listing adds to the pipeline: ``files`` (MatchedFile per input the plan
    decides on) and, by name, any other PCollection its decoding needs (HLS: folder plans and
    the gaps found in them)."""

    files: beam.PCollection
    extra: dict


class Source(Protocol):
    """One input kind of the stream extraction."""

    #: entries whose source is not listed are carried as unchanged (HLS: a run over
    #: --start/--end lists only that range) instead of deleted
    keep_unmatched: bool
    #: the outcome rule of its sources
    rule: OutcomeRule

    def check(self) -> None:
        """Raises UsageError in the launcher when the inputs cannot be found."""

    def list(self, pipeline: beam.Pipeline) -> Listed:
        """Adds the listing to ``pipeline``."""

    def decode(self, work: beam.PCollection, listed: Listed):
        """The plan's work items -> tagged outputs: one PCollection of Pieces per model name,
        ``FILES_TAG``, ``FAILURES_TAG``, ``SOURCES_TAG`` and ``GAPS_TAG`` (Outcome rows of stream
        gaps; empty where the kind has none)."""


__all__ = ["TOO_SHORT", "FileOutcomeRule", "Listed", "OutcomeRule", "Source"]
