"""coverage.png: one panel per node, UTC day across, hour of day down; each hour's colour mixes
the fractions of it that held audio (blue), gaps (orange) and failed segments (red), white for
the rest; with detections, a black dot per hour that has any (its size grows with the count), so
"no audio" and "no detections" look different."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import date, timedelta

import numpy as np

from orca_beam.reports.coverage import HOUR_S, NO_DAY, cell_fields

AUDIO_RGB = np.array([0.12, 0.38, 0.75])
GAP_RGB = np.array([0.98, 0.6, 0.1])
FAILED_RGB = np.array([0.85, 0.1, 0.1])


def _days(cells) -> list[str]:
    """Every UTC day from the first to the last one with a cell (so an empty day shows)."""
    known = sorted({day for (_n, day, _h) in cells if day != NO_DAY})
    if not known:
        return []
    first, last = date.fromisoformat(known[0]), date.fromisoformat(known[-1])
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def hour_grid(cells: Mapping[tuple[str, str, int], Sequence[float]], node: str,
              days: Sequence[str], models: Sequence[str]) -> np.ndarray:
    """A node's picture as an RGB array [24 hours, days, 3] in 0..1: each hour mixes white with
    blue, orange and red by the fractions of it that held audio, gaps and failed segments (a
    failed segment counted at the hour's mean segment length, 10 s where none was read)."""
    fields = cell_fields(models)
    audio_at, gap_at = fields.index(f"embedded_s_{models[0]}"), fields.index("gap_s")
    read_at = [fields.index(name) for name in ("embedded", "not_in_playlist")]
    failed_at = fields.index(f"failed_{models[0]}")
    grid = np.ones((24, len(days), 3))
    column = {day: i for i, day in enumerate(days)}
    for (n, day, hour), values in cells.items():
        if n != node or day not in column or hour < 0:
            continue
        read = sum(values[i] for i in read_at)
        segment_s = values[audio_at] / read if read else 10.0
        parts = np.array([values[audio_at], values[gap_at], values[failed_at] * segment_s])
        fractions = parts / max(HOUR_S, parts.sum())
        colour = (1 - fractions.sum()) * np.ones(3)
        for fraction, rgb in zip(fractions, (AUDIO_RGB, GAP_RGB, FAILED_RGB), strict=True):
            colour = colour + fraction * rgb
        grid[hour, column[day]] = colour
    return grid


def coverage_png(cells: Mapping[tuple[str, str, int], Sequence[float]], models: Sequence[str],
                 detections: Mapping[tuple[str, str, int], int] | None = None) -> bytes:
    """The PNG bytes of coverage.png from the summed hour cells ((node, day, hour) -> sums in
    cell_fields order; the first model's seconds are drawn) and, optionally, detections per
    (node, day, hour)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    nodes = sorted({n for (n, _d, _h) in cells})
    days = _days(cells)
    fig, axes = plt.subplots(len(nodes) or 1, 1, squeeze=False,
                             figsize=(max(6.0, 0.35 * len(days) + 3), 2.6 * max(len(nodes), 1)))
    for ax, node in zip(axes[:, 0], nodes or [""], strict=True):
        if not days:
            ax.text(0.5, 0.5, "no source has a UTC time", ha="center", va="center")
            ax.set_axis_off()
            continue
        ax.imshow(hour_grid(cells, node, days, models), aspect="auto", interpolation="nearest",
                  extent=(-0.5, len(days) - 0.5, 23.5, -0.5))
        if detections:
            points = [(days.index(d), h, c) for (n, d, h), c in detections.items()
                      if n == node and d in days and c > 0]
            if points:
                x, y, count = np.array(points, float).T
                ax.scatter(x, y, s=8 + 12 * np.log1p(count), c="black", marker="o")
        step = max(1, len(days) // 12)
        ax.set_xticks(range(0, len(days), step), [days[i] for i in range(0, len(days), step)],
                      rotation=30, ha="right", fontsize=8)
        ax.set_yticks([0, 6, 12, 18, 23])
        ax.set_ylabel("UTC hour")
        ax.set_title(f"{node}: each UTC hour's share of audio ({models[0]}), gaps and "
                     "failures", fontsize=10)
    handles = [Patch(color=AUDIO_RGB, label="audio"), Patch(color=GAP_RGB, label="gap"),
               Patch(color=FAILED_RGB, label="failed segment"),
               Patch(facecolor="white", edgecolor="grey", label="no audio")]
    if detections:
        handles.append(plt.Line2D([], [], color="black", marker="o", linestyle="",
                                  label="detections (size: count)"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=110)
    plt.close(fig)
    return out.getvalue()
