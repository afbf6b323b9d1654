"""The extraction pipeline over a Source (files or HLS folders), with no branch on the kind:

list (the Source) -> plan against each version's manifest (unchanged sources go no further) ->
decode and frame (the Source) -> RunInference per model -> row shards -> one outcome per source
and model (the Source's outcome rule) -> manifest entries and the commit per model -> projector
(from the version's current rows, only when they or the labels changed) -> the run summary,
written by the job.
"""

from __future__ import annotations

import json

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from orca_beam.core.statuses import FAILED
from orca_beam.extract.commit import ManifestEntries, WriteManifest
from orca_beam.extract.config import ExtractConfig
from orca_beam.extract.embed import EmbedWithModel, WriteEmbeddings
from orca_beam.extract.outcomes import TALLIES_TAG, AccountOutcomes, WriteOutcomes
from orca_beam.extract.plan import (
    DELETED_TAG,
    PLAN_TAG,
    WORK_TAG,
    PlanSources,
    SummarisePlan,
    carried_tag,
)
from orca_beam.extract.summary import FinishRun, SummariseOutcomes, file_summary
from orca_beam.projector.export import projector_dir
from orca_beam.projector.stage import ExportProjector
from orca_beam.sources.base import Source
from orca_beam.sources.files import FileSource
from orca_beam.sources.hls import HlsSource
from orca_beam.store.manifest import PLAN_KINDS
from orca_beam.store.reader import ReadEntries
from orca_beam.tags import FAILURES_TAG, FILES_TAG, GAPS_TAG, SOURCES_TAG

#: The folders under the output that hold one run's outcome files (earlier runs' are removed).
OUTCOME_FOLDERS = ["outcomes", "errors"]
PLAN_NAME = "plan.json"


def source_for(config: ExtractConfig) -> Source:
    """The Source of the config's input kind (files or HLS; calls mode is its own job)."""
    if config.hls is not None:
        return HlsSource(config.inputs, config.specs, start=config.hls.start,
                         end=config.hls.end, span_s=config.hls.span_s, chunk_s=config.chunk_s,
                         channel=config.channel, s3_options=config.s3,
                         progress_interval_s=config.progress_interval_s,
                         at_run_time=bool(config.template_location),
                         spread=not config.in_process)
    clock = config.file_clock
    return FileSource(config.inputs, config.specs, chunk_s=config.chunk_s,
                      channel=config.channel,
                      file_clock=(clock.format, clock.zone) if clock else None,
                      progress_interval_s=config.progress_interval_s)


def add_plan(pipeline: beam.Pipeline, config: ExtractConfig, source: Source, versions: dict):
    """Adds the Source's listing and the plan: listed files joined by source with each model
    version's previous entries (read at run time). Returns PlanSources' tagged outputs and the
    Source's Listed."""
    listed = source.list(pipeline)
    inputs = {"files": listed.files}
    for name, version in versions.items():
        inputs[name] = pipeline | f"ReadEntries_{name}" >> ReadEntries(
            version.folder(config.output), spread=not config.in_process)
    planned = inputs | "PlanSources" >> PlanSources(
        list(versions), force=config.force, verify_content=config.verify_content,
        keep_unmatched=source.keep_unmatched)
    return planned, listed


def planned_counts(planned) -> dict:
    """The plan's outputs SummarisePlan counts: ``plan`` and ``deleted``."""
    return {PLAN_TAG: planned[PLAN_TAG], DELETED_TAG: planned[DELETED_TAG]}


def embed_model(pieces, config: ExtractConfig, spec, version, *, prefix: str, to_rows=None,
                schema=None):
    """One model's Pieces -> RunInference -> row shards ``<prefix>-*.parquet`` in the version
    folder. Returns (counts, failures, shard names) PCollections. ``to_rows`` / ``schema``:
    calls mode's row DoFn and schema (default: embedding rows)."""
    embedded = pieces | f"Embed_{spec.name}" >> EmbedWithModel(
        spec, config.handles[spec.name], pack_s=config.pack_s,
        batch_windows=config.batch_windows, to_rows=to_rows,
        expected_sha256=version.content_sha256,
        progress_interval_s=config.progress_interval_s)
    shards = embedded["tables"] | f"Write_{spec.name}" >> WriteEmbeddings(
        version.folder(config.output), spec, schema=schema, file_prefix=prefix,
        in_process=config.in_process and config.calls is None)
    return embedded["counts"], embedded["failures"], shards


def build(pipeline: beam.Pipeline, config: ExtractConfig, source: Source, versions: dict,
          run_id: str, labels=None) -> None:
    """Adds the extraction of ``source`` to ``pipeline`` (see the module docstring). ``labels``:
    the LabelTable of --label_table, or None."""
    planned, listed = add_plan(pipeline, config, source, versions)
    plan_dict = planned_counts(planned) | "SummarisePlan" >> SummarisePlan()
    decoded = source.decode(planned[WORK_TAG], listed)
    counts, failures, shards = [], [decoded[FAILURES_TAG]], {}
    for spec in config.specs:
        count, failed, shards[spec.name] = embed_model(
            decoded[spec.name], config, spec, versions[spec.name], prefix=f"rows-{run_id}")
        counts.append(count)
        failures.append(failed)
    accounted = {
        "files": decoded[FILES_TAG],
        "failures": failures | "AllFailures" >> beam.Flatten(),
        "counts": counts | "AllCounts" >> beam.Flatten(),
    } | "AccountOutcomes" >> AccountOutcomes(config.model_names, source.rule, labels)
    outcomes = accounted.outcomes
    if decoded[GAPS_TAG]:
        outcomes = [outcomes, *decoded[GAPS_TAG]] | "WithGaps" >> beam.Flatten()
    # in-process, the errors file is derived from the outcome files at the end (one sink less)
    written = outcomes | "WriteOutcomes" >> WriteOutcomes(config.output, run_id,
                                                          errors_later=config.in_process)
    records = []
    for spec in config.specs:
        name = spec.name
        new = {"sources": decoded[SOURCES_TAG], "outcomes": outcomes,
               "shards": shards[name]} | f"Entries_{name}" >> ManifestEntries(name, run_id)
        entries = ((new, planned[carried_tag(name)])
                   | f"AllEntries_{name}" >> beam.Flatten())
        records.append({"entries": entries, "plan": plan_dict} | f"Manifest_{name}" >>
                       WriteManifest(versions[name], versions[name].folder(config.output),
                                     run_id, in_process=config.in_process))
        if config.exports_projector and not config.in_process:  # in-process: afterwards
            entries | f"Projector_{name}" >> ExportProjector(
                projector_dir(config.output, name), name, config.projector_kwargs(labels))
    tallies = ((outcomes, accounted[TALLIES_TAG]) | "OutcomesAndTallies" >> beam.Flatten()
               | "SummariseOutcomes" >> beam.CombineGlobally(
                   SummariseOutcomes(config.model_names, labelled=labels is not None)))
    {"counts": tallies, "records": records | "AllCommits" >> beam.Flatten(),
     "written": [w for w in (written["outcomes"], written["errors"]) if w is not None]
     | "AllWritten" >> beam.Flatten(),
     } | "FinishRun" >> FinishRun(config.output, run_id, file_summary, OUTCOME_FOLDERS,
                                  derive_errors=config.in_process)


def is_failed(outcome) -> bool:
    """True for a failed outcome (the rows of ``errors/``)."""
    return outcome.status == FAILED


def export_projectors(options, config: ExtractConfig, versions: dict, labels=None) -> dict:
    """An in-process run's projector files, after the extraction: per model whose committed
    rows digest (``_commit.json``) or projector settings differ from those its projector files
    were made from, the same ExportProjector stage over the committed entries, as one small
    pipeline on FnApiRunner; models whose files are current cost no stage. Returns
    ``{"kept": [...], "rebuilt": [...], "seconds": s, "result": the pipeline's result or None}``
    (templates and distributed runners keep the stage in the extraction's graph)."""
    import time

    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from orca_beam.projector.export import export_settings, is_up_to_date
    from orca_beam.store.manifest import read_commit

    started = time.perf_counter()
    kwargs = config.projector_kwargs(labels)
    settings = export_settings(**kwargs)
    kept, rebuilt = [], []
    for name, version in versions.items():
        commit = read_commit(version.folder(config.output))
        current = commit is not None and is_up_to_date(
            projector_dir(config.output, name), commit["rows_digest"], settings)
        (kept if current else rebuilt).append(name)
    result = None
    if rebuilt:
        pipeline = beam.Pipeline(runner=FnApiRunner(), options=options)
        for name in rebuilt:
            entries = pipeline | f"ReadEntries_{name}" >> ReadEntries(
                versions[name].folder(config.output), spread=False)
            entries | f"Projector_{name}" >> ExportProjector(
                projector_dir(config.output, name), name, kwargs)
        result = pipeline.run()
        result.wait_until_finish()
    return {"kept": kept, "rebuilt": rebuilt, "seconds": round(time.perf_counter() - started, 3),
            "result": result}


def plan(options, config: ExtractConfig, source: Source, versions: dict) -> dict:
    """What a run would do, without decoding anything: a Beam job (same runner; in-process, on
    FnApiRunner) that lists the
    inputs and joins them with each version's manifest, then writes ``<output>/plan.json``.
    Returns, per model, the count of sources that are new, changed, to retry (failed before),
    unchanged and deleted, and the first deleted ones by name."""
    path = f"{config.output}/{PLAN_NAME}"
    # DirectRunner would first try Prism on this graph (it has no exception-handling ParDo),
    # converting it twice and leaving Prism's worker-pool server running: in-process, the
    # plan runs on FnApiRunner directly, as the extraction always does
    runner = None
    if config.in_process:
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        runner = FnApiRunner()
    pipeline = beam.Pipeline(runner=runner, options=options)
    planned, _ = add_plan(pipeline, config, source, versions)

    def write(plan_dict: dict) -> None:
        out = {}
        for name, version in versions.items():
            counts = plan_dict.get(name, {})
            out[name] = {"version": version.version_id, "folder": version.folder(config.output),
                         **{kind: counts.get(kind, 0) for kind in PLAN_KINDS},
                         "deleted_sources": counts.get("deleted_sample", [])}
        with FileSystems.create(path) as handle:
            handle.write((json.dumps(out, indent=2) + "\n").encode())

    (planned_counts(planned) | "SummarisePlan" >> SummarisePlan()
     | "WritePlan" >> beam.Map(write))
    pipeline.run().wait_until_finish()
    with FileSystems.open(path) as handle:
        return json.loads(handle.read().decode())
