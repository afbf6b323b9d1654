"""This run's manifest entries per model (``ManifestEntries``: decoded sources, outcomes and
written row shards joined by source) and the commit (``WriteManifest``: entry shards, then the
commit record, written last, atomically).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import apache_beam as beam

from orca_beam.core.statuses import EMBEDDED, FAILED, GAP
from orca_beam.records import SourceState
from orca_beam.store.manifest import (
    ENTRIES_DIR,
    ManifestEntry,
    combine_keys,
    commit,
    commit_record,
    entries_table,
    entry_key,
)
from orca_beam.store.reader import read_current_rows_of_shard
from orca_beam.store.schema import ENTRY_SCHEMA
from orca_beam.store.sinks import WriteParquetShards

LOG = logging.getLogger(__name__)

#: Entries per table written to an entry shard.
ENTRY_BATCH = 8192


class _ManifestEntryFn(beam.DoFn):
    def __init__(self, model: str, run_id: str):
        self.model = model
        self.run_id = run_id

    def process(self, keyed):
        source, grouped = keyed
        states: list[SourceState] = list(grouped["sources"])
        if not states or self.model not in states[0].models:
            return
        state = states[0]
        outcome = next(iter(grouped["outcomes"]), None)
        shards = sorted(set(grouped["shards"]))
        gaps = sorted((_gap_value(g) for g in grouped["gaps"]),
                      key=lambda g: (g["start_utc"] is None, g["start_utc"] or 0))
        yield ManifestEntry(
            source, state.size_bytes, state.fingerprint,
            outcome.status if outcome else FAILED, outcome.embeddings if outcome else 0,
            shards if outcome and outcome.embeddings else [], self.run_id,
            outcome.duration_s if outcome else None,
            outcome.error_class if outcome else "MissingOutcome",
            outcome.error if outcome else "no outcome was recorded",
            state.mtime_s, state.compared,
            stream=outcome.stream if outcome else None,
            start_utc=_utc(outcome.start_utc) if outcome else None,
            time_source=outcome.time_source if outcome else "", gaps=gaps).to_dict()


def _utc(iso: str | None) -> datetime | None:
    return None if iso is None else datetime.fromisoformat(iso).astimezone(UTC)


def _gap_value(gap) -> dict:
    """A gap outcome row as the entry's ``gaps`` item (GAP_TYPE)."""
    return {"start_utc": _utc(gap.start_utc), "duration_s": gap.duration_s, "cause": gap.error}


def _is_gap(outcome) -> bool:
    return outcome.status == GAP


def _shard_sources(shard: str):
    """(source, shard) for every source with rows in a written row shard (reads only the
    ``source`` column of that one shard)."""
    import pyarrow.compute as pc

    column = read_current_rows_of_shard(shard, None, ["source"]).column("source")
    for source in pc.unique(column).to_pylist():
        yield source, shard


class ManifestEntries(beam.PTransform):
    """This run's manifest entries of one model (ENTRY_SCHEMA dicts) for the files it
    processed: a join by source of ``sources`` (SourceState), ``outcomes`` (Outcome, any model:
    this model's give each entry its status, stream and UTC start; the gap rows go to the entry
    of their ``owner``) and ``shards`` (the row shard names this run wrote for the model)."""

    def __init__(self, model: str, run_id: str):
        super().__init__()
        self.model = model
        self.run_id = run_id

    def expand(self, inputs):
        model = self.model
        keyed = {
            "sources": inputs["sources"] | "KeySources" >> beam.Map(lambda s: (s.source, s)),
            "outcomes": (inputs["outcomes"]
                         | "OnlyThisModel" >> beam.Filter(lambda o, m=model: o.model == m)
                         | "KeyOutcomes" >> beam.Map(lambda o: (o.source, o))),
            "shards": inputs["shards"] | "SourcesPerShard" >> beam.FlatMap(_shard_sources),
            "gaps": (inputs["outcomes"] | "OnlyGaps" >> beam.Filter(_is_gap)
                     | "KeyGapsByOwner" >> beam.Map(lambda o: (o.owner or o.source, o))),
        }
        return (keyed | "JoinBySource" >> beam.CoGroupByKey()
                | "ToEntries" >> beam.ParDo(_ManifestEntryFn(model, self.run_id)))


class WriteManifest(beam.PTransform):
    """A model version's entries after this run -> entry shards in ``<folder>/_manifest/``, then
    the commit record (written last, atomically) naming them with the run's plan; then what the
    commit no longer names is deleted. Input: a dict with ``entries`` (every current entry:
    this run's and the carried ones) and ``plan`` (the one SummarisePlan dict). Output: the
    commit record (one element). ``in_process``: the entry shards' light write
    (``sinks.write_files``)."""

    def __init__(self, version, folder: str, run_id: str, in_process: bool = False):
        super().__init__()
        self.in_process = in_process
        self.version = version
        self.folder = folder.rstrip("/")
        self.run_id = run_id

    def expand(self, inputs):
        entries = inputs["entries"]
        shards = (entries
                  | "BatchEntries" >> beam.BatchElements(min_batch_size=ENTRY_BATCH,
                                                         max_batch_size=ENTRY_BATCH)
                  | "EntryTables" >> beam.Map(entries_table)
                  | "WriteEntryShards" >> WriteParquetShards(
                      f"{self.folder}/{ENTRIES_DIR}/entries-{self.run_id}", ENTRY_SCHEMA,
                      in_process=self.in_process))
        stats = entries | "EntryStats" >> beam.CombineGlobally(
            EntryStatsFn()).as_singleton_view()
        version, folder, run_id, model = self.version, self.folder, self.run_id, \
            self.version.model

        def write(plan, entry_shards, entry_stats):
            entry_count, digest_hex, referenced = entry_stats
            record = commit_record(folder, version, run_id, entry_shards=list(entry_shards),
                                   row_shards=list(referenced), entries=entry_count,
                                   rows_digest=digest_hex, plan=plan.get(model, {}))
            commit(folder, record)
            LOG.info("%s %s: committed %d sources (%s)", model, version.version_id,
                     entry_count, ", ".join(f"{k} {v}" for k, v in record["runs"][-1]["plan"]
                                            .items()))
            return record

        # the plan (one element) is the main input: no Create of its own, one stage
        return inputs["plan"] | "WriteCommit" >> beam.Map(
            write, beam.pvalue.AsList(shards), stats)


class EntryStatsFn(beam.CombineFn):
    """Entries (ENTRY_SCHEMA dicts) -> (count, rows digest, sorted distinct row shards): what
    the commit record states, in one combine. The digest is ``manifest.combine_keys`` of the
    entries' ``entry_key`` s (order-independent); the shards are few (one per ~256 MB)."""

    def create_accumulator(self):
        return 0, 0, set()

    def add_input(self, accumulator, entry):
        count, total, shards = accumulator
        shards.update(entry["shards"] or [])
        return count + 1, (total + entry_key(entry)) % (1 << 64), shards

    def merge_accumulators(self, accumulators):
        count, total, shards = 0, 0, set()
        for more, subtotal, some in accumulators:
            count += more
            total = (total + subtotal) % (1 << 64)
            shards |= some
        return count, total, shards

    def extract_output(self, accumulator):
        count, total, shards = accumulator
        return count, combine_keys([total]), sorted(shards)


def _rows_per_source(shard: str):
    """((source, (shard, rows))) for every source with rows in a written row shard (reads only
    the ``source`` column of that one shard)."""
    import pyarrow.compute as pc

    column = read_current_rows_of_shard(shard, None, ["source"]).column("source")
    for item in pc.value_counts(column).to_pylist():
        yield item["values"], (shard, int(item["counts"]))


class _CallEntryFn(beam.DoFn):
    def __init__(self, run_id: str):
        self.run_id = run_id

    def process(self, keyed):
        source, found = keyed
        found = sorted(found)
        yield ManifestEntry(source, 0, "", EMBEDDED, sum(n for _, n in found),
                            [shard for shard, _ in found], self.run_id).to_dict()


class CallEntries(beam.PTransform):
    """Calls mode: the row shards this run wrote -> one manifest entry per annotated file with
    rows (its row count and shards). A calls-mode run is always complete, so these entries alone
    are the version's state, and its commit deletes the rows of every earlier run."""

    def __init__(self, run_id: str):
        super().__init__()
        self.run_id = run_id

    def expand(self, shards):
        return (shards | "RowsPerSource" >> beam.FlatMap(_rows_per_source)
                | "ShardsPerSource" >> beam.GroupByKey()
                | "ToEntries" >> beam.ParDo(_CallEntryFn(self.run_id)))
