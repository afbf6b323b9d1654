"""Projector files from existing embedding shards:

    python -m pipelines.projector --embeddings out/ --output out/projector [--model yamnet]

Per model, the version whose state (``_commit.json``, or an older version's ``_manifest.json``)
was written last: its manifest entries are read as a PCollection and its current rows go through
the same Beam stage as the extraction's final stage (``orca_beam/projector/stage.py``), in memory
bounded by the points kept. Without a manifest (segments mode), the newest run's
``<model>/<version>/segments-*.parquet`` shards. Writes <output>/<model>/{tensors.tsv,
metadata.tsv, sprite.png, projector_config.json, projector_config.pbtxt}; view with
``tensorboard --logdir <output>/<model>``. Beam flags (``--runner``, ...) pass through.
"""

from __future__ import annotations

import json
import logging
import sys

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from orca_beam.core import s3
from orca_beam.core.registry import MODELS
from orca_beam.extract.options import label_table, projector_kwargs, projector_parser
from orca_beam.projector.stage import ExportProjector
from orca_beam.store.reader import ReadEntries
from orca_beam.store.version import latest_version_folder

LOG = logging.getLogger("orca_beam.projector")


def newest_segment_shards(root: str, model: str) -> list[str]:
    """The newest segments run's shards of ``model`` (segments-<UTC time>-<random>-S-of-N)."""
    shards = [m.path for m in FileSystems.match(
        [f"{root}/{model}/*/segments-*.parquet"])[0].metadata_list]
    if not shards:
        return []

    def run_id(path: str) -> str:
        return "-".join(path.rsplit("/", 1)[1].split("-")[1:3])

    newest = max(run_id(path) for path in shards)
    return sorted(path for path in shards if run_id(path) == newest)


def run(argv: list[str] | None = None) -> list[dict]:
    """Exports every (or each chosen) model found under --embeddings; returns the summaries
    (``skipped`` when the files already match the rows and settings)."""
    options, beam_args = projector_parser().parse_known_args(argv)
    if options.projector_point == "none":
        raise ValueError("--projector_point none exports nothing")
    root = options.embeddings.rstrip("/")
    beam_options = PipelineOptions(beam_args or ["--runner=FnApiRunner"])
    s3.install()  # one shared (unsigned without credentials) S3 client per process
    FileSystems.set_options(beam_options)  # s3:// settings for the launcher's own reads
    pipeline = beam.Pipeline(options=beam_options)
    export_kwargs = projector_kwargs(options, label_table(options))  # the labels read once
    results, found = [], []
    for model in options.model or sorted(MODELS):
        folder = latest_version_folder(root, model)
        if folder is not None:
            items = pipeline | f"ReadEntries_{model}" >> ReadEntries(folder)
            from_entries = True
        else:
            shards = newest_segment_shards(root, model)
            if not shards:
                if options.model:
                    raise ValueError(f"no {model} embeddings under {root}/{model}/")
                continue
            folder = shards[0].rsplit("/", 1)[0]
            items = pipeline | f"ListShards_{model}" >> beam.Create(shards)
            from_entries = False
        LOG.info("%s: rows of %s", model, folder)
        found.append(model)
        summary = items | f"Projector_{model}" >> ExportProjector(
            f"{options.output.rstrip('/')}/{model}", model, export_kwargs,
            from_entries=from_entries)
        results.append(summary)
    if not found:
        raise ValueError(f"no embeddings found under {root}")
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


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    try:
        run()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
