"""The main job: audio files -> per-model embeddings (Parquet) + one outcome per file and model.

    python -m pipelines.extract --runner=DirectRunner --input 'recordings/*.wav' --output out/ \
        --model yamnet [--model vggish --model humpback] [--model_handle yamnet=/models/yamnet]

``--help`` lists every option with its unit.
"""

from __future__ import annotations

import logging
import sys
import time

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from orca_beam.models.loading import model_version
from orca_beam.options import ExtractOptions
from orca_beam.projector.export import projector_dir
from orca_beam.summary import format_summary, read_jsonl, summarise, write_summary
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


def build(pipeline: beam.Pipeline, options: ExtractOptions, handles: dict[str, str]) -> None:
    """Adds the extraction stages to ``pipeline``."""
    specs = options.model_specs()
    files = pipeline | "MatchAudioFiles" >> MatchAudioFiles(options.input_patterns())
    decoded = files | "DecodeAndFrame" >> DecodeAndFrame(
        specs, chunk_s=options.chunk_s, channel=options.channel)
    counts, failures = [], [decoded[FAILURES_TAG]]
    for spec in specs:
        embedded = decoded[spec.name] | f"Embed_{spec.name}" >> EmbedWithModel(
            spec, handles[spec.name], pack_s=options.pack_s, batch_windows=options.batch_windows)
        shards = embedded["tables"] | f"Write_{spec.name}" >> WriteEmbeddings(options.output, spec)
        if options.projector_point != "none":
            shards | f"Projector_{spec.name}" >> ExportProjector(
                projector_dir(options.output, spec.name), spec.name, options.projector_kwargs())
        counts.append(embedded["counts"])
        failures.append(embedded["failures"])
    outcomes = {
        "files": decoded[FILES_TAG],
        "failures": failures | "AllFailures" >> beam.Flatten(),
        "counts": counts | "AllCounts" >> beam.Flatten(),
    } | "AccountOutcomes" >> AccountOutcomes([spec.name for spec in specs])
    outcomes | "WriteOutcomes" >> WriteOutcomes(options.output)


def run(argv: list[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> dict:
    """Parses ``argv``, runs the pipeline to completion, writes and returns the summary dict."""
    options = ExtractOptions(argv if argv is not None else sys.argv[1:])
    options.validate()
    Progress.interval_s = options.progress_interval_s
    matched = check_inputs(options.input_patterns())
    handles = options.model_handles()
    specs = options.model_specs()
    for spec in specs:
        version = model_version(handles[spec.name])
        LOG.info("model %s: %s%s", spec.name, version.label,
                 "  (STAND-IN: random weights, embeddings are not real)" if version.standin
                 else "")
    LOG.info("%d files matched by %s", matched, options.input_patterns())
    started = time.perf_counter()
    pipeline = test_pipeline or beam.Pipeline(options=options)
    build(pipeline, options, handles)
    result = pipeline.run()
    result.wait_until_finish()
    wall_s = time.perf_counter() - started
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
