"""The report's ``index.html``: links to every file, the coverage picture, the clusters' scores,
and per model its sample's map drawn in SVG, where a click on a point with a clip plays it
(filled points have a clip; hollow ones are drawn only)."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence

from orca_beam.reports.overview import palette

MAP_PX = 520


def _map_svg(model: dict) -> str:
    """One model's sample as SVG circles, coloured by the label column (else the cluster)."""
    points = model["points"]
    if not points:
        return "<p>No rows.</p>"
    key = "label" if model.get("label_column") else "cluster"
    colours = palette([p[key] for p in points])
    xs, ys = [p["x"] for p in points], [p["y"] for p in points]
    lo_x, hi_x, lo_y, hi_y = min(xs), max(xs), min(ys), max(ys)
    span_x, span_y = (hi_x - lo_x) or 1.0, (hi_y - lo_y) or 1.0
    circles = []
    for n, p in enumerate(points):
        cx = 10 + (p["x"] - lo_x) / span_x * (MAP_PX - 20)
        cy = 10 + (hi_y - p["y"]) / span_y * (MAP_PX - 20)
        colour = colours[p[key]]
        title = html.escape(f"{p['source']} @ {p['start_s']:.2f} s; {key} {p[key]}; node "
                            f"{p['node']}; hour {p['hour']}")
        if p["clip"]:
            circles.append(
                f'<circle class="pt clip" data-n="{n}" cx="{cx:.1f}" cy="{cy:.1f}" r="5" '
                f'fill="{colour}"><title>{title}</title></circle>')
        else:
            circles.append(f'<circle class="pt" cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="none" '
                           f'stroke="{colour}"><title>{title}</title></circle>')
    legend = " ".join(f'<span class="key" style="background:{c}"></span>{html.escape(str(v))}'
                      for v, c in list(colours.items())[:20] if v not in (None, ""))
    return (f'<svg class="map" data-model="{html.escape(model["model"])}" width="{MAP_PX}" '
            f'height="{MAP_PX}" viewBox="0 0 {MAP_PX} {MAP_PX}">{"".join(circles)}</svg>'
            f'<p class="legend">{key}: {legend}</p>')


def _scores_table(models: Sequence[dict]) -> str:
    rows = []
    for m in models:
        for kind in ("hdbscan", "kmeans"):
            found = m["clusters"].get(kind) or {}
            score = found.get("agreement") or {}
            rows.append(f"<tr><td>{html.escape(m['model'])}</td><td>{kind}</td>"
                        f"<td>{found.get('clusters', '')}</td><td>{score.get('ami', '')}</td>"
                        f"<td>{score.get('ari', '')}</td><td>{score.get('noise_share', '')}</td>"
                        "</tr>")
    return ("<table><tr><th>model</th><th>clustering</th><th>clusters</th><th>AMI</th>"
            "<th>ARI</th><th>noise share</th></tr>" + "".join(rows) + "</table>")


def index_html(summary: dict, models: Sequence[dict], files: Sequence[str]) -> str:
    """The page: ``summary`` (the report's), ``models`` (per model: ``model``, ``method``,
    ``label_column``, ``clusters``, ``points`` with x, y, label, cluster, node, hour, source,
    start_s, clip, clip_start_s) and the report's ``files`` (relative names) to link."""
    clips = [[{"clip": p["clip"], "source": p["source"], "start_s": p["start_s"]}
              for p in m["points"]] for m in models]
    links = " · ".join(f'<a href="{html.escape(f)}">{html.escape(f)}</a>' for f in files)
    maps = "".join(
        f'<section><h3>{html.escape(m["model"])}: {len(m["points"])} points '
        f'({m["method"].upper()}{", of " + str(m["sampled_from"]) + " rows" if m.get("sampled_from") else ""})'
        f'</h3>{_map_svg(m)}</section>' for m in models)
    data = json.dumps(clips).replace("</", "<\\/")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>orca-beam report</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
img {{ max-width: 100%; border: 1px solid #ddd; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 2px 8px; }}
.map {{ border: 1px solid #ccc; background: #fafafa; }} .pt.clip {{ cursor: pointer; }}
.key {{ display: inline-block; width: 10px; height: 10px; margin: 0 3px 0 10px; }}
section {{ display: inline-block; vertical-align: top; margin-right: 1.5em; }}
</style></head><body>
<h1>What the corpus holds</h1>
<p id="counts">{summary.get("nodes", 0)} nodes, {summary.get("days", 0)} node-days; models
{html.escape(", ".join(summary.get("models", [])))}</p>
<p>Files: {links}</p>
<h2>Coverage per node and UTC hour</h2>
<img id="coverage" src="coverage.png" alt="coverage per node, day and hour">
<h2>Overview</h2>
<img id="overview" src="overview.png" alt="the sample's map per model">
<h3>Clusters against the labels</h3>
{_scores_table(models)}
<p>Click a filled point to hear its clip: <span id="playing">nothing yet</span></p>
<audio id="player" controls></audio>
<div>{maps}</div>
<script>
const CLIPS = {data};
const player = document.getElementById('player');
document.querySelectorAll('svg.map').forEach((svg, m) => {{
  svg.addEventListener('click', (event) => {{
    const target = event.target.closest('circle.clip');
    if (!target) return;
    const point = CLIPS[m][Number(target.dataset.n)];
    player.src = point.clip;
    player.play();
    document.getElementById('playing').textContent = point.source + ' @ ' + point.start_s.toFixed(2) + ' s';
  }});
}});
</script>
</body></html>
"""
