"""The run summary: counts read back from the outcome rows, plus wall time and speed."""

from __future__ import annotations

import json
from collections import Counter

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


def read_jsonl(pattern: str) -> list[dict]:
    """All JSON lines of the files matching ``pattern`` (local or gs://), in path order."""
    rows = []
    for meta in sorted(FileSystems.match([pattern])[0].metadata_list, key=lambda m: m.path):
        with FileSystems.open(meta.path) as handle:
            rows += [json.loads(line) for line in handle.read().decode().splitlines() if line]
    return rows


def summarise(outcomes: list[dict], models: list[str], wall_s: float, *,
              labelled: bool = False) -> dict:
    """Summary dict: files matched, per-model status counts (they add up to files matched),
    embeddings per model, seconds of audio, wall time (s) and audio seconds per wall second;
    with ``labelled`` (--label_table given), how many files have a label row and the first
    ones without."""
    gaps = [o for o in outcomes if o["status"] == GAP]
    outcomes = [o for o in outcomes if o["status"] != GAP]
    sources = {o["source"] for o in outcomes}
    durations = {o["source"]: o["duration_s"] for o in outcomes if o["duration_s"] is not None}
    streams = sorted({o["stream"] for o in outcomes + gaps if o.get("stream")})
    audio_s = float(sum(durations.values()))
    per_model = {}
    for model in models:
        rows = [o for o in outcomes if o["model"] == model]
        status = Counter(o["status"] for o in rows)
        per_model[model] = {
            "files": len(rows),
            **{s: status.get(s, 0) for s in STATUSES},
            "embeddings": sum(o["embeddings"] for o in rows if o["status"] in (
                EMBEDDED, NOT_IN_PLAYLIST)),
        }
        if streams:
            per_model[model].update({s: status.get(s, 0) for s in SEGMENT_STATUSES})
    stream_counts = {}
    if streams:
        stream_counts = {"streams": {
            "folders": len(streams), "gaps": len(gaps),
            "gap_s": round(sum(g["duration_s"] or 0.0 for g in gaps), 3),
            "gap_list": [{"source": g["source"], "start_utc": g["start_utc"],
                          "duration_s": g["duration_s"], "cause": g["error"]}
                         for g in gaps[:MAX_PRINTED]]}}
    failed_files = sorted({o["source"] for o in outcomes if o["status"] in FAILED_STATUSES})
    label_counts = {}
    if labelled:
        without = sorted({o["source"] for o in outcomes if o.get("labels") is None})
        label_counts = {"labels": {"sources_labelled": len(sources) - len(without),
                                   "sources_without_label": len(without),
                                   "without_label": without[:MAX_PRINTED]}}
    return {
        "files_matched": len(sources),
        "files_decoded": len(durations),
        "files_failed": len(failed_files),
        "audio_s": round(audio_s, 3),
        "wall_s": round(wall_s, 3),
        "audio_s_per_wall_s": round(audio_s / wall_s, 2) if wall_s > 0 else None,
        "models": per_model,
        "failed": [{"source": o["source"], "model": o["model"], "error_class": o["error_class"],
                    "error": o["error"]} for o in outcomes if o["status"] in FAILED_STATUSES],
        **label_counts,
        **stream_counts,
    }


#: Problem lines printed at the end of a run; the rest are only in the files.
MAX_PRINTED = 20


def _first_lines(lines: list[str], where: str) -> list[str]:
    """The first MAX_PRINTED lines, then a line saying how many more are in ``where``."""
    more = len(lines) - MAX_PRINTED
    return lines[:MAX_PRINTED] + ([f"  ... and {more} more in {where}"] if more > 0 else [])


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
    lines += _first_lines([f"  FAILED {f['source']} [{f['model']}]: {f['error_class']}: "
                           f"{f['error']}" for f in summary["failed"]], "errors/")
    return "\n".join(lines)


def write_summary(output_dir: str, summary: dict) -> str:
    """Writes ``<output>/summary.json``; returns its path."""
    path = output_dir.rstrip("/") + "/summary.json"
    with FileSystems.create(path) as handle:
        handle.write((json.dumps(summary, indent=2) + "\n").encode())
    return path


def summarise_segments(outcomes: list[dict], models: list[str], wall_s: float) -> dict:
    """Summary dict of a segments run: annotation rows by status (they add up to the rows read),
    rejects by reason, negatives, segments and frames embedded per model, seconds of audio in
    the files read, wall time."""
    calls = [o for o in outcomes if o["kind"] == "call"]
    negatives = [o for o in outcomes if o["kind"] == "negative"]
    durations = {o["source"]: o["file_duration_s"] for o in outcomes
                 if o["file_duration_s"] is not None}
    audio_s = float(sum(durations.values()))
    per_model = {}
    for model in models:
        done = [o for o in outcomes if o["status"] == EMBEDDED]
        per_model[model] = {
            "segments": len(done),
            "frames": sum((o["frames"] or {}).get(model, 0) for o in done),
        }
    return {
        "annotation_rows": len(calls),
        "rows_by_status": dict(sorted(Counter(o["status"] for o in calls).items())),
        "rejected_by_reason": dict(sorted(Counter(o["reason"] for o in calls
                                                  if o["status"] == "rejected").items())),
        "negatives_embedded": sum(1 for o in negatives if o["status"] == EMBEDDED),
        "negatives_failed": sum(1 for o in negatives if o["status"] != EMBEDDED),
        "files_read": len(durations),
        "audio_s": round(audio_s, 3),
        "wall_s": round(wall_s, 3),
        "audio_s_per_wall_s": round(audio_s / wall_s, 2) if wall_s > 0 else None,
        "models": per_model,
        "not_embedded": [{k: o[k] for k in ("segment_id", "wav_filename", "status", "reason",
                                            "detail")}
                         for o in outcomes if o["status"] in (FAILED, "rejected")],
    }


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
    lines += _first_lines([f"  {i['status'].upper()} {i['segment_id']} {i['wav_filename']}: "
                           f"{i['reason']}: {i['detail']}" for i in summary["not_embedded"]],
                          "segments/")
    return "\n".join(lines)
