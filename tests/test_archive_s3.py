"""Orcasound's archive as it is served: a public-read bucket (a real S3 emulator process) holding
two HLS folders of one node and a few 30 s FLAC archive files named by their local recording
time. A run over --start/--end embeds exactly the overlapping segments with every model, reads
without credentials at once, and gives the rows of a local run of the same data."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from orca_beam.core.hls import PLAYLIST_NAME, Decoded, decode_segments, parse_playlist
from orca_beam.store.reader import current_rows
from orca_beam.store.version import latest_version_folder
from orca_beam.testing.hls_fixtures import write_hls_folder
from pipelines import extract
from tests.test_s3_pipeline import without_credentials

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[1]
MODELS = ["vggish", "yamnet", "humpback", "birdnet"]
FIRST_S = 1_633_046_400  # 2021-10-01T00:00:00Z: the first folder; the second an hour later
SECOND_S = FIRST_S + 3600
START = datetime.fromtimestamp(FIRST_S + 15, UTC)  # inside live001 of the first folder
END = datetime.fromtimestamp(SECOND_S + 25, UTC)  # inside live002 of the second (missing)
PACIFIC = ZoneInfo("America/Los_Angeles")
FLAC_LOCAL = [datetime(2021, 9, 30, 17, 0, 0) + timedelta(seconds=30 * k) for k in range(3)]
NODE = "rpi_test_node"

LIST_FIRST = """
import json, sys, time
started = time.perf_counter()
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from orca_beam.core import s3
from orca_beam.sources.hls import list_folders
s3.install()  # the shared, unsigned-without-credentials S3 client
options = PipelineOptions([f"--s3_endpoint_url={sys.argv[1]}"])
FileSystems.set_options(options)
folders = list_folders(sys.argv[2], options)
with FileSystems.open(folders[0] + "live.m3u8") as handle:
    head = handle.read(7)
print(json.dumps({"folders": len(folders), "head": head.decode(),
                  "seconds": time.perf_counter() - started}))
"""


def model_args(standin_dir: Path) -> list[str]:
    return [f"--model={m}" for m in MODELS] + [
        f"--model_handle={m}={standin_dir / m}" for m in MODELS if m != "birdnet"]


def rows_by_place(output: str, model: str) -> dict[tuple, tuple]:
    """(folder name, segment name, start_s) -> (start_utc, embedding) of a run's rows."""
    table = current_rows(latest_version_folder(output, model))
    vectors = np.asarray(table.column("embedding").combine_chunks().flatten(), np.float32)
    vectors = vectors.reshape(table.num_rows, -1)
    out = {}
    for row, vector in zip(table.select(["source", "start_s", "start_utc"]).to_pylist(), vectors,
                           strict=True):
        folder, name = row["source"].rsplit("/", 2)[-2:]
        out[(folder, name, row["start_s"])] = (row["start_utc"], vector)
    return out


@pytest.fixture(scope="module")
def archive(orca_calls, s3_emulator, tmp_path_factory):
    """The node's two HLS folders (the first with date-times, mono, live003.ts corrupt; the
    second older: no date-times, stereo, live002.ts missing) and three FLAC files, locally and
    in the bucket."""
    base = tmp_path_factory.mktemp("archive")
    samples, rate = sf.read(str(orca_calls / "hydrophone" / "210825-1925_L-highlight.wav"),
                            dtype="float32", always_2d=True)
    assert rate == 48000
    mono = np.tile(samples[:, :1], (4, 1))[:48000 * 40]
    hls = base / "audio-orcasound-net" / NODE / "hls"
    write_hls_folder(mono, hls / str(FIRST_S),
                     first_pdt=datetime.fromtimestamp(FIRST_S + 2.5, UTC))
    second = write_hls_folder(np.concatenate([mono, mono[::-1]], axis=1), hls / str(SECOND_S),
                              date_times=False)
    (second / "live002.ts").unlink()
    first = hls / str(FIRST_S)
    (first / "live003.ts").write_bytes(b"\x47" + bytes(187) + b"not a transport stream" * 100)
    flac = base / "archive-orcasound-net" / NODE
    flac.mkdir(parents=True)
    for k, local in enumerate(FLAC_LOCAL):
        sf.write(str(flac / f"{local:%Y-%m-%d_%H-%M-%S}_{NODE}-48000-1.flac"),
                 mono[48000 * 5 * k: 48000 * (5 * k + 30)], 48000, subtype="PCM_16")
    s3_emulator.upload(base / "audio-orcasound-net", "audio-orcasound-net")
    s3_emulator.upload(base / "archive-orcasound-net", "archive-orcasound-net")
    return base


def test_hls_folders_in_a_public_bucket_equal_a_local_run(archive, s3_emulator, standin_dir,
                                                          tmp_path):
    root = s3_emulator.url(f"audio-orcasound-net/{NODE}/hls/")
    env = without_credentials(tmp_path)
    done = subprocess.run([sys.executable, "-c", LIST_FIRST, s3_emulator.endpoint, root],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    first = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\nno credentials: folders listed and a playlist read {first['seconds']:.2f} s after "
          "start")
    assert first["folders"] == 2 and first["head"] == "#EXTM3U" and first["seconds"] < 5.0
    span = [f"--start={START.isoformat()}", f"--end={END.isoformat()}"]
    out = tmp_path / "from-s3"
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.extract", "--runner=DirectRunner", f"--input={root}",
         *span, f"--s3_endpoint_url={s3_emulator.endpoint}", f"--output={out}",
         "--projector_point=none", *model_args(standin_dir)],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "requests are unsigned" in done.stderr
    local = tmp_path / "local"
    summary = extract.run([
        f"--input={archive / 'audio-orcasound-net' / NODE / 'hls'}/", *span,
        f"--output={local}", "--projector_point=none", *model_args(standin_dir)])
    # exactly the overlapping segments: live001..live004 (the 0.02 s tail) of the first folder
    # (live000 ends at 12.5 s, before --start; live003 is corrupt), live000 and live001 of the
    # second (its live002 is missing: a gap row)
    expected = {(str(FIRST_S), f"live00{k}.ts") for k in (1, 2, 3, 4)} | {
        (str(SECOND_S), "live000.ts"), (str(SECOND_S), "live001.ts")}
    found = [json.loads(line) for path in sorted((out / "outcomes").glob("*/*.jsonl"))
             for line in path.read_text().splitlines()]
    for model in MODELS:
        mine = {tuple(o["source"].rsplit("/", 2)[-2:]): o["status"] for o in found
                if o["model"] == model}
        assert mine.keys() == expected
        assert mine[(str(FIRST_S), "live003.ts")] == "unreadable"
        assert summary["models"][model]["embedded"] == len(expected) - 1
        assert summary["models"][model]["unreadable"] == 1
    gaps = [o for o in found if o["status"] == "gap"]
    assert [g["source"].rsplit("/", 2)[-2:] for g in gaps] == [[str(SECOND_S), "live002.ts"]]
    assert gaps[0]["start_utc"].startswith("2021-10-01T01:00:20")
    playlist = parse_playlist((archive / "audio-orcasound-net" / NODE / "hls" / str(FIRST_S)
                               / PLAYLIST_NAME).read_text())
    offsets = dict(zip([s.name for s in playlist],
                       np.cumsum([0.0] + [s.duration_s for s in playlist[:-1]]), strict=True))
    stamps = {s.name: s.program_date_time.timestamp() for s in playlist}
    FileSystems.set_options(PipelineOptions([f"--s3_endpoint_url={s3_emulator.endpoint}"]))
    for model in MODELS:
        remote, mine = rows_by_place(str(out), model), rows_by_place(str(local), model)
        assert remote.keys() == mine.keys() and len(mine) >= 4
        assert {key[:2] for key in mine} <= expected
        for key, (utc, vector) in mine.items():
            assert remote[key][0] == utc
            np.testing.assert_array_equal(remote[key][1], vector)
            folder_s = int(key[0])
            if folder_s == SECOND_S:  # no date-times: the folder's name plus the durations
                assert abs(utc.timestamp() - (folder_s + key[2])) <= 1e-3
            else:  # the owner's date-time in the playlist plus the offset from its start
                assert abs(stamps[key[1]] - (folder_s + 2.5 + offsets[key[1]])) <= 1e-3
                expected_utc = stamps[key[1]] + key[2] - offsets[key[1]]
                assert abs(utc.timestamp() - expected_utc) <= 1e-3
            # the range picks whole segments (10 s): every window lies in one that overlaps it
            assert START.timestamp() - 10.1 <= utc.timestamp() < END.timestamp() + 10.1
            assert key[:2] != (str(FIRST_S), "live003.ts")  # no row from the corrupt segment


def test_flac_archive_names_in_local_time(archive, s3_emulator, standin_dir, tmp_path):
    pattern = s3_emulator.url(f"archive-orcasound-net/{NODE}/*.flac")
    out = tmp_path / "flac"
    summary = extract.run([
        f"--input={pattern}", f"--s3_endpoint_url={s3_emulator.endpoint}", "--s3_anonymous",
        "--file_time_format=%Y-%m-%d_%H-%M-%S", "--file_time_zone=America/Los_Angeles",
        f"--output={out}", "--projector_point=none", "--model=yamnet",
        f"--model_handle=yamnet={standin_dir / 'yamnet'}"])
    assert summary["models"]["yamnet"]["embedded"] == 3
    table = current_rows(latest_version_folder(str(out), "yamnet"))
    assert table.num_rows == 3 * 62
    starts = {f"{local:%Y-%m-%d_%H-%M-%S}": local.replace(tzinfo=PACIFIC).timestamp()
              for local in FLAC_LOCAL}
    for row in table.select(["source", "start_s", "start_utc", "time_source"]).to_pylist():
        name = row["source"].rsplit("/", 1)[-1]
        assert row["time_source"] == "file_name"
        # 17:00 in Los Angeles (PDT, UTC-7) is midnight UTC
        assert abs(row["start_utc"].timestamp() - (starts[name[:19]] + row["start_s"])) <= 1e-3
    assert min(r.timestamp() for r in table.column("start_utc").to_pylist()) == FIRST_S


def test_no_op_reruns_read_no_object_past_the_listing(archive, s3_emulator, standin_dir,
                                                       tmp_path):
    """A second run over unchanged FLAC objects and an unchanged HLS folder decides from the
    listing alone (size and LastModified): no object is fingerprinted or decoded."""
    yamnet = ["--model=yamnet", f"--model_handle=yamnet={standin_dir / 'yamnet'}",
              "--projector_point=none", f"--s3_endpoint_url={s3_emulator.endpoint}",
              "--s3_anonymous"]
    flac = [f"--input={s3_emulator.url(f'archive-orcasound-net/{NODE}/*.flac')}",
            f"--output={tmp_path / 'flac'}", "--file_time_format=%Y-%m-%d_%H-%M-%S",
            "--file_time_zone=America/Los_Angeles", *yamnet]
    hls = [f"--input={s3_emulator.url(f'audio-orcasound-net/{NODE}/hls/')}",
           f"--start={datetime.fromtimestamp(FIRST_S, UTC).isoformat()}",
           f"--end={datetime.fromtimestamp(FIRST_S + 25, UTC).isoformat()}",
           f"--output={tmp_path / 'hls'}", *yamnet]
    for args, sources in ((flac, 3), (hls, 3)):
        first = extract.run(args)
        assert first["counters"]["orca_beam:files_decoded" if args is flac
                                 else "orca_beam:hls_segments_decoded"] > 0
        again = extract.run(args)
        assert again["nothing_changed"]
        assert again["versions"]["yamnet"]["plan"]["unchanged"] == sources
        for counter in ("orca_beam:files_content_checked", "orca_beam:files_decoded",
                        "orca_beam:hls_segments_decoded"):
            assert counter not in again["counters"], (counter, again["counters"])


def test_search_plays_an_hls_hit_cut_at_its_utc_time(archive, s3_emulator, standin_dir,
                                                     tmp_path):
    """Search the rows of an HLS folder in the bucket and write the review page: each hit's clip
    is cut from the bucket's segments by the hit's UTC time, across joins. Oracle: the clip is
    found by cross-correlation in the folder decoded locally (placed by MPEG-TS time), and
    starts at the hit's start_s minus the context, to 10 ms."""
    from orca_beam.core.hls import order_segments
    from pipelines import search

    s3_args = [f"--s3_endpoint_url={s3_emulator.endpoint}", "--s3_anonymous"]
    extract.run([f"--input={s3_emulator.url(f'audio-orcasound-net/{NODE}/hls/')}",
                 f"--start={datetime.fromtimestamp(FIRST_S, UTC).isoformat()}",
                 f"--end={datetime.fromtimestamp(FIRST_S + 40, UTC).isoformat()}",
                 f"--output={tmp_path / 'out'}", "--model=yamnet",
                 f"--model_handle=yamnet={standin_dir / 'yamnet'}", "--projector_point=none",
                 *s3_args])
    table = current_rows(latest_version_folder(str(tmp_path / "out"), "yamnet"))
    rows = [r for r in table.select(["source", "start_s"]).to_pylist()
            if r["source"].endswith("/live001.ts")]
    query = f"{rows[3]['source']}@{rows[3]['start_s']}"
    out = tmp_path / "search"
    summary = search.run([f"--embeddings={tmp_path / 'out'}", "--model=yamnet",
                          f"--output={out}", f"--query_row={query}", "--top_k=3",
                          "--min_gap_s=3", "--context_s=2", *s3_args])
    assert summary["review"]["clips"] == 3 and summary["review"]["missing"] == 0
    hits = list(csv.DictReader((out / "results.csv").open(newline="")))
    folder = archive / "audio-orcasound-net" / NODE / "hls" / str(FIRST_S)
    segments = order_segments(parse_playlist((folder / PLAYLIST_NAME).read_text()),
                              [p.name for p in folder.glob("*.ts")])
    decoded = [d for d in decode_segments((s, (folder / s.name).read_bytes())
                                          for s in segments if s.present)
               if isinstance(d, Decoded) and len(d.samples)]
    origin = decoded[0].first_pts_s
    stream = np.zeros(round((decoded[-1].first_pts_s - origin) * 48000)
                      + len(decoded[-1].samples), np.float32)
    for d in decoded:  # each piece at its MPEG-TS place: independent of the playlist's times
        at = round((d.first_pts_s - origin) * 48000)
        stream[at:at + len(d.samples)] = d.samples[:, 0]
    for n, hit in enumerate(hits, 1):
        assert hit["source"].startswith("s3://") and hit["stream"]
        clip, rate = sf.read(str(out / "review" / "clips" / f"hit-{n:04d}.wav"),
                             dtype="float32")
        assert rate == 48000
        assert len(clip) == pytest.approx((float(hit["end_s"]) - float(hit["start_s"]) + 4)
                                          * rate, abs=2)
        expected = float(hit["start_s"]) - 2.0
        middle = len(clip) // 2 - rate // 2
        probe = clip[middle: middle + rate]  # 1 s from the middle of the clip
        lo = max(0, round(expected * rate) + middle - rate)
        window = stream[lo: lo + rate * 3]
        score = np.correlate(window, probe, mode="valid") / (
            np.sqrt(np.convolve(window ** 2, np.ones(len(probe)), mode="valid")) + 1e-9)
        found = (lo + int(np.argmax(score)) - middle) / rate  # the clip's own start
        print(f"hit {n}: clip starts {found - expected:+.4f} s from start_s - context")
        assert abs(found - expected) <= 0.010, (n, found, expected)


def test_apply_over_a_growing_hls_folder_scores_only_the_new_segments(orca_calls, s3_emulator,
                                                                      standin_dir, tmp_path):
    """A nightly loop over an Orcasound Lab folder in the bucket: extract, apply; the folder
    grows; extract, apply. The second apply scores only the new segments' rows (counters), keeps
    the others' scores, and every detection carries its row's start_utc and a bout link there."""
    from orca_beam.classify.linear import LinearClassifier
    from orca_beam.store.reader import embedding_matrix
    from orca_beam.store.version import VersionInfo
    from pipelines import classify

    node, folder_s = "rpi_orcasound_lab", FIRST_S + 7200
    samples, _ = sf.read(str(orca_calls / "hydrophone" / "210825-1925_L-highlight.wav"),
                         dtype="float32", always_2d=True)
    local = tmp_path / "node" / str(folder_s)
    write_hls_folder(np.tile(samples[:, :1], (4, 1))[:48000 * 60], local,
                     first_pdt=datetime.fromtimestamp(folder_s + 1.5, UTC))
    key = f"audio-orcasound-net/{node}/hls/{folder_s}"
    lines = (local / PLAYLIST_NAME).read_text().splitlines()
    cut = lines.index("live002.ts")
    early = tmp_path / "early"
    early.mkdir()
    (early / PLAYLIST_NAME).write_text("\n".join(lines[:cut + 1]) + "\n")
    for name in ("live000.ts", "live001.ts", "live002.ts"):
        (early / name).write_bytes((local / name).read_bytes())
    s3_emulator.upload(early, key)
    s3_args = [f"--s3_endpoint_url={s3_emulator.endpoint}", "--s3_anonymous"]
    out, scores = tmp_path / "out", tmp_path / "scores"

    def nightly() -> tuple[dict, dict]:
        extract.run([f"--input={s3_emulator.url(f'audio-orcasound-net/{node}/hls/')}",
                     f"--start={datetime.fromtimestamp(folder_s, UTC).isoformat()}",
                     f"--end={datetime.fromtimestamp(folder_s + 3600, UTC).isoformat()}",
                     f"--output={out}", "--model=yamnet",
                     f"--model_handle=yamnet={standin_dir / 'yamnet'}",
                     "--projector_point=none", *s3_args])
        folder = latest_version_folder(str(out), "yamnet")
        table = current_rows(folder, ["source", "start_s", "start_utc", "embedding"])
        rows = {(r["source"], r["start_s"]): r["start_utc"]
                for r in table.select(["source", "start_s", "start_utc"]).to_pylist()}
        if not (tmp_path / "classifier.json").exists():  # the direction of one row, thresholded
            x = embedding_matrix(table).astype(np.float64)  # at the first night's median
            w = x[len(x) // 2] / np.linalg.norm(x[len(x) // 2])
            info = VersionInfo.read(folder)
            model = LinearClassifier(
                ["orca"], w[None, :], np.zeros(1), np.zeros(len(w)), np.ones(len(w)), False,
                np.array([float(np.median(1 / (1 + np.exp(-(x @ w)))))]),
                {"embedding": {"version_id": folder.rsplit("/", 1)[-1],
                               "model_version": info.label}})
            model.save(str(tmp_path / "classifier.json"))
        summary = classify.run(["apply", f"--classifier={tmp_path / 'classifier.json'}",
                                f"--embeddings={out}", "--model=yamnet", f"--output={scores}",
                                *s3_args])
        return rows, summary

    first_rows, first = nightly()
    s3_emulator.upload(local, key)  # the rest of the segments and the full playlist
    rows, second = nightly()
    new_rows = [k for k in rows if k not in first_rows]
    assert first["rows_scored"] == len(first_rows) and first["rows_kept"] == 0
    assert all(not k[0].endswith(("live000.ts", "live001.ts")) for k in new_rows)
    assert (second["rows_scored"], second["rows_kept"]) == (len(new_rows), len(first_rows))
    assert second["shards_kept"] == 1 and second["shards_to_score"] == 1
    detections = pq.read_table(scores / "detections.parquet").to_pylist()
    assert len(detections) == second["detections"] >= len(rows) // 3
    for d in detections:
        assert d["start_utc"] == rows[(d["source"], d["start_s"])]
        stamp = d["start_utc"].strftime("%Y-%m-%dT%H%%3A%M%%3A%S.%f")[:-3] + "Z"
        assert d["review_url"] == (
            f"https://live.orcasound.net/bouts/new/orcasound-lab?time={stamp}")
