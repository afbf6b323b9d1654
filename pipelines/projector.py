"""Projector files from existing embedding shards:

    python -m pipelines.projector --embeddings out/ --output out/projector [--model yamnet]

Per model, the version whose state (``_commit.json``, or an older version's ``_manifest.json``)
was written last: its manifest entries are read as a PCollection and its current rows go through
the same Beam stage as the extraction's final stage (``orca_beam/projector/stage.py``), in memory
bounded by the points kept (calls-mode versions have the same commit). Writes <output>/<model>/{tensors.tsv,
metadata.tsv, sprite.png, projector_config.json, projector_config.pbtxt}; view with
``tensorboard --logdir <output>/<model>``. Beam flags (``--runner``, ...) pass through.
"""

from __future__ import annotations

import json
import logging

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from orca_beam.core import s3
from orca_beam.core.errors import UsageError
from orca_beam.core.registry import MODELS
from orca_beam.extract.options import label_table, projector_kwargs, projector_parser
from orca_beam.projector.stage import ExportProjector
from orca_beam.store.reader import ReadEntries
from orca_beam.store.version import latest_version_folder
from pipelines.cli import run_command

LOG = logging.getLogger("orca_beam.projector")


def run(argv: list[str] | None = None) -> list[dict]:
    """Exports every (or each chosen) model found under --embeddings; returns the summaries
    (``skipped`` when the files already match the rows and settings)."""
    options, beam_args = projector_parser().parse_known_args(argv)
    if options.projector_point == "none":
        raise UsageError("--projector_point none exports nothing")
    root = options.embeddings.rstrip("/")
    beam_options = PipelineOptions(beam_args or ["--runner=FnApiRunner"])
    s3.install()  # one shared (unsigned without credentials) S3 client per process
    FileSystems.set_options(beam_options)  # s3:// settings for the launcher's own reads
    pipeline = beam.Pipeline(options=beam_options)
    export_kwargs = projector_kwargs(options, label_table(options))  # the labels read once
    results, found = [], []
    for model in options.model or sorted(MODELS):
        folder = latest_version_folder(root, model)
        if folder is None:
            if options.model:
                raise UsageError(f"no {model} embeddings under {root}/{model}/")
            continue
        items = pipeline | f"ReadEntries_{model}" >> ReadEntries(folder)
        LOG.info("%s: rows of %s", model, folder)
        found.append(model)
        summary = items | f"Projector_{model}" >> ExportProjector(
            f"{options.output.rstrip('/')}/{model}", model, export_kwargs)
        results.append(summary)
    if not found:
        raise UsageError(f"no embeddings found under {root}")
    summaries: list[dict] = []
    (results | "AllSummaries" >> beam.Flatten()
     | "Print" >> beam.Map(lambda s: print(json.dumps(s), flush=True)))
    pipeline.run().wait_until_finish()
    for model in found:
        path = f"{options.output.rstrip('/')}/{model}/projector_summary.json"
        if FileSystems.exists(path):
            with FileSystems.open(path) as handle:
                summaries.append(json.loads(handle.read().decode()))
    return summaries


def main() -> None:
    """The command line: a UsageError is one line on stderr and exit status 2."""
    run_command(run)


if __name__ == "__main__":
    main()
