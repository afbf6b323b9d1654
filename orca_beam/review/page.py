"""``<dir>/index.html``: one self-contained page (inline CSS and script, no server, no network)
listing hits with rank, score, UTC time, source, a spectrogram and an audio player each (files in
``<dir>/clips/``), "yes / no / unsure" buttons and an "Export labels" button.

Keyboard: ``j`` / ``ArrowDown`` next hit, ``k`` / ``ArrowUp`` previous, ``space`` play or pause,
``y`` / ``n`` / ``u`` give the current hit a verdict and move on, ``e`` export. The export is a
CSV ``source, start_s, end_s, start_utc, label, verdict`` (what ``--queries_from`` and
``--label_table`` read), downloaded as ``labels.csv``; verdicts are kept in the browser's local
storage, so a reload keeps them.

Used by the search (``pipelines.search``) and meant for the classifier's hits: a hit is a dict
with ``rank``, ``score``, ``source``, ``start_s``, ``end_s``, and optionally ``query``, ``label``
(the export's label; default the query), ``stream`` and ``start_utc`` (a datetime).
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Iterable

import numpy as np
from apache_beam.io.filesystems import FileSystems

from orca_beam.core.audio import AudioError
from orca_beam.review.clips import (
    CLIP_RATE_HZ,
    cut_clip,
    cut_stream_clip,
    png_bytes,
    spectrogram_rgb,
    wav_bytes,
)
from orca_beam.review.verdicts import EXPORT_COLUMNS

LOG = logging.getLogger(__name__)
#: Default seconds of audio each side of a hit.
DEFAULT_CONTEXT_S = 5.0


def _write(path: str, data: bytes) -> None:
    with FileSystems.create(path) as handle:
        handle.write(data)


def hit_audio(hit: dict, context_s: float) -> tuple[np.ndarray, int, float]:
    """The audio of a row (``source``, ``start_s``, ``end_s``; a stream's also ``stream`` and
    ``start_utc``) with ``context_s`` seconds either side: (mono float32 samples, rate in Hz,
    the second the clip starts at, in the row's own seconds). A stream's clip is cut by UTC,
    across segment joins. Raises AudioError, OSError or ValueError when it cannot be cut."""
    if hit.get("stream"):
        if not hit.get("start_utc"):
            raise ValueError("the hit has no UTC time to find its audio by")
        at = hit["start_utc"].timestamp()
        samples, rate, begin_utc = cut_stream_clip(
            hit["stream"], at - context_s, at + hit["end_s"] - hit["start_s"] + context_s)
        return samples, rate, hit["start_s"] - (at - begin_utc)
    samples, begin = cut_clip(hit["source"], max(0.0, hit["start_s"] - context_s),
                              hit["end_s"] + context_s)
    return samples, CLIP_RATE_HZ, begin


def write_review(hits: Iterable[dict], out_dir: str, *, context_s: float = DEFAULT_CONTEXT_S,
                 title: str = "orca-beam review") -> dict:
    """Writes the page and one clip (WAV, CLIP_RATE_HZ) and spectrogram (PNG) per hit under
    ``out_dir`` (local, gs:// or s3://); returns counts (hits, clips, missing: hits whose audio
    could not be cut, each with its reason on the page)."""
    out = out_dir.rstrip("/")
    cards, clips, missing = [], 0, 0
    for number, hit in enumerate(hits, 1):
        card = {"n": number, "rank": hit["rank"], "score": round(float(hit["score"]), 6),
                "query": hit.get("query") or "", "label": hit.get("label") or hit.get("query")
                or "", "source": hit["source"], "start_s": hit["start_s"], "end_s": hit["end_s"],
                "start_utc": hit["start_utc"].isoformat() if hit.get("start_utc") else "",
                "audio": None, "picture": None, "clip_start_s": None, "why": ""}
        try:
            samples, rate, begin = hit_audio(hit, context_s)
            name = f"clips/hit-{number:04d}"
            _write(f"{out}/{name}.wav", wav_bytes(samples, rate))
            marks = (hit["start_s"] - begin, hit["end_s"] - begin)
            _write(f"{out}/{name}.png", png_bytes(spectrogram_rgb(samples, rate, marks_s=marks)))
            card.update(audio=f"{name}.wav", picture=f"{name}.png", clip_start_s=begin)
            clips += 1
        except (AudioError, OSError, ValueError) as exc:
            card["why"] = f"{type(exc).__name__}: {exc}"
        if card["audio"] is None:
            missing += 1
            LOG.warning("review: no audio for %s@%s: %s", hit["source"], hit["start_s"],
                        card["why"])
        cards.append(card)
    _write(f"{out}/index.html", page_html(cards, title, context_s).encode())
    return {"hits": len(cards), "clips": clips, "missing": missing}


def page_html(cards: list[dict], title: str, context_s: float) -> str:
    """The page's HTML for ``cards`` (the dicts :func:`write_review` builds)."""
    data = json.dumps(cards).replace("</", "<\\/")
    return (PAGE.replace("__TITLE__", html.escape(title))
            .replace("__CONTEXT__", f"{context_s:g}").replace("__RATE__", str(CLIP_RATE_HZ))
            .replace("__EXPORT_HEADER__", ",".join(EXPORT_COLUMNS)).replace("__DATA__", data))


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; background: #fafafa; color: #222; }
header { position: sticky; top: 0; background: #fafafa; padding: .5em 0; z-index: 1; }
.hit { border: 2px solid #ddd; border-radius: 6px; background: #fff; margin: .8em 0;
       padding: .6em .8em; }
.hit.current { border-color: #2b6cb0; }
.hit.yes { background: #e8f7ec; } .hit.no { background: #fbe9e9; }
.hit.unsure { background: #fff6db; }
.meta { font-size: .9em; } .meta b { font-size: 1.05em; }
.source { font-family: monospace; word-break: break-all; }
img.spec { display: block; width: 100%; max-width: 900px; height: 160px; image-rendering: pixelated;
           margin: .4em 0; }
button.verdict { margin-right: .4em; } button.verdict.on { font-weight: bold; outline: 2px solid #2b6cb0; }
.why { color: #a33; } kbd { border: 1px solid #bbb; border-radius: 3px; padding: 0 .3em; }
</style></head><body>
<header><h1 style="margin:0">__TITLE__</h1>
<p id="counts"></p>
<p>Keys: <kbd>j</kbd>/<kbd>&darr;</kbd> next, <kbd>k</kbd>/<kbd>&uarr;</kbd> previous,
<kbd>space</kbd> play, <kbd>y</kbd> yes, <kbd>n</kbd> no, <kbd>u</kbd> unsure, <kbd>e</kbd> export.
Each clip has __CONTEXT__ s of context each side; white lines mark the hit.
<button id="export">Export labels</button></p></header>
<main id="hits"></main>
<pre id="exported" hidden></pre>
<script>
const HITS = __DATA__;
const KEY = 'orca-beam-review:' + location.pathname;
const verdicts = JSON.parse(localStorage.getItem(KEY) || '{}');
let current = 0;
const main = document.getElementById('hits');
function esc(text) { const d = document.createElement('div'); d.textContent = text; return d.innerHTML; }
HITS.forEach((hit, i) => {
  const div = document.createElement('div');
  div.className = 'hit'; div.id = 'hit-' + hit.n;
  div.innerHTML = `<div class="meta"><b>#${hit.rank}</b> score ${hit.score.toFixed(4)}
    ${hit.start_utc ? ' &middot; ' + esc(hit.start_utc) + ' UTC' : ''}
    &middot; ${hit.start_s.toFixed(3)}&ndash;${hit.end_s.toFixed(3)} s
    ${hit.query ? ' &middot; query ' + esc(hit.query) : ''}<br>
    <span class="source">${esc(hit.source)}</span></div>` +
    (hit.picture ? `<img class="spec" alt="spectrogram" src="${hit.picture}">` : '') +
    (hit.audio ? `<audio controls preload="auto" src="${hit.audio}"></audio>`
               : `<p class="why">${esc(hit.why)}</p>`) +
    `<div>${['yes', 'no', 'unsure'].map(v =>
      `<button class="verdict" data-v="${v}">${v}</button>`).join('')}</div>`;
  div.querySelectorAll('button.verdict').forEach(b =>
    b.addEventListener('click', () => { setVerdict(i, b.dataset.v, false); }));
  div.addEventListener('click', () => select(i, false));
  main.appendChild(div);
});
function keyOf(hit) { return hit.source + '@' + hit.start_s + '@' + hit.query; }
function paint() {
  let done = 0;
  HITS.forEach((hit, i) => {
    const div = document.getElementById('hit-' + hit.n);
    const v = verdicts[keyOf(hit)] || '';
    if (v) done++;
    div.className = 'hit' + (i === current ? ' current' : '') + (v ? ' ' + v : '');
    div.querySelectorAll('button.verdict').forEach(b =>
      b.classList.toggle('on', b.dataset.v === v));
  });
  document.getElementById('counts').textContent =
    `${HITS.length} hits, ${done} reviewed, ${HITS.length - done} to go`;
}
function select(i, scroll = true) {
  current = Math.max(0, Math.min(HITS.length - 1, i)); paint();
  if (scroll) document.getElementById('hit-' + HITS[current].n).scrollIntoView({block: 'center'});
}
function setVerdict(i, v, advance = true) {
  verdicts[keyOf(HITS[i])] = v; localStorage.setItem(KEY, JSON.stringify(verdicts));
  current = i; if (advance) select(i + 1); else paint();
}
function cell(value) {
  const text = String(value);
  return /[",\\n\\r]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
}
function exportLabels() {
  const lines = ['__EXPORT_HEADER__'];
  HITS.forEach(hit => {
    const v = verdicts[keyOf(hit)];
    if (v) lines.push([hit.source, hit.start_s, hit.end_s, hit.start_utc, hit.label, v]
                      .map(cell).join(','));
  });
  const text = lines.join('\\n') + '\\n';
  document.getElementById('exported').textContent = text;
  const link = document.createElement('a');
  link.href = URL.createObjectURL(new Blob([text], {type: 'text/csv'}));
  link.download = 'labels.csv'; document.body.appendChild(link); link.click(); link.remove();
  return text;
}
document.getElementById('export').addEventListener('click', exportLabels);
document.addEventListener('keydown', event => {
  if (event.target.tagName === 'INPUT') return;
  const audio = document.querySelectorAll('#hit-' + HITS[current].n + ' audio')[0];
  const key = event.key;
  if (key === 'j' || key === 'ArrowDown') select(current + 1);
  else if (key === 'k' || key === 'ArrowUp') select(current - 1);
  else if (key === 'y' || key === 'n' || key === 'u')
    setVerdict(current, {y: 'yes', n: 'no', u: 'unsure'}[key]);
  else if (key === ' ' && audio) { audio.paused ? audio.play() : audio.pause(); }
  else if (key === 'e') exportLabels();
  else return;
  event.preventDefault();
});
paint();
</script></body></html>
"""
