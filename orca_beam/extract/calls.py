"""The calls-mode job (``--annotations``): annotated calls, and sampled call-free windows, cut from
their files -> RunInference per model -> one pooled row per call (``segments-<run>-*.parquet``)
-> the same commit as the stream extraction, so a second run over the same annotations replaces
the first run's rows instead of adding to them -> projector -> one outcome per annotation row
(``segments/<run_id>/``) -> the run summary, written by the job.

The annotation table is read in the launcher (its rows are grouped by file there), so this job
is bounded by the table's size, not by the audio's.
"""

from __future__ import annotations

import logging

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from orca_beam.core.annotations import REJECTED, load_mapping, parse_annotations
from orca_beam.core.errors import UsageError
from orca_beam.core.statuses import FAILED
from orca_beam.extract.commit import CallEntries, WriteManifest
from orca_beam.extract.config import ExtractConfig
from orca_beam.extract.outcomes import WriteOutcomes
from orca_beam.extract.pipeline import embed_model
from orca_beam.extract.summary import FinishRun, SummariseCalls, calls_summary
from orca_beam.projector.export import projector_dir
from orca_beam.projector.stage import ExportProjector
from orca_beam.sources.calls import (
    OUTCOMES_TAG,
    PLANNED_TAG,
    AccountSegments,
    CutSegments,
    SegmentRowsFn,
    group_by_file,
)
from orca_beam.store.schema import segment_schema

LOG = logging.getLogger(__name__)
#: The folders under the output that hold one calls run's outcome files.
OUTCOME_FOLDERS = ["segments", "segments_rejected"]


def read_annotations(config: ExtractConfig):
    """(mapping, header, rows) of the annotation table (local, gs:// or s3://) under its column
    mapping; UsageError when it cannot be read."""
    calls = config.calls
    mapping = load_mapping(calls.annotations_config)
    if not FileSystems.exists(calls.annotations):
        raise UsageError(f"--annotations {calls.annotations!r} does not exist")
    with FileSystems.open(calls.annotations) as handle:
        text = handle.read().decode("utf-8-sig")
    header, rows = parse_annotations(text, mapping, calls.annotations)
    LOG.info("%d annotation rows over %d files, audio root %s", len(rows),
             len(group_by_file(rows)), config.inputs[0])
    return mapping, header, rows


def _is_not_embedded(outcome) -> bool:
    return outcome.status in (REJECTED, FAILED)


def build_calls(pipeline: beam.Pipeline, config: ExtractConfig, versions: dict, run_id: str,
                annotations, labels=None) -> None:
    """Adds the calls-mode job to ``pipeline`` (see the module docstring); ``annotations``: what
    :func:`read_annotations` returned."""
    mapping, header, rows = annotations
    calls = config.calls
    root = config.inputs[0].rstrip("/")
    groups = pipeline | "ListAnnotatedFiles" >> beam.Create(group_by_file(rows), reshuffle=False)
    cut = groups | "CutSegments" >> CutSegments(
        list(config.specs), mapping, root, channel=config.channel, negatives=calls.negatives,
        negative_s=calls.negative_s, seed=calls.negatives_seed)
    no_plan = pipeline | "NoPlan" >> beam.Create([{}])
    counts, failures, records = [], [], []
    for spec in config.specs:
        version = versions[spec.name]
        count, failed, shards = embed_model(
            cut[spec.name], config, spec, version, prefix=f"segments-{run_id}",
            to_rows=SegmentRowsFn(spec, calls.pooling, header),
            schema=segment_schema(spec.embedding_dim, header))
        counts.append(count)
        failures.append(failed)
        entries = shards | f"Entries_{spec.name}" >> CallEntries(run_id)
        records.append({"entries": entries, "plan": no_plan} | f"Manifest_{spec.name}" >>
                       WriteManifest(version, version.folder(config.output), run_id))
        if config.exports_projector:
            entries | f"Projector_{spec.name}" >> ExportProjector(
                projector_dir(config.output, spec.name), spec.name,
                config.projector_kwargs(labels))
    outcomes = {
        "planned": cut[PLANNED_TAG], "outcomes": cut[OUTCOMES_TAG],
        "counts": counts | "AllCounts" >> beam.Flatten(),
        "failures": failures | "AllFailures" >> beam.Flatten(),
    } | "AccountSegments" >> AccountSegments(config.model_names)
    written = outcomes | "WriteSegmentOutcomes" >> WriteOutcomes(
        config.output, run_id, outcomes_dir=OUTCOME_FOLDERS[0], errors_dir=OUTCOME_FOLDERS[1],
        is_error=_is_not_embedded)
    {"counts": outcomes | "SummariseCalls" >> beam.CombineGlobally(
        SummariseCalls(config.model_names)),
     "records": records | "AllCommits" >> beam.Flatten(),
     "written": (written["outcomes"], written["errors"]) | "AllWritten" >> beam.Flatten(),
     } | "FinishRun" >> FinishRun(config.output, run_id, calls_summary, OUTCOME_FOLDERS)
