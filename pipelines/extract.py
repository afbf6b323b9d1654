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
from apache_beam.options.pipeline_options import GoogleCloudOptions

from orca_beam.annotations import REJECTED, load_mapping, parse_annotations
from orca_beam.models.loading import model_version
from orca_beam.options import ExtractOptions
from orca_beam.projector.export import projector_dir
from orca_beam.records import FAILED, segment_schema
from orca_beam.segments import (
    OUTCOMES_TAG,
    PLANNED_TAG,
    AccountSegments,
    CutSegments,
    SegmentRowsFn,
    group_by_file,
)
from orca_beam.summary import (
    format_segment_summary,
    format_summary,
    read_jsonl,
    summarise,
    summarise_segments,
    write_summary,
)
from orca_beam.transforms import (
    FAILURES_TAG,
    FILES_TAG,
    AccountOutcomes,
    DecodeAndFrame,
    EmbedWithModel,
    ExportProjector,
    MatchAudioFiles,
    Progress,
    WriteEmbeddings,
    WriteOutcomes,
)

LOG = logging.getLogger("orca_beam.extract")


def check_inputs(patterns: list[str]) -> int:
    """Counts the files the patterns match; raises ValueError naming any pattern that matches none."""
    total = 0
    for pattern, result in zip(patterns, FileSystems.match(patterns), strict=True):
        count = len(result.metadata_list)
        if count == 0:
            raise ValueError(f"--input {pattern!r} matched no files")
        total += count
    return total


def embed_and_write(pieces, options: ExtractOptions, handles: dict[str, str], *,
                    to_rows=None, schema_of=None, file_prefix: str = "embeddings"):
    """Per model: its Pieces (``pieces[name]``) -> RunInference -> Parquet shards -> projector
    files. ``to_rows(spec)`` / ``schema_of(spec)`` replace the file-mode row DoFn and schema.
    Returns the lists of per-model ``counts`` and ``failures`` PCollections."""
    counts, failures = [], []
    for spec in options.model_specs():
        embedded = pieces[spec.name] | f"Embed_{spec.name}" >> EmbedWithModel(
            spec, handles[spec.name], pack_s=options.pack_s, batch_windows=options.batch_windows,
            to_rows=to_rows(spec) if to_rows else None)
        shards = embedded["tables"] | f"Write_{spec.name}" >> WriteEmbeddings(
            options.output, spec, schema=schema_of(spec) if schema_of else None,
            file_prefix=file_prefix)
        if options.projector_point != "none":
            shards | f"Projector_{spec.name}" >> ExportProjector(
                projector_dir(options.output, spec.name), spec.name, options.projector_kwargs())
        counts.append(embedded["counts"])
        failures.append(embedded["failures"])
    return counts, failures


def build(pipeline: beam.Pipeline, options: ExtractOptions, handles: dict[str, str]) -> None:
    """Adds the extraction stages to ``pipeline``."""
    specs = options.model_specs()
    files = pipeline | "MatchAudioFiles" >> MatchAudioFiles(options.input_patterns())
    decoded = files | "DecodeAndFrame" >> DecodeAndFrame(
        specs, chunk_s=options.chunk_s, channel=options.channel)
    counts, failures = embed_and_write(decoded, options, handles)
    failures.append(decoded[FAILURES_TAG])
    outcomes = {
        "files": decoded[FILES_TAG],
        "failures": failures | "AllFailures" >> beam.Flatten(),
        "counts": counts | "AllCounts" >> beam.Flatten(),
    } | "AccountOutcomes" >> AccountOutcomes([spec.name for spec in specs])
    outcomes | "WriteOutcomes" >> WriteOutcomes(options.output)


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
                   annotations) -> None:
    """Adds the segments-mode stages to ``pipeline``: annotation rows grouped per file -> cut ->
    RunInference per model -> pooled segment rows -> Parquet, projector, one outcome per row."""
    mapping, header, rows = annotations
    specs = options.model_specs()
    root = options.input_patterns()[0].rstrip("/")
    groups = pipeline | "ListAnnotatedFiles" >> beam.Create(group_by_file(rows), reshuffle=False)
    cut = groups | "CutSegments" >> CutSegments(
        specs, mapping, root, channel=options.channel, negatives=options.negatives,
        negative_s=options.negative_s, seed=options.negatives_seed)
    counts, failures = embed_and_write(
        cut, options, handles, to_rows=lambda spec: SegmentRowsFn(spec, options.pooling, header),
        schema_of=lambda spec: segment_schema(spec.embedding_dim, header),
        file_prefix="segments")
    outcomes = {
        "planned": cut[PLANNED_TAG], "outcomes": cut[OUTCOMES_TAG],
        "counts": counts | "AllCounts" >> beam.Flatten(),
        "failures": failures | "AllFailures" >> beam.Flatten(),
    } | "AccountSegments" >> AccountSegments([spec.name for spec in specs])
    outcomes | "WriteSegmentOutcomes" >> WriteOutcomes(
        options.output, outcomes_dir="segments", errors_dir="segments_rejected",
        is_error=_is_not_embedded)


def run(argv: list[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> dict:
    """Parses ``argv``, runs the pipeline to completion, writes and returns the summary dict."""
    options = ExtractOptions(argv if argv is not None else sys.argv[1:])
    options.validate()
    Progress.interval_s = options.progress_interval_s
    annotations = None
    if options.annotations:
        annotations = read_annotations(options)
        LOG.info("%d annotation rows over %d files, audio root %s", len(annotations[2]),
                 len(group_by_file(annotations[2])), options.input_patterns()[0])
    else:
        matched = check_inputs(options.input_patterns())
    handles = options.model_handles()
    specs = options.model_specs()
    for spec in specs:
        version = model_version(handles[spec.name])
        LOG.info("model %s: %s%s", spec.name, version.label,
                 "  (STAND-IN: random weights, embeddings are not real)" if version.standin
                 else "")
    started = time.perf_counter()
    pipeline = test_pipeline or beam.Pipeline(options=options)
    if annotations is not None:
        build_segments(pipeline, options, handles, annotations)
    else:
        LOG.info("%d files matched by %s", matched, options.input_patterns())
        build(pipeline, options, handles)
    result = pipeline.run()
    template = options.view_as(GoogleCloudOptions).template_location
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
        path = write_summary(options.output, summary)
        print(format_segment_summary(summary))
        print(f"summary: {path}")
        return summary
    outcomes = read_jsonl(options.output.rstrip("/") + "/outcomes/outcomes-*.jsonl")
    summary = summarise(outcomes, [spec.name for spec in specs], wall_s)
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
