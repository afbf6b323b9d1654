"""The overview's sample, in Beam: the projector's seeded hash sample of a version's current rows
(the ``max_points`` rows of smallest hash, chosen from the key columns alone), then only those
rows' vectors read, and ``clips`` of them (spread evenly) get a clip, cut where they are read.

Output: one element, the list of points (at most ``max_points``: the only gather, bounded by
the sample, not the corpus). A point is a dict: ``index``, ``source``, ``start_s``, ``end_s``,
``stream``, ``start_utc``, ``vector`` (float32 bytes) and ``clip`` (its WAV file under the
report folder, or None) with ``clip_start_s``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from orca_beam.projector.export import assign_indices, read_chosen_rows, read_key_columns, scan_keys
from orca_beam.review.clips import wav_bytes
from orca_beam.review.page import hit_audio
from orca_beam.store.reader import ReadEntries

LOG = logging.getLogger(__name__)
#: Seconds of audio either side of a point's window in its clip.
CLIP_CONTEXT_S = 0.5
EXTRA_COLUMNS = ["stream", "start_utc"]


def _scan(shard_sources, seed: int):
    shard, sources = shard_sources
    yield from scan_keys(read_key_columns(shard, set(sources)), shard, "frame", seed)


def _points(shard: str, wanted) -> Iterator[dict]:
    for index, (key, _version, extras, vector, _thumb) in read_chosen_rows(
            shard, wanted, EXTRA_COLUMNS):
        yield {"index": index, "source": key[0], "start_s": key[1], "end_s": key[2],
               **dict(extras), "vector": vector}


class _ClipFn(beam.DoFn):
    """Cuts the clips of ``clips`` points spread evenly over the sample's indices (all of them
    in a smaller sample) into ``<out>/<clips_dir>/<index>.wav``."""

    def __init__(self, out: str, clips_dir: str, clips: int):
        self.out = out
        self.clips_dir = clips_dir
        self.clips = clips

    def setup(self):
        from orca_beam.core import s3

        s3.install()
        self.failed = beam.metrics.Metrics.counter("orca_beam", "overview_clips_failed")

    def process(self, point: dict, total: int) -> Iterator[dict]:
        point = {**point, "clip": None, "clip_start_s": None}
        if total and (point["index"] * self.clips) % total < self.clips:
            try:
                samples, rate, begin = hit_audio(point, CLIP_CONTEXT_S)
                name = f"{self.clips_dir}/{point['index']:05d}.wav"
                with FileSystems.create(f"{self.out}/{name}") as handle:
                    handle.write(wav_bytes(samples, rate))
                point.update(clip=name, clip_start_s=begin)
            except Exception as exc:  # noqa: BLE001 - a clip is optional: the point stays, unplayable
                self.failed.inc()
                LOG.warning("overview: no clip for %s@%s: %s", point["source"],
                            point["start_s"], exc)
        yield point


class OverviewSample(beam.PTransform):
    """A version folder -> one list of sample points (see the module docstring)."""

    def __init__(self, folder: str, out: str, clips_dir: str, *, max_points: int, clips: int,
                 seed: int):
        super().__init__()
        self.folder = folder
        self.out = out.rstrip("/")
        self.clips_dir = clips_dir
        self.max_points = max_points
        self.clips = clips
        self.seed = seed

    def expand(self, pbegin):
        seed = self.seed
        chosen = (pbegin | "Entries" >> ReadEntries(self.folder)
                  | "ShardOfEachSource" >> beam.FlatMap(
                      lambda e: [(s, e["source"]) for s in e["shards"] or []]
                      if e["embeddings"] else [])
                  | "SourcesPerShard" >> beam.GroupByKey()
                  | "ScanKeys" >> beam.FlatMap(_scan, seed)
                  | "SmallestHashes" >> beam.combiners.Top.Smallest(self.max_points))
        total = chosen | "SampleSize" >> beam.Map(len)
        return (chosen
                | "AssignIndices" >> beam.FlatMap(assign_indices)
                | "ChosenRowsPerShard" >> beam.GroupByKey()
                | "ReadChosenRows" >> beam.FlatMapTuple(_points)
                | "CutClips" >> beam.ParDo(_ClipFn(self.out, self.clips_dir, self.clips),
                                           beam.pvalue.AsSingleton(total))
                | "GatherSample" >> beam.combiners.ToList())  # at most max_points
