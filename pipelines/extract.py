"""The main job: audio files -> per-model embeddings (Parquet) + one outcome per file and model.

    python -m pipelines.extract --runner=DirectRunner --input 'recordings/*.wav' --output out/ \
        --model yamnet [--model vggish --model humpback] [--model_handle yamnet=/models/yamnet]

Segments mode (``--annotations``): one pooled embedding per annotated call, --input is the audio
root:

    python -m pipelines.extract --runner=DirectRunner --input orcaml/wav \
        --annotations orcaml/annotations.tsv --output out/ [--negatives 2]

``--help`` lists every option with its unit.
"""

from __future__ import annotations

import logging
import sys
import time

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (
    DirectOptions,
    GoogleCloudOptions,
    StandardOptions,
)

from orca_beam.core import s3
from orca_beam.core.annotations import REJECTED, load_mapping, parse_annotations
from orca_beam.core.registry import get_model_spec
from orca_beam.core.s3 import s3_settings
from orca_beam.core.statuses import FAILED
from orca_beam.extract.commit import ManifestEntries, WriteManifest
from orca_beam.extract.embed import EmbedWithModel, WriteEmbeddings
from orca_beam.extract.options import ExtractOptions, label_table
from orca_beam.extract.outcomes import AccountOutcomes, WriteOutcomes
from orca_beam.extract.plan import (
    DELETED_TAG,
    PLAN_TAG,
    WORK_TAG,
    PlanSources,
    SummarisePlan,
    carried_tag,
)
from orca_beam.extract.summary import (
    format_segment_summary,
    format_summary,
    read_jsonl,
    summarise,
    summarise_segments,
    write_summary,
)
from orca_beam.extract.versions import output_version
from orca_beam.models.loading import ModelUnavailableError, cached_model, model_version
from orca_beam.progress import Progress
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
from orca_beam.sources.files import DecodeAndFrame, MatchFiles
from orca_beam.sources.hls import (
    FOLDERS_TAG,
    DecodeSpans,
    FormSpans,
    ListFolders,
    PlanFolders,
    folders_in_range,
    look_behind_s,
)
from orca_beam.store.manifest import PLAN_KINDS, version_state
from orca_beam.store.reader import ReadEntries
from orca_beam.store.schema import segment_schema
from orca_beam.store.version import new_run_id
from orca_beam.tags import FAILURES_TAG, FILES_TAG, GAPS_TAG, SOURCES_TAG

LOG = logging.getLogger("orca_beam.extract")


def check_inputs(patterns: list[str]) -> None:
    """Raises ValueError naming any pattern that matches no file (asks for one match each: the
    listing itself is the pipeline's first stage, so no file list is built here)."""
    for pattern, result in zip(patterns, FileSystems.match(patterns, limits=[1] * len(patterns)),
                               strict=True):
        if not result.metadata_list:
            raise ValueError(f"--input {pattern!r} matched no files")


def resolve_versions(options: ExtractOptions, handles: dict[str, str]) -> dict:
    """model name -> OutputVersion (the model is resolved and hashed here, in the launcher)."""
    mode, extra = "files", {}
    if options.annotations:
        mode = "segments"
        extra = {"pooling": options.pooling, "negative_s": options.negative_s}
    versions = {}
    for spec in options.model_specs():
        try:
            version = model_version(handles[spec.name])
        except ModelUnavailableError as exc:
            raise ValueError(exc.message(spec.name)) from None
        versions[spec.name] = output_version(spec, version, channel=options.channel, mode=mode,
                                             extra=extra)
        LOG.info("model %s: %s -> %s%s", spec.name, version.label,
                 versions[spec.name].folder(options.output),
                 "  (STAND-IN: random weights, embeddings are not real)" if version.standin
                 else "")
    return versions


#: Runners whose workers run inside the launching process (Beam's local runners, in memory).
IN_PROCESS_RUNNERS = {None, "DirectRunner", "SwitchingDirectRunner", "FnApiRunner",
                      "BundleBasedDirectRunner"}


def runs_in_process(options: ExtractOptions) -> bool:
    """True when the runner's workers are this process (DirectRunner in memory), so a model
    loaded here is the one they use."""
    runner = options.view_as(StandardOptions).runner
    name = runner if isinstance(runner, str) or runner is None else type(runner).__name__
    return (name in IN_PROCESS_RUNNERS
            and options.view_as(DirectOptions).direct_running_mode == "in_memory"
            and not options.view_as(GoogleCloudOptions).template_location)


def preload_models(handles: dict[str, str], versions: dict) -> dict[str, float]:
    """Loads each model once in this process, before the pipeline starts, checking it holds
    the content its version was named from; returns model -> seconds taken. The in-process
    runner's workers then reuse it (``loading.cached_model``), and a model that cannot be loaded
    stops the run here instead of after decoding."""
    taken = {}
    for name, version in versions.items():
        started = time.perf_counter()
        cached_model(handles[name], version.content_sha256,
                     get_model_spec(name).embedding_tensor)
        taken[name] = round(time.perf_counter() - started, 3)
        LOG.info("model %s loaded in %.1f s (the in-process workers reuse it)", name, taken[name])
    return taken


def embed_and_write(pieces, options: ExtractOptions, handles: dict[str, str], versions: dict,
                    *, file_prefix: str, to_rows=None, schema_of=None, projector: bool = True,
                    labels=None):
    """Per model: its Pieces (``pieces[name]``) -> RunInference -> Parquet shards in the model
    version's folder (-> projector files from those shards when ``projector``, with the
    LabelTable ``labels``).
    ``to_rows(spec)`` / ``schema_of(spec)`` replace the file-mode row DoFn and schema. Returns
    the per-model lists of ``counts`` and ``failures`` PCollections and the shard names."""
    counts, failures, shards = [], [], {}
    for spec in options.model_specs():
        embedded = pieces[spec.name] | f"Embed_{spec.name}" >> EmbedWithModel(
            spec, handles[spec.name], pack_s=options.pack_s, batch_windows=options.batch_windows,
            to_rows=to_rows(spec) if to_rows else None,
            expected_sha256=versions[spec.name].content_sha256,
            progress_interval_s=options.progress_interval_s)
        shards[spec.name] = embedded["tables"] | f"Write_{spec.name}" >> WriteEmbeddings(
            versions[spec.name].folder(options.output), spec,
            schema=schema_of(spec) if schema_of else None, file_prefix=file_prefix)
        if projector and options.projector_point != "none":
            shards[spec.name] | f"Projector_{spec.name}" >> ExportProjector(
                projector_dir(options.output, spec.name), spec.name,
                options.projector_kwargs(labels), from_entries=False)
        counts.append(embedded["counts"])
        failures.append(embedded["failures"])
    return counts, failures, shards


def check_hls_inputs(options: ExtractOptions) -> None:
    """Raises ValueError when no --input root has a folder that can overlap --start/--end (one
    delimiter listing per root, in the launcher; the pipeline lists them again when it runs)."""
    start, end = options.hls_range()
    found = 0
    for root in options.input_patterns():
        chosen = folders_in_range(root, start, end, s3_settings(options))
        LOG.info("%s: %d folders can overlap %s .. %s", root, len(chosen), start.isoformat(),
                 end.isoformat())
        found += len(chosen)
    if not found:
        raise ValueError(f"no HLS folder under {options.input_patterns()} can overlap "
                         f"{start.isoformat()} .. {end.isoformat()} (folders are named by their "
                         "unix start time: <node>/hls/<seconds>/)")


def add_plan(pipeline: beam.Pipeline, options: ExtractOptions, versions: dict):
    """Adds the listing and the plan: matched files (with --start/--end: the HLS segments in
    range, the folders listed when the pipeline runs) joined by source with each model version's
    previous entries (read at run time). Returns PlanSources' tagged outputs and, for HLS,
    PlanFolders' (else None)."""
    listed = None
    hls = options.hls_range()
    if hls is not None:
        start, end = hls
        listed = (pipeline | "HlsRoots" >> beam.Create(options.input_patterns())
                  | "ListFolders" >> ListFolders(start, end, s3_settings(options))
                  | "PlanFolders" >> PlanFolders(start, end))
        files = listed.segments
    else:
        files = pipeline | "MatchFiles" >> MatchFiles(options.input_patterns())
    inputs = {"files": files}
    for name, version in versions.items():
        inputs[name] = pipeline | f"ReadEntries_{name}" >> ReadEntries(
            version.folder(options.output))
    return inputs | "PlanSources" >> PlanSources(
        list(versions), force=options.force, verify_content=options.verify_content,
        keep_unmatched=hls is not None), listed


def planned_counts(planned) -> dict:
    """The plan's outputs SummarisePlan counts: ``plan`` and ``deleted``."""
    return {PLAN_TAG: planned[PLAN_TAG], DELETED_TAG: planned[DELETED_TAG]}


def build(pipeline: beam.Pipeline, options: ExtractOptions, handles: dict[str, str],
          versions: dict, run_id: str, labels=None) -> None:
    """Adds the extraction stages to ``pipeline``: match -> plan against each version's
    manifest (unchanged files go no further) -> decode + frame -> RunInference -> shards ->
    outcomes -> manifest entries + commit -> projector (from the version's current rows, only
    when they or the labels changed). ``labels``: the LabelTable of --label_table, or None.
    With --start/--end (HLS input) segments are the sources, decoded as continuous streams in
    time ranges, and each gap is one more outcome row."""
    specs = options.model_specs()
    planned, listed = add_plan(pipeline, options, versions)
    plan_dict = planned_counts(planned) | "SummarisePlan" >> SummarisePlan()
    gaps = []
    if listed is not None:
        spans = {"plans": listed[FOLDERS_TAG], "work": planned[WORK_TAG]} | "FormSpans" >> \
            FormSpans(options.span_s, look_behind_s(specs))
        decoded = spans | "DecodeStreams" >> DecodeSpans(
            specs, chunk_s=options.chunk_s, channel=options.channel,
            progress_interval_s=options.progress_interval_s)
        gaps = [listed[GAPS_TAG], decoded[GAPS_TAG]]
    else:
        decoded = planned[WORK_TAG] | "DecodeAndFrame" >> DecodeAndFrame(
            specs, chunk_s=options.chunk_s, channel=options.channel,
            file_time=options.file_time(), progress_interval_s=options.progress_interval_s)
    counts, failures, shards = embed_and_write(
        decoded, options, handles, versions, file_prefix=f"rows-{run_id}", projector=False)
    failures.append(decoded[FAILURES_TAG])
    outcomes = {
        "files": decoded[FILES_TAG],
        "failures": failures | "AllFailures" >> beam.Flatten(),
        "counts": counts | "AllCounts" >> beam.Flatten(),
    } | "AccountOutcomes" >> AccountOutcomes([spec.name for spec in specs], labels)
    if gaps:
        outcomes = [outcomes, *gaps] | "WithGaps" >> beam.Flatten()
    outcomes | "WriteOutcomes" >> WriteOutcomes(options.output)
    for spec in specs:
        name = spec.name
        new = {"sources": decoded[SOURCES_TAG], "outcomes": outcomes,
               "shards": shards[name]} | f"Entries_{name}" >> ManifestEntries(name, run_id)
        entries = ((new, planned[carried_tag(name)])
                   | f"AllEntries_{name}" >> beam.Flatten())
        {"entries": entries, "plan": plan_dict} | f"Manifest_{name}" >> WriteManifest(
            versions[name], versions[name].folder(options.output), run_id)
        if options.projector_point != "none":
            entries | f"Projector_{name}" >> ExportProjector(
                projector_dir(options.output, name), name, options.projector_kwargs(labels))


PLAN_NAME = "plan.json"


def plan(options: ExtractOptions, versions: dict) -> dict:
    """What a run would do, without decoding anything: a Beam job (same runner) that lists the
    inputs and joins them with each version's manifest, then writes ``<output>/plan.json``.
    Returns, per model, the count of sources that are new, changed, to retry (failed before),
    unchanged and deleted, and the first deleted ones by name."""
    import json

    path = f"{options.output.rstrip('/')}/{PLAN_NAME}"
    pipeline = beam.Pipeline(options=options)
    planned, _ = add_plan(pipeline, options, versions)

    def write(plan_dict: dict) -> None:
        out = {}
        for name, version in versions.items():
            counts = plan_dict.get(name, {})
            out[name] = {"version": version.version_id, "folder": version.folder(options.output),
                         **{kind: counts.get(kind, 0) for kind in PLAN_KINDS},
                         "deleted_sources": counts.get("deleted_sample", [])}
        with FileSystems.create(path) as handle:
            handle.write((json.dumps(out, indent=2) + "\n").encode())

    (planned_counts(planned) | "SummarisePlan" >> SummarisePlan()
     | "WritePlan" >> beam.Map(write))
    pipeline.run().wait_until_finish()
    with FileSystems.open(path) as handle:
        return json.loads(handle.read().decode())


def read_annotations(options: ExtractOptions):
    """(header, rows) of --annotations (local or gs://) under the --annotations_config mapping."""
    mapping = load_mapping(options.annotations_config)
    if not FileSystems.exists(options.annotations):
        raise ValueError(f"--annotations {options.annotations!r} does not exist")
    with FileSystems.open(options.annotations) as handle:
        text = handle.read().decode("utf-8-sig")
    header, rows = parse_annotations(text, mapping, options.annotations)
    return mapping, header, rows


def _is_not_embedded(outcome) -> bool:
    return outcome.status in (REJECTED, FAILED)


def build_segments(pipeline: beam.Pipeline, options: ExtractOptions, handles: dict[str, str],
                   versions: dict, run_id: str, annotations, labels=None) -> None:
    """Adds the segments-mode stages to ``pipeline``: annotation rows grouped per file -> cut ->
    RunInference per model -> pooled segment rows -> Parquet, projector (with the LabelTable
    ``labels``), one outcome per row."""
    mapping, header, rows = annotations
    specs = options.model_specs()
    root = options.input_patterns()[0].rstrip("/")
    groups = pipeline | "ListAnnotatedFiles" >> beam.Create(group_by_file(rows), reshuffle=False)
    cut = groups | "CutSegments" >> CutSegments(
        specs, mapping, root, channel=options.channel, negatives=options.negatives,
        negative_s=options.negative_s, seed=options.negatives_seed)
    counts, failures, _ = embed_and_write(
        cut, options, handles, versions, file_prefix=f"segments-{run_id}",
        to_rows=lambda spec: SegmentRowsFn(spec, options.pooling, header),
        schema_of=lambda spec: segment_schema(spec.embedding_dim, header), labels=labels)
    outcomes = {
        "planned": cut[PLANNED_TAG], "outcomes": cut[OUTCOMES_TAG],
        "counts": counts | "AllCounts" >> beam.Flatten(),
        "failures": failures | "AllFailures" >> beam.Flatten(),
    } | "AccountSegments" >> AccountSegments([spec.name for spec in specs])
    outcomes | "WriteSegmentOutcomes" >> WriteOutcomes(
        options.output, outcomes_dir="segments", errors_dir="segments_rejected",
        is_error=_is_not_embedded)


def counters(result) -> dict[str, int]:
    """Beam counters of a finished run, summed over steps: ``namespace:name`` -> value."""
    out: dict[str, int] = {}
    try:
        found = result.metrics().query()["counters"]
    except Exception:  # noqa: BLE001 - a runner without metrics support
        return out
    for counter in found:
        value = counter.committed if counter.committed is not None else counter.attempted
        key = f"{counter.key.metric.namespace}:{counter.key.metric.name}"
        out[key] = out.get(key, 0) + int(value or 0)
    return dict(sorted(out.items()))


def _clear_previous_run(output: str, folders: list[str]) -> None:
    """Deletes the previous run's outcome files (each run writes its own; manifests keep the
    history of the data)."""
    for folder in folders:
        found = FileSystems.match([f"{output.rstrip('/')}/{folder}/*"])[0].metadata_list
        if found:
            FileSystems.delete([meta.path for meta in found])


def run(argv: list[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> dict:
    """Parses ``argv``, runs the pipeline to completion, writes and returns the summary dict
    (``--plan``: returns the plan without running; ``--template_location``: writes the
    template)."""
    options = ExtractOptions(argv if argv is not None else sys.argv[1:])
    options.validate()
    s3.install()  # one shared (unsigned without credentials) S3 client per process
    FileSystems.set_options(options)  # s3:// settings for the launcher's own listing and reads
    Progress.configure(options.progress_interval_s)  # the launcher's own lines (in-process)
    annotations = None
    if options.annotations:
        annotations = read_annotations(options)
        LOG.info("%d annotation rows over %d files, audio root %s", len(annotations[2]),
                 len(group_by_file(annotations[2])), options.input_patterns()[0])
    template = options.view_as(GoogleCloudOptions).template_location
    if options.hls_range() is not None:
        if not template:  # a template lists its folders when it runs
            check_hls_inputs(options)
    elif annotations is None:
        check_inputs(options.input_patterns())
    handles = options.model_handles()
    specs = options.model_specs()
    labels = label_table(options)
    if labels is not None:
        LOG.info("labels: %d rows, columns %s, key %s", len(labels.rows),
                 ", ".join(labels.columns), labels.key_column)
    versions = resolve_versions(options, handles)
    if options.plan:
        if annotations is not None:
            raise ValueError("--plan applies to file mode (segments mode always runs in full)")
        planned = plan(options, versions)
        for name, counts in planned.items():
            print(f"{name} {counts['version']}: new {counts['new']}, changed {counts['changed']},"
                  f" retry {counts['retry']}, unchanged {counts['unchanged']}, deleted "
                  f"{counts['deleted']}")
            for source in counts["deleted_sources"]:
                print(f"  deleted since the last run: {source}")
        return {"plan": planned}
    load_s = preload_models(handles, versions) if runs_in_process(options) else {}
    run_id = new_run_id()
    Progress.restart()
    started = time.perf_counter()
    pipeline = test_pipeline or beam.Pipeline(options=options)
    if annotations is not None:
        if not template:
            _clear_previous_run(options.output, ["segments", "segments_rejected"])
        build_segments(pipeline, options, handles, versions, run_id, annotations, labels)
    else:
        LOG.info("inputs %s (run %s)", options.input_patterns(), run_id)
        if not template:
            _clear_previous_run(options.output, ["outcomes", "errors"])
        build(pipeline, options, handles, versions, run_id, labels)
    result = pipeline.run()
    if template:  # a classic template was written instead of running a job
        LOG.info("Dataflow template written to %s (stage files under %s)", template,
                 options.view_as(GoogleCloudOptions).staging_location)
        print(f"template: {template}")
        return {"template_location": template}
    result.wait_until_finish()
    wall_s = time.perf_counter() - started
    if annotations is not None:
        outcomes = read_jsonl(options.output.rstrip("/") + "/segments/outcomes-*.jsonl")
        summary = summarise_segments(outcomes, [spec.name for spec in specs], wall_s)
        summary["versions"] = {n: v.version_id for n, v in versions.items()}
        summary["model_load_s"] = load_s
        summary["counters"] = counters(result)
        path = write_summary(options.output, summary)
        print(format_segment_summary(summary))
        print(f"summary: {path}")
        return summary
    outcomes = read_jsonl(options.output.rstrip("/") + "/outcomes/outcomes-*.jsonl")
    summary = summarise(outcomes, [spec.name for spec in specs], wall_s,
                        labelled=labels is not None)
    summary["run_id"] = run_id
    summary["model_load_s"] = load_s
    summary["versions"] = {}
    for name, version in versions.items():
        state = version_state(version.folder(options.output))
        last = state["runs"][-1] if state["runs"] else {}
        summary["versions"][name] = {
            "version": version.version_id, "folder": version.folder(options.output),
            "sources": state.get("entries", 0), "plan": last.get("plan", {}),
            "deleted_sources": last.get("deleted", [])}
    first_plan = next(iter(summary["versions"].values()))["plan"]
    summary["files_matched"] = sum(first_plan.get(k, 0) for k in PLAN_KINDS if k != "deleted")
    summary["nothing_changed"] = all(
        sum(v["plan"].get(k, 0) for k in ("new", "changed", "retry", "deleted")) == 0
        for v in summary["versions"].values())
    summary["counters"] = counters(result)
    path = write_summary(options.output, summary)
    print(format_summary(summary))
    print(f"summary: {path}")
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    try:
        run()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
