"""One outcome per (source, model): decode records, row counts and failures joined by source
(``AccountOutcomes``), written as JSON lines (``WriteOutcomes``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import apache_beam as beam

from orca_beam.core.statuses import (
    FAILED,
    FAILED_STATUSES,
    TOO_SHORT,
)
from orca_beam.extract.summary import SourceTally
from orca_beam.records import Failure, FileRecord, Outcome
from orca_beam.store.sinks import write_text_lines

TALLIES_TAG = "tallies"


class _OutcomesFn(beam.DoFn):
    def __init__(self, models: Sequence[str], rule, labels=None):
        self.models = list(models)
        self.rule = rule
        self.labels = labels

    def process(self, keyed):
        source, grouped = keyed
        records: list[FileRecord] = list(grouped["files"])
        failures: list[Failure] = list(grouped["failures"])
        counts: dict[str, int] = {}
        for model, rows in grouped["counts"]:
            counts[model] = counts.get(model, 0) + rows
        record = records[0] if records else None
        base = dict(duration_s=record.duration_s if record else None,
                    sample_rate_hz=record.sample_rate_hz if record else None,
                    channels=record.channels if record else None,
                    size_bytes=record.size_bytes if record else None,
                    fingerprint=record.fingerprint if record else "")
        if record is not None:
            base.update(stream=record.stream or None, start_utc=record.start_utc,
                        time_source=record.time_source)
        if self.labels is not None:
            base["labels"] = self.labels.as_dict(source)
        models = list(record.models) if record and record.models else self.models
        failed = False
        for model in models:
            outcome = self._outcome(source, model, record, failures, counts.get(model, 0), base)
            failed |= outcome.status in FAILED_STATUSES
            yield outcome
        yield beam.pvalue.TaggedOutput(TALLIES_TAG, SourceTally(
            source, record.duration_s if record else None, failed,
            None if self.labels is None else base["labels"] is not None))

    def _outcome(self, source, model, record, failures, written, base) -> Outcome:
        failure = next((f for f in failures if f.model in ("", model)), None)
        if failure is not None:
            status = self.rule.decode_failed if failure.stage == "decode" else FAILED
            return Outcome(source, model, status, written, **base,
                           error_class=failure.error_class, error=failure.error)
        if record is None or record.duration_s is None:
            return Outcome(source, model, FAILED, written, **base, error_class="MissingRecord",
                           error="file was never decoded")
        if self.rule.too_short(record, model):
            return Outcome(source, model, TOO_SHORT, 0, **base,
                           error=f"{record.duration_s:.3f} s is shorter than one window")
        if written != record.expected[model]:
            return Outcome(source, model, FAILED, written, **base,
                           error_class="RowCountMismatch",
                           error=f"{written} rows written, {record.expected[model]} expected")
        return Outcome(source, model, self.rule.embedded(record), written, **base)


class AccountOutcomes(beam.PTransform):
    """Joins decode records, row counts and failures into exactly one Outcome per (file, model).

    Input: a dict with ``files`` (FileRecord), ``failures`` (Failure) and ``counts``
    (((source, model), rows)). ``rule``: the input kind's OutcomeRule. ``labels``: a
    LabelTable whose columns each outcome carries. Outputs: the outcomes (main) and
    ``TALLIES_TAG``, one SourceTally per source for the run summary.
    """

    def __init__(self, models: Sequence[str], rule, labels=None):
        super().__init__()
        self.models = list(models)
        self.rule = rule
        self.labels = labels

    def expand(self, inputs):
        keyed = {
            "files": inputs["files"] | "KeyFiles" >> beam.Map(lambda r: (r.source, r)),
            "failures": inputs["failures"] | "KeyFailures" >> beam.Map(lambda f: (f.source, f)),
            "counts": inputs["counts"] | "SumRows" >> beam.CombinePerKey(sum)
            | "KeyCounts" >> beam.Map(lambda kv: (kv[0][0], (kv[0][1], kv[1]))),
        }
        return (keyed | "JoinBySource" >> beam.CoGroupByKey()
                | "DecideOutcome" >> beam.ParDo(_OutcomesFn(self.models, self.rule, self.labels))
                .with_outputs(TALLIES_TAG, main="outcomes"))


def _is_failed(outcome) -> bool:
    return outcome.status == FAILED


class WriteOutcomes(beam.PTransform):
    """Outcomes (anything with ``to_dict`` and ``status``) -> JSON lines in
    ``<output>/<outcomes_dir>/<run_id>/outcomes-*.jsonl``; those ``is_error`` picks (default:
    failed) also to ``<output>/<errors_dir>/<run_id>/errors-*.jsonl``. Output: a dict of the
    written file names, ``outcomes`` and ``errors``. ``errors_later``: write no errors file
    here (``errors`` is None): an in-process run's last step derives it from the outcome files
    (:func:`write_errors_of`), which spares the graph a second sink."""

    def __init__(self, output_dir: str, run_id: str, *, outcomes_dir: str = "outcomes",
                 errors_dir: str = "errors", is_error=_is_failed, errors_later: bool = False):
        super().__init__()
        self.run_id = run_id
        self.output_dir = output_dir.rstrip("/")
        self.outcomes_dir = outcomes_dir
        self.errors_dir = errors_dir
        self.is_error = is_error
        self.errors_later = errors_later

    def expand(self, outcomes):
        lines = outcomes | "OutcomeJson" >> beam.Map(lambda o: json.dumps(o.to_dict()))
        prefix = f"{self.output_dir}/{self.outcomes_dir}/{self.run_id}/outcomes"
        if self.errors_later:  # in-process: the light write of the same text sink
            written = write_text_lines(lines, prefix, ".jsonl", in_process=True)
            return {"outcomes": written, "errors": None}
        written = lines | "WriteOutcomeLines" >> beam.io.WriteToText(
            prefix, file_name_suffix=".jsonl")
        errors = (outcomes | "OnlyErrors" >> beam.Filter(self.is_error)
                  | "ErrorJson" >> beam.Map(lambda o: json.dumps(o.to_dict()))
                  | "WriteErrorLines" >> beam.io.WriteToText(
                      f"{self.output_dir}/{self.errors_dir}/{self.run_id}/errors",
                      file_name_suffix=".jsonl"))
        return {"outcomes": written, "errors": errors}


def write_errors_of(outcome_files: list[str], output_dir: str, run_id: str,
                    errors_dir: str = "errors") -> str:
    """Writes ``<output>/<errors_dir>/<run_id>/errors-00000-of-00001.jsonl``: the failed lines
    of the written outcome files (JSON lines, read and written one line at a time), as the
    errors sink would; returns its path (written even when empty, as the sink writes one
    empty shard)."""
    from apache_beam.io.filesystems import FileSystems

    path = f"{output_dir.rstrip('/')}/{errors_dir}/{run_id}/errors-00000-of-00001.jsonl"
    with FileSystems.create(path) as out:
        for name in sorted(outcome_files):
            with FileSystems.open(name) as handle:
                for line in handle:
                    if json.loads(line)["status"] == FAILED:
                        out.write(line if line.endswith(b"\n") else line + b"\n")
    return path
