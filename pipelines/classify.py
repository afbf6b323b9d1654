"""A linear classifier on the stored embeddings: train on a few labels, apply it to every row,
review its hits, and train again:

    python -m pipelines.classify train --embeddings out/ --model birdnet \
        --label_table labels.csv --label_column label --output clf/

    python -m pipelines.classify apply --classifier clf/classifier.json --embeddings out/ \
        --model birdnet --output scores/

``train`` writes ``clf/classifier.json`` (weights, classes, thresholds, the embedding version it
was trained on) and ``clf/metrics.json`` (cross-validated average precision, ROC-AUC and F1 per
class). ``apply`` (a Beam job; Beam's flags pass through) scores every current row into
``scores/`` (a derived table: a re-run scores only new row shards) and writes
``detections.parquet``, ``detections.csv`` and ``events.csv`` there.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from orca_beam.classify.apply import (
    DEFAULT_EVENT_GAP_S,
    ApplySettings,
    ScoreVersion,
    csv_line,
)
from orca_beam.classify.examples import WEAK_WEIGHT, LabelSettings
from orca_beam.classify.linear import NORMALIZE, LinearClassifier
from orca_beam.classify.review import SELECTIONS, SelectForReview, Selection
from orca_beam.classify.train import CLASSIFIER_NAME, METRICS_NAME, FitSettings, train
from orca_beam.core.errors import UsageError
from orca_beam.core.registry import MODELS
from orca_beam.review.page import DEFAULT_CONTEXT_S, write_review
from orca_beam.store.derived import read_derived_commit
from orca_beam.store.version import version_folder
from pipelines.cli import beam_options, counter_totals, run_command

LOG = logging.getLogger("orca_beam.classify")
SELECTION_COLUMNS = ["rank", "query", "score", "source", "stream", "start_s", "end_s",
                     "start_utc"]
COMMANDS = ("train", "apply", "review")


def _version_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--embeddings", required=True,
                   help="An extraction's --output folder (local, gs:// or s3://).")
    p.add_argument("--model", required=True, choices=sorted(MODELS), help="The rows' model.")
    p.add_argument("--version", default=None,
                   help="A version id under <embeddings>/<model>/ (default: the latest).")


def train_parser() -> argparse.ArgumentParser:
    """The ``train`` flags."""
    p = argparse.ArgumentParser(prog="python -m pipelines.classify train")
    _version_flags(p)
    p.add_argument("--label_table", required=True, action="append",
                   help="Labels keyed by file (as the extraction's --label_table) or by window "
                        "(source, start_s, end_s[, verdict]: the review page's export). "
                        "Repeatable: the first labels plus each review's export.")
    p.add_argument("--label_column", default="label",
                   help="The column holding the class (default: label).")
    p.add_argument("--negative_label", default=None,
                   help="A label value that marks a window negative for every class.")
    p.add_argument("--weak_negatives", type=int, default=1000,
                   help="Random unlabelled windows taken as negatives of small weight "
                        "(default 1000; 0: none).")
    p.add_argument("--weak_weight", type=float, default=WEAK_WEIGHT,
                   help=f"Their weight (default {WEAK_WEIGHT:g}, as perch-hoplite).")
    p.add_argument("--normalize", choices=NORMALIZE, default="standard",
                   help="Input normalisation before the linear layer (default: standard, each "
                        "dimension to zero mean and unit variance over the training windows).")
    p.add_argument("--l2", type=float, default=FitSettings.l2,
                   help=f"L2 penalty on the weights (default {FitSettings.l2:g}).")
    p.add_argument("--folds", type=int, default=FitSettings.folds,
                   help=f"Cross-validation folds (default {FitSettings.folds}).")
    p.add_argument("--seed", type=int, default=0, help="Seed of the folds and the weak sample.")
    p.add_argument("--baseline", default=None, metavar="CLASSIFIER.json",
                   help="An earlier round's classifier: its labels are cross-validated on this "
                        "round's folds and held-out windows too (metrics.json 'baseline').")
    p.add_argument("--output", required=True,
                   help="Folder for classifier.json and metrics.json (local, gs://, s3://).")
    return p


def run_train(argv: list[str]) -> dict:
    """``train``: returns the metrics (also in <output>/metrics.json)."""
    options, beam_args = train_parser().parse_known_args(argv)
    if options.folds < 2:
        raise UsageError("--folds must be >= 2")
    if options.weak_negatives < 0 or options.weak_weight < 0 or options.l2 < 0:
        raise UsageError("--weak_negatives, --weak_weight and --l2 must be >= 0")
    beam_options(beam_args)
    folder = version_folder(options.embeddings, options.model, options.version)
    labels = LabelSettings(tuple(options.label_table), options.label_column, options.negative_label,
                           options.weak_negatives, options.weak_weight, options.seed)
    settings = FitSettings(options.normalize, options.l2, options.folds, options.seed)
    baseline = None
    if options.baseline:
        if not FileSystems.exists(options.baseline):
            raise UsageError(f"--baseline {options.baseline} does not exist")
        meta = LinearClassifier.load(options.baseline).meta
        settings_ = meta.get("settings", {})
        baseline = LabelSettings(tuple(meta["labels"]["tables"]), meta["labels"]["column"],
                                 settings_.get("negative_label"),
                                 settings_.get("weak_negatives", options.weak_negatives),
                                 settings_.get("weak_weight", options.weak_weight),
                                 settings_.get("seed", options.seed))
    metrics = train(folder, labels, settings, options.output, baseline)
    out = options.output.rstrip("/")
    counts = metrics["labels"]
    print(f"train: {counts['windows']} labelled windows ({len(metrics['classes'])} classes), "
          f"{counts['weak_negatives']} weak negatives, {counts['unmatched_labels']} labels "
          f"matching no row; cross-validated macro average precision "
          f"{_fmt(metrics['macro']['average_precision'])}, ROC-AUC "
          f"{_fmt(metrics['macro']['roc_auc'])}"
          + (f" (baseline's labels on the same folds: "
             f"{_fmt(metrics['baseline']['macro']['average_precision'])})"
             if "baseline" in metrics else "")
          + f"; {metrics['wall_s']['total']:.1f} s; "
          f"{out}/{CLASSIFIER_NAME}, {out}/{METRICS_NAME}")
    return metrics


def apply_parser() -> argparse.ArgumentParser:
    """The ``apply`` flags (Beam's own pass through)."""
    p = argparse.ArgumentParser(prog="python -m pipelines.classify apply")
    p.add_argument("--classifier", required=True, help="A classifier.json (train's output).")
    _version_flags(p)
    p.add_argument("--output", required=True,
                   help="The scores folder (local, gs://, s3://): the scores of every row, "
                        "detections.parquet, detections.csv, events.csv. Re-runs score only "
                        "row shards it has no scores for.")
    p.add_argument("--event_gap_s", type=float, default=DEFAULT_EVENT_GAP_S,
                   help="Detections of one class in one stream at most this far apart (seconds "
                        f"from one's end to the next's start) are one event (default "
                        f"{DEFAULT_EVENT_GAP_S:g}).")
    return p


def run_apply(argv: list[str]) -> dict:
    """``apply``: a Beam job; returns its summary (also <output>/apply_summary.json)."""
    started = time.time()
    options, beam_args = apply_parser().parse_known_args(argv)
    if options.event_gap_s < 0:
        raise UsageError("--event_gap_s must be >= 0")
    options_ = beam_options(beam_args)
    folder = version_folder(options.embeddings, options.model, options.version)
    if not FileSystems.exists(options.classifier):
        raise UsageError(f"--classifier {options.classifier} does not exist")
    settings = ApplySettings.of(options.classifier, folder, options.output, options.event_gap_s)
    return score_version(settings, options_, started)


def score_version(settings: ApplySettings, options, started: float | None = None) -> dict:
    """Runs the scoring job (:class:`ScoreVersion`) with these pipeline options; writes and
    returns its summary (``<scores>/apply_summary.json``). Used by ``apply`` and by
    ``pipelines.extract --classifier``."""
    started = time.time() if started is None else started
    pipeline = beam.Pipeline(options=options)
    score = ScoreVersion(settings)
    _ = pipeline | "ScoreVersion" >> score
    result = pipeline.run()
    result.wait_until_finish()
    counts = counter_totals(result, lambda n: n.startswith(("score_", "detections", "events")))
    summary = {
        "version": settings.version, "classifier": settings.classifier_path,
        "classifier_sha256": settings.classifier_sha256, "classes": list(settings.classes),
        "thresholds": dict(zip(settings.classes, settings.thresholds, strict=True)),
        "event_gap_s": settings.event_gap_s,
        "shards_to_score": len(score.to_score), "shards_kept": len(score.kept),
        "rows_scored": counts.get("score_rows_scored", 0),
        "rows_kept": counts.get("score_rows_kept", 0),
        "detections": counts.get("detections", 0), "events": counts.get("events", 0),
        "detections_per_class": {c: counts.get(f"detections_{c}", 0) for c in settings.classes},
        "wall_s": round(time.time() - started, 3),
    }
    out = settings.output
    with FileSystems.create(f"{out}/apply_summary.json") as handle:
        handle.write(json.dumps(summary, indent=2).encode())
    print(f"apply: {summary['rows_scored']} rows scored in {len(score.to_score)} new shards, "
          f"{summary['rows_kept']} rows' scores kept from {len(score.kept)} shards; "
          f"{summary['detections']} detections, {summary['events']} events in "
          f"{summary['wall_s']:.1f} s; {out}/detections.csv, {out}/events.csv")
    return summary


def review_parser() -> argparse.ArgumentParser:
    """The ``review`` flags (Beam's own pass through)."""
    p = argparse.ArgumentParser(prog="python -m pipelines.classify review")
    p.add_argument("--scores", required=True, help="apply's --output folder.")
    p.add_argument("--class", dest="class_name", required=True, help="The class to review.")
    p.add_argument("--output", required=True, help="Folder for the review page.")
    p.add_argument("--select", choices=SELECTIONS, default="top",
                   help="top: the highest scores (default); margin: those nearest the "
                        "threshold; bins: --n at random from each score quantile bin "
                        "(edges at the 0.5, 0.75, 0.875 quantiles).")
    p.add_argument("--n", type=int, default=25, help="Windows to show (per bin with bins; "
                                                      "default 25).")
    p.add_argument("--exclude", action="append", default=[], metavar="TABLE",
                   help="Leave out the windows this label table labels (the classifier's own "
                        "label tables are always left out). Repeatable.")
    p.add_argument("--context_s", type=float, default=DEFAULT_CONTEXT_S,
                   help=f"Seconds of audio each side (default {DEFAULT_CONTEXT_S:g}).")
    p.add_argument("--seed", type=int, default=0, help="Seed of the bins' draws.")
    return p


def _write_review_page(chosen: tuple[list, dict], out: str, context_s: float, title: str
                       ) -> None:
    hits, info = chosen
    page = write_review(hits, f"{out}/review", context_s=context_s, title=title)
    lines = [csv_line(h, SELECTION_COLUMNS) for h in hits]
    with FileSystems.create(f"{out}/selection.csv") as handle:
        handle.write(("\n".join([",".join(SELECTION_COLUMNS), *lines]) + "\n").encode())
    with FileSystems.create(f"{out}/review_summary.json") as handle:
        handle.write(json.dumps({**info, "review": page, "hits": len(hits)}, indent=2).encode())


def run_review(argv: list[str]) -> dict:
    """``review``: a Beam job choosing the windows, then the page; returns the summary (also
    <output>/review_summary.json)."""
    options, beam_args = review_parser().parse_known_args(argv)
    if options.n < 1:
        raise UsageError("--n must be >= 1")
    options_ = beam_options(beam_args)
    commit = read_derived_commit(options.scores)
    if commit is None:
        raise UsageError(f"--scores {options.scores}: no scores there (run apply first)")
    classes = commit["settings"]["classes"]
    if options.class_name not in classes:
        raise UsageError(f"--class {options.class_name}: not one of {', '.join(classes)}")
    tables = list(options.exclude)
    path = commit["settings"]["classifier"]
    if FileSystems.exists(path):
        labels = LinearClassifier.load(path).meta.get("labels", {})
        tables += [t for t in labels.get("tables", []) if FileSystems.exists(t)]
        column = labels.get("column", "label")
    else:
        LOG.warning("review: %s is gone: its labelled windows cannot be left out", path)
        column = "label"
    selection = Selection(options.class_name, classes.index(options.class_name),
                          commit["settings"]["thresholds"][options.class_name], options.select,
                          options.n, tuple(tables), column, options.seed)
    out = options.output.rstrip("/")
    title = f"{options.class_name}: {options.select} {options.n}"
    pipeline = beam.Pipeline(options=options_)
    _ = (pipeline
         | "Select" >> SelectForReview(options.scores, selection)
         | "WritePage" >> beam.Map(_write_review_page, out, options.context_s, title))
    pipeline.run().wait_until_finish()
    with FileSystems.open(f"{out}/review_summary.json") as handle:
        summary = json.loads(handle.read().decode())
    print(f"review: {summary['hits']} windows of {options.class_name} ({options.select}), "
          f"{summary['review']['missing']} without audio, leaving out the windows of "
          f"{len(tables)} label tables; {out}/review/index.html")
    return summary


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def run(argv: list[str] | None = None) -> dict:
    """Runs one subcommand (``train``); returns its result."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        raise UsageError(f"give a command: {' | '.join(COMMANDS)} (python -m pipelines.classify "
                         "COMMAND --help)")
    return {"train": run_train, "apply": run_apply, "review": run_review}[argv[0]](argv[1:])


def main() -> None:
    """The command line: a UsageError is one line on stderr and exit status 2."""
    run_command(run)


if __name__ == "__main__":
    main()
