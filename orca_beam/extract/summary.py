"""The run summary, computed in the pipeline: combiners over the outcome rows (never a gather of
them), then one step that writes ``<output>/summary.json`` and removes the outcome and error files
of earlier runs, so a template run on a schedule writes its own summary and stale shards never
mix with the new ones. The launcher only prints what the job wrote (and adds its own timings).

Memory: the combiners hold counts and the first ``MAX_PRINTED`` problems by name, whatever the
corpus size; calls mode also holds the set of annotated files (the annotation table the launcher
has already read).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from orca_beam.core.statuses import (
    EMBEDDED,
    FAILED,
    FAILED_STATUSES,
    GAP,
    NOT_IN_PLAYLIST,
    SEGMENT_STATUSES,
    STATUSES,
    TOO_SHORT,
)
from orca_beam.records import Outcome, SegmentOutcome
from orca_beam.store.manifest import PLAN_KINDS

LOG = logging.getLogger(__name__)
SUMMARY_NAME = "summary.json"
#: What the launcher measured in this process before the job ran (``model_load_s``: model ->
#: seconds to load and warm up), read by FinishRun when the summary is written, not when the
#: graph is built: the graph is built while the models load (see ``extract.overlap``).
_LAUNCHER_FACTS: dict = {}


def set_launcher_facts(**facts) -> None:
    """Replaces what the launcher measured for this run (for example ``model_load_s={model:
    seconds}``). Workers in this process (in-process runners) see it in the summary; workers
    elsewhere see the defaults (``model_load_s``: {})."""
    _LAUNCHER_FACTS.clear()
    _LAUNCHER_FACTS.update(facts)


def launcher_facts() -> dict:
    """What :func:`set_launcher_facts` recorded in this process, over the defaults
    (``model_load_s``: {}, no model loaded by the launcher)."""
    return {"model_load_s": {}, **_LAUNCHER_FACTS}


@dataclass(frozen=True)
class SourceTally:
    """What the summary needs of one source, once whatever its models: audio seconds decoded
    (None: not decoded), whether any model failed, and whether the label table has its row
    (None: no label table)."""

    source: str
    duration_s: float | None
    failed: bool
    labelled: bool | None = None


def _first(items: list, item, key) -> list:
    """``items`` with ``item``, kept sorted by ``key`` and at most MAX_PRINTED long."""
    out = sorted([*items, item], key=key)
    return out[:MAX_PRINTED]


class SummariseOutcomes(beam.CombineFn):
    """Outcome rows and SourceTallies -> the summary's counts: per model, the outcomes by status
    and the embeddings; sources decoded, failed and labelled; seconds of audio; HLS folders and
    gaps; and the first MAX_PRINTED failures, gaps and unlabelled sources by name."""

    def __init__(self, models: list[str], labelled: bool = False):
        self.models = list(models)
        self.labelled = labelled

    def create_accumulator(self):
        return {"models": {m: Counter() for m in self.models}, "decoded": 0, "audio_s": 0.0,
                "failed_sources": 0, "failed": [], "failed_count": 0, "streams": set(),
                "gaps": 0, "gap_s": 0.0, "gap_list": [], "labelled": 0, "unlabelled": 0,
                "without_label": []}

    def add_input(self, acc, item):
        if isinstance(item, SourceTally):
            if item.duration_s is not None:
                acc["decoded"] += 1
                acc["audio_s"] += item.duration_s
            acc["failed_sources"] += int(item.failed)
            if item.labelled is True:
                acc["labelled"] += 1
            elif item.labelled is False:
                acc["unlabelled"] += 1
                acc["without_label"] = _first(acc["without_label"], item.source, str)
            return acc
        outcome: Outcome = item
        if outcome.stream:
            acc["streams"].add(outcome.stream)
        if outcome.status == GAP:
            acc["gaps"] += 1
            acc["gap_s"] += outcome.duration_s or 0.0
            acc["gap_list"] = _first(acc["gap_list"], {
                "source": outcome.source, "start_utc": outcome.start_utc,
                "duration_s": outcome.duration_s, "cause": outcome.error},
                lambda g: (g["start_utc"] or "", g["source"]))
            return acc
        counts = acc["models"].setdefault(outcome.model, Counter())
        counts["files"] += 1
        counts[outcome.status] += 1
        if outcome.status in (EMBEDDED, NOT_IN_PLAYLIST):
            counts["embeddings"] += outcome.embeddings
        if outcome.status in FAILED_STATUSES:
            acc["failed_count"] += 1
            acc["failed"] = _first(acc["failed"], {
                "source": outcome.source, "model": outcome.model,
                "error_class": outcome.error_class, "error": outcome.error},
                lambda f: (f["source"], f["model"]))
        return acc

    def merge_accumulators(self, accumulators):
        accumulators = list(accumulators)
        out = self.create_accumulator()
        for acc in accumulators:
            for model, counts in acc["models"].items():
                out["models"].setdefault(model, Counter()).update(counts)
            for name in ("decoded", "audio_s", "failed_sources", "failed_count", "gaps", "gap_s",
                         "labelled", "unlabelled"):
                out[name] += acc[name]
            out["streams"] |= acc["streams"]
            for name, key in (("failed", lambda f: (f["source"], f["model"])),
                              ("gap_list", lambda g: (g["start_utc"] or "", g["source"])),
                              ("without_label", str)):
                out[name] = sorted(out[name] + acc[name], key=key)[:MAX_PRINTED]
        return out

    def extract_output(self, acc) -> dict:
        per_model = {}
        streams = bool(acc["streams"]) or acc["gaps"] > 0
        for model in self.models:
            counts = acc["models"].get(model, Counter())
            per_model[model] = {"files": counts["files"],
                                **{s: counts[s] for s in STATUSES},
                                "embeddings": counts["embeddings"]}
            if streams:
                per_model[model].update({s: counts[s] for s in SEGMENT_STATUSES})
        out = {"files_decoded": acc["decoded"], "files_failed": acc["failed_sources"],
               "audio_s": round(acc["audio_s"], 3), "models": per_model,
               "failed": acc["failed"], "failed_count": acc["failed_count"]}
        if self.labelled:
            out["labels"] = {"sources_labelled": acc["labelled"],
                             "sources_without_label": acc["unlabelled"],
                             "without_label": acc["without_label"]}
        if streams:
            out["streams"] = {"folders": len(acc["streams"]), "gaps": acc["gaps"],
                              "gap_s": round(acc["gap_s"], 3), "gap_list": acc["gap_list"]}
        return out


def version_summary(record: dict, output: str) -> dict:
    """The summary's entry of one model version, from the commit record its run wrote."""
    last = record["runs"][-1] if record.get("runs") else {}
    version = record["version"]
    folder = f"{output}/{version['model']}/{version['version_id']}"
    return {"version": version["version_id"], "folder": folder,
            "sources": record.get("entries", 0), "plan": last.get("plan", {}),
            "deleted_sources": last.get("deleted", [])}


def file_summary(counts: dict, records: list[dict], *, run_id: str, wall_s: float,
                 output: str) -> dict:
    """The summary of a files or HLS run: the combined ``counts``, each version's commit
    ``records``, the run id, the job's wall time (s) and the output folder."""
    versions = {r["version"]["model"]: version_summary(r, output) for r in records}
    versions = dict(sorted(versions.items()))
    first_plan = next(iter(versions.values()))["plan"] if versions else {}
    summary = {
        "files_matched": sum(first_plan.get(k, 0) for k in PLAN_KINDS if k != "deleted"),
        **counts, "wall_s": round(wall_s, 3),
        "audio_s_per_wall_s": round(counts["audio_s"] / wall_s, 2) if wall_s > 0 else None,
        "run_id": run_id, "versions": versions,
        "nothing_changed": all(
            sum(v["plan"].get(k, 0) for k in ("new", "changed", "retry", "deleted")) == 0
            for v in versions.values()),
    }
    return summary


class SummariseCalls(beam.CombineFn):
    """Calls-mode outcomes (SegmentOutcome) -> the summary's counts: annotation rows by status,
    rejects by reason, negatives, frames per model, the files read and their audio seconds,
    and the first MAX_PRINTED rows not embedded."""

    def __init__(self, models: list[str]):
        self.models = list(models)

    def create_accumulator(self):
        return {"calls": 0, "status": Counter(), "reasons": Counter(), "neg_ok": 0,
                "neg_failed": 0, "durations": {}, "frames": Counter(), "segments": 0,
                "not_embedded": [], "not_embedded_count": 0}

    def add_input(self, acc, outcome: SegmentOutcome):
        if outcome.kind == "call":
            acc["calls"] += 1
            acc["status"][outcome.status] += 1
            if outcome.status == "rejected":
                acc["reasons"][outcome.reason] += 1
        elif outcome.status == EMBEDDED:
            acc["neg_ok"] += 1
        else:
            acc["neg_failed"] += 1
        if outcome.file_duration_s is not None:
            acc["durations"][outcome.source] = outcome.file_duration_s
        if outcome.status == EMBEDDED:
            acc["segments"] += 1
            acc["frames"].update(outcome.frames or {})
        if outcome.status in (FAILED, "rejected"):
            acc["not_embedded_count"] += 1
            acc["not_embedded"] = _first(acc["not_embedded"], {
                k: getattr(outcome, k) for k in ("segment_id", "wav_filename", "status",
                                                  "reason", "detail")},
                lambda i: (i["wav_filename"], i["segment_id"]))
        return acc

    def merge_accumulators(self, accumulators):
        out = self.create_accumulator()
        for acc in accumulators:
            for name in ("calls", "neg_ok", "neg_failed", "segments", "not_embedded_count"):
                out[name] += acc[name]
            for name in ("status", "reasons", "frames"):
                out[name].update(acc[name])
            out["durations"].update(acc["durations"])
            out["not_embedded"] = sorted(out["not_embedded"] + acc["not_embedded"],
                                         key=lambda i: (i["wav_filename"], i["segment_id"]))[
                                             :MAX_PRINTED]
        return out

    def extract_output(self, acc) -> dict:
        return {
            "annotation_rows": acc["calls"],
            "rows_by_status": dict(sorted(acc["status"].items())),
            "rejected_by_reason": dict(sorted(acc["reasons"].items())),
            "negatives_embedded": acc["neg_ok"], "negatives_failed": acc["neg_failed"],
            "files_read": len(acc["durations"]),
            "audio_s": round(float(sum(acc["durations"].values())), 3),
            "models": {m: {"segments": acc["segments"], "frames": acc["frames"].get(m, 0)}
                       for m in self.models},
            "not_embedded": acc["not_embedded"],
            "not_embedded_count": acc["not_embedded_count"],
        }


def calls_summary(counts: dict, records: list[dict], *, run_id: str, wall_s: float,
                  output: str) -> dict:
    """The summary of a calls-mode run: the combined ``counts``, the versions' commit records,
    the run id and the job's wall time (s)."""
    return {**counts, "wall_s": round(wall_s, 3),
            "audio_s_per_wall_s": round(counts["audio_s"] / wall_s, 2) if wall_s > 0 else None,
            "run_id": run_id,
            "versions": dict(sorted((r["version"]["model"], r["version"]["version_id"])
                                    for r in records))}


def remove_other_runs(output: str, folders: list[str], keep: set[str]) -> list[str]:
    """Deletes every file under ``<output>/<folder>/`` (each of ``folders``) that is not in
    ``keep`` (the files this run wrote); returns the deleted paths."""
    stale = []
    for folder in folders:
        found = FileSystems.match([f"{output.rstrip('/')}/{folder}/**"])[0].metadata_list
        stale += [m.path for m in found if m.path not in keep]
    if stale:
        FileSystems.delete(stale)
        LOG.info("removed %d outcome file(s) of earlier runs", len(stale))
        for folder in sorted({path.rsplit("/", 1)[0] for path in stale if "://" not in path}):
            if os.path.isdir(folder) and not os.listdir(folder):
                os.rmdir(folder)  # a local run folder left empty (object stores have none)
    return stale


class FinishRun(beam.PTransform):
    """The job's last step: the combined counts (one element), each version's commit record and
    the outcome files this run wrote -> ``<output>/summary.json`` (built by ``assemble(counts,
    records, run_id=, wall_s=)``), then every other file under the ``folders`` of outcomes is
    deleted. Input: a dict with ``counts`` (one element), ``records`` and ``written`` (file
    names). The wall
    time is measured in the job, from its first step to this one. The summary adds
    :func:`launcher_facts` as they are when it is written (the model load times, measured
    while the graph was built). ``derive_errors``: the
    errors file was not written by a sink: write it here from the outcome files
    (``outcomes.write_errors_of``), inside the measured wall time."""

    def __init__(self, output: str, run_id: str, assemble, folders: list[str],
                 derive_errors: bool = False):
        super().__init__()
        self.derive_errors = derive_errors
        self.output = output.rstrip("/")
        self.run_id = run_id
        self.assemble = assemble
        self.folders = list(folders)

    def expand(self, inputs):
        output, run_id, assemble, folders = self.output, self.run_id, self.assemble, self.folders
        started = (inputs["counts"].pipeline | "RunStarts" >> beam.Create([None])
                   | "StartTime" >> beam.Map(lambda _: time.time()))

        derive_errors = self.derive_errors

        def finish(counts, records, written, started_s):
            written = list(written)
            if derive_errors:
                from orca_beam.extract.outcomes import write_errors_of

                written.append(write_errors_of(written, output, run_id))
            summary = {**assemble(counts, list(records), run_id=run_id,
                                  wall_s=time.time() - started_s, output=output), **launcher_facts()}
            write_summary(output, summary)
            remove_other_runs(output, folders, set(written))
            return summary

        # the start time is a side input, so its stage runs first (as the main input it would
        # be fused into this last stage and read the clock at the end)
        return inputs["counts"] | "WriteSummary" >> beam.Map(
            finish, beam.pvalue.AsList(inputs["records"]), beam.pvalue.AsList(inputs["written"]),
            beam.pvalue.AsSingleton(started))


def read_summary(output: str) -> dict:
    """The ``summary.json`` the job wrote in ``output``."""
    with FileSystems.open(f"{output.rstrip('/')}/{SUMMARY_NAME}") as handle:
        return json.loads(handle.read().decode())


#: Problem lines printed at the end of a run; the rest are only in the files.
MAX_PRINTED = 20


def format_summary(summary: dict) -> str:
    """Human-readable lines for the end of a run."""
    lines = [f"files matched {summary['files_matched']}, decoded {summary['files_decoded']}, "
             f"failed {summary['files_failed']}; {summary['audio_s']:.1f} s of audio in "
             f"{summary['wall_s']:.1f} s wall ({summary['audio_s_per_wall_s']} audio s/s)"]
    for model, counts in summary["models"].items():
        stream = "".join(f", {name.replace('_', ' ')} {counts[name]}"
                         for name in SEGMENT_STATUSES if name in counts)
        lines.append(f"  {model}: embedded {counts[EMBEDDED]}, too short {counts[TOO_SHORT]}, "
                     f"failed {counts[FAILED]}{stream}; {counts['embeddings']} embeddings")
    if "streams" in summary:
        streams = summary["streams"]
        lines.append(f"  HLS: {streams['folders']} folders, {streams['gaps']} gaps "
                     f"({streams['gap_s']:.1f} s; listed in outcomes/ as status gap)")
    if "labels" in summary:
        labels = summary["labels"]
        lines.append(f"  labels: {labels['sources_labelled']} files labelled, "
                     f"{labels['sources_without_label']} without a row in the label file"
                     + (f" (e.g. {labels['without_label'][0]})" if labels["without_label"]
                        else ""))
    if summary.get("nothing_changed"):
        lines.append("  nothing changed since the last run: no file decoded, no model call, "
                     "projector files kept")
    for model, version in summary.get("versions", {}).items():
        plan = ", ".join(f"{k} {v}" for k, v in version.get("plan", {}).items())
        lines.append(f"  {model} version {version['version']}: {version['sources']} sources "
                     f"({plan})")
        for source in version.get("deleted_sources", [])[:20]:
            lines.append(f"    deleted since the last run: {source}")
    lines += [f"  FAILED {f['source']} [{f['model']}]: {f['error_class']}: {f['error']}"
              for f in summary["failed"]]
    more = summary.get("failed_count", 0) - len(summary["failed"])
    if more > 0:
        lines.append(f"  ... and {more} more in errors/{summary.get('run_id', '')}/")
    return "\n".join(lines)


def write_summary(output_dir: str, summary: dict) -> str:
    """Writes ``<output>/summary.json``; returns its path."""
    path = output_dir.rstrip("/") + "/" + SUMMARY_NAME
    with FileSystems.create(path) as handle:
        handle.write((json.dumps(summary, indent=2) + "\n").encode())
    return path


def format_segment_summary(summary: dict) -> str:
    """Human-readable lines for the end of a segments run."""
    status = ", ".join(f"{k} {v}" for k, v in summary["rows_by_status"].items()) or "none"
    lines = [f"annotation rows {summary['annotation_rows']}: {status}; negatives embedded "
             f"{summary['negatives_embedded']}; {summary['files_read']} files, "
             f"{summary['audio_s']:.1f} s of audio in {summary['wall_s']:.1f} s wall"]
    if summary["rejected_by_reason"]:
        lines.append("  rejected: " + ", ".join(
            f"{k} {v}" for k, v in summary["rejected_by_reason"].items()))
    for model, counts in summary["models"].items():
        lines.append(f"  {model}: {counts['segments']} segments, {counts['frames']} frames")
    lines += [f"  {i['status'].upper()} {i['segment_id']} {i['wav_filename']}: {i['reason']}: "
              f"{i['detail']}" for i in summary["not_embedded"]]
    more = summary.get("not_embedded_count", 0) - len(summary["not_embedded"])
    if more > 0:
        lines.append(f"  ... and {more} more in segments/{summary.get('run_id', '')}/")
    return "\n".join(lines)
