"""What a corpus holds, from its stored rows and manifest:

    python -m pipelines.report --embeddings out/ --output report/ \
        [--model birdnet ...] [--scores SCORES] [--seastats DIR] [--node_slugs FILE]

Writes, in ``--output``: ``coverage.csv`` (one row per node and UTC day: seconds embedded per
model, gaps, unreadable / empty / not-in-playlist segments, seconds per time source),
``coverage.png`` (node by hour of day by day), the overview of a seeded sample per model
(``overview.png``: UMAP, or PCA without umap-learn, coloured by ``--label_column``, UTC hour,
node and HDBSCAN cluster; ``clusters.json``: clusters, and AMI/ARI against the labels),
``index.html`` (everything linked; click a point to hear it) and ``report_summary.json``. ``--scores``: a
classifier's apply output, whose detections are drawn per hour and give the SeaStats call rates
and events. ``--seastats DIR``: one SeaStats datapoints JSON per node. A Beam job over the
manifest entries (combiners; no gather of the corpus); Beam flags pass through. See
docs/reports.md.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import time

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from orca_beam.core.errors import UsageError
from orca_beam.core.registry import MODELS
from orca_beam.labels import read_labels
from orca_beam.reports.job import SUMMARY_NAME, Report, ReportSettings
from orca_beam.store.version import latest_version_folder, version_folder
from pipelines.cli import beam_options, run_command

LOG = logging.getLogger("orca_beam.reports")


def parser() -> argparse.ArgumentParser:
    """The report's flags (Beam's own pass through)."""
    p = argparse.ArgumentParser(prog="python -m pipelines.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--embeddings", required=True,
                   help="An extraction's --output folder (local, gs:// or s3://).")
    p.add_argument("--model", action="append", default=[], choices=sorted(MODELS),
                   help="A model to report (repeatable; default: every model with a version). "
                        "The first is the reference for segment counts, gaps and the picture.")
    p.add_argument("--version", action="append", default=[], metavar="MODEL=ID",
                   help="A version id for a model (default: its latest).")
    p.add_argument("--output", required=True, help="The report folder (local, gs://, s3://).")
    p.add_argument("--scores", default=None,
                   help="A classifier's apply --output (detections.parquet, events.csv).")
    p.add_argument("--seastats", default=None, metavar="DIR",
                   help="Write SeaStats datapoints, <DIR>/<station>.json per node.")
    p.add_argument("--node_slugs", default=None, metavar="FILE",
                   help="CSV with columns node,slug: orcasite feed slugs (and SeaStats station "
                        "keys) for node names (default: rpi_bush_point -> bush-point).")
    p.add_argument("--species", default="Orca", help="SeaStats `species` of the call datapoints.")
    p.add_argument("--label_table", default=None, metavar="FILE",
                   help="A label table (TSV/CSV keyed by file name, as for pipelines.extract).")
    p.add_argument("--label_column", default=None,
                   help="Its column that colours the overview and scores the clusters (AMI/ARI).")
    p.add_argument("--max_points", type=int, default=2000,
                   help="Rows in the overview's seeded sample, per model (the projector's hash "
                        "sample).")
    p.add_argument("--clips", type=int, default=300,
                   help="Points per model with a clip to play on the page.")
    p.add_argument("--seed", type=int, default=0, help="The sample's and the map's seed.")
    return p


def read_node_slugs(path: str | None) -> dict[str, str]:
    """node -> slug from a CSV with columns ``node`` and ``slug`` (None: none)."""
    if not path:
        return {}
    with FileSystems.open(path) as handle:
        rows = list(csv.DictReader(io.TextIOWrapper(handle, encoding="utf-8")))
    if rows and not {"node", "slug"} <= set(rows[0]):
        raise UsageError(f"{path}: needs the columns node,slug (it has {', '.join(rows[0])})")
    return {row["node"]: row["slug"] for row in rows}


def model_folders(embeddings: str, models: list[str], versions: list[str]) -> dict[str, str]:
    """model -> version folder, in the order asked (default: every model with a version)."""
    chosen = dict(item.split("=", 1) for item in versions)
    if not models:
        models = [m for m in sorted(MODELS) if latest_version_folder(embeddings, m)]
    if not models:
        raise UsageError(f"no embeddings under {embeddings}: run pipelines.extract first")
    return {m: version_folder(embeddings, m, chosen.get(m)) for m in models}


def run(argv: list[str] | None = None) -> dict:
    """Runs the report; returns its summary (also ``<output>/report_summary.json``)."""
    started = time.monotonic()
    args, beam_args = parser().parse_known_args(argv)
    options = beam_options(beam_args)
    labels = None
    if args.label_table:
        labels = read_labels(args.label_table)
        if args.label_column not in labels.columns:
            raise UsageError(f"--label_column {args.label_column!r} is not a column of "
                             f"{args.label_table} (it has {', '.join(labels.columns)})")
    elif args.label_column:
        raise UsageError("--label_column needs --label_table")
    settings = ReportSettings(
        model_folders(args.embeddings, args.model, args.version), args.output.rstrip("/"),
        scores=args.scores, seastats=args.seastats, node_slugs=read_node_slugs(args.node_slugs),
        species=args.species, labels=labels, label_column=args.label_column,
        max_points=args.max_points, clips=args.clips, seed=args.seed)
    if args.scores and not FileSystems.exists(f"{args.scores.rstrip('/')}/detections.parquet"):
        raise UsageError(f"--scores {args.scores}: no detections.parquet there "
                         "(run pipelines.classify apply first)")
    pipeline = beam.Pipeline(options=options)
    _ = pipeline | "Report" >> Report(settings)
    pipeline.run().wait_until_finish()
    with FileSystems.open(f"{settings.output}/{SUMMARY_NAME}") as handle:
        summary = json.loads(handle.read().decode())
    summary["wall_s"] = round(time.monotonic() - started, 2)
    print(f"report: {summary['nodes']} nodes, {summary['days']} node-days, models "
          f"{', '.join(summary['models'])}; {summary['coverage_csv']}, {summary['coverage_png']}"
          + (f"; SeaStats: {len(summary['seastats'])} stations" if "seastats" in summary else "")
          + f"; {summary['index_html']}"
          + f" ({summary['wall_s']:.1f} s)")
    return summary


def main() -> None:
    """Console entry point."""
    run_command(run)


if __name__ == "__main__":
    main()
