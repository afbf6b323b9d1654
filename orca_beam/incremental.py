"""The Beam transforms that make re-runs incremental, in the order they run:

``MatchFiles`` (distinct matched files with size and modification time) and ``ReadEntries`` (a
version's previous manifest entries, as a PCollection) -> ``PlanSources`` (the two joined by
source: what each model does with each file) -> ... decoding and inference ... ->
``ManifestEntries`` (this run's entries of the processed files) -> ``WriteManifest`` (entry shards
plus the commit record).

Nothing here gathers the corpus into one process: entries and files meet in a CoGroupByKey by
source, and only counts, samples of at most ``DELETED_SAMPLE`` sources and shard names are ever
combined globally.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.io import fileio

from orca_beam.listing import MatchedFile, matched_file
from orca_beam.records import SourceState
from orca_beam.statuses import FAILED
from orca_beam.store.fingerprint import fingerprint, rule_of
from orca_beam.store.manifest import (
    DELETED_SAMPLE,
    ENTRIES_DIR,
    PLAN_KINDS,
    ManifestEntry,
    combine_keys,
    commit,
    commit_record,
    decide,
    entries_table,
    entry_key,
    normalise_entry,
)
from orca_beam.store.reader import read_current_rows_of_shard
from orca_beam.store.schema import ENTRY_SCHEMA
from orca_beam.store.sinks import WriteParquetShards
from orca_beam.tags import NAMESPACE

LOG = logging.getLogger(__name__)
WORK_TAG = "work"
PLAN_TAG = "plan"
DELETED_TAG = "deleted"
#: Entries per table written to an entry shard.
ENTRY_BATCH = 8192


@dataclass(frozen=True)
class WorkItem:
    """A file this run decodes: the models it is embedded with, and its fingerprint when the
    plan already computed it ("" otherwise: computed while the bytes are read)."""

    path: str
    size_bytes: int
    mtime_s: float | None
    models: tuple[str, ...]
    fingerprint: str = ""
    compared: str = ""


def _first(items):
    return next(iter(items))


def _to_matched(kv) -> MatchedFile:
    return matched_file(kv[1])


class MatchFiles(beam.PTransform):
    """Glob patterns (local or gs://) -> one MatchedFile per distinct matched path (listing
    only: no file is opened)."""

    def __init__(self, patterns: Sequence[str]):
        super().__init__()
        self.patterns = list(patterns)

    def expand(self, pbegin):
        return (pbegin
                | "ListPatterns" >> beam.Create(self.patterns)
                | "MatchPatterns" >> fileio.MatchAll()
                | "KeyByPath" >> beam.Map(lambda meta: (meta.path, meta))
                | "KeepOnePerPath" >> beam.CombinePerKey(_first)
                | "ToMatchedFile" >> beam.Map(_to_matched))


_VALUE_FIELDS = tuple(name for name in ENTRY_SCHEMA.names if name != "source")


def entry_values(entry: dict) -> tuple:
    """An entry as a plain tuple of its fields but ``source`` (compact in a shuffle)."""
    return tuple(entry.get(name) for name in _VALUE_FIELDS)


def entry_of(source: str, values: tuple) -> dict:
    """The entry dict of :func:`entry_values` and its source."""
    return normalise_entry({"source": source, **dict(zip(_VALUE_FIELDS, values, strict=True))})


def carried_tag(model: str) -> str:
    """PlanSources' output of ``model``'s unchanged sources' entries."""
    return f"carried_{model}"


class _PlanFn(beam.DoFn):
    def __init__(self, models: Sequence[str], force: bool, verify_content: bool,
                 keep_unmatched: bool = False):
        self.models = list(models)
        self.force = force
        self.verify_content = verify_content
        self.keep_unmatched = keep_unmatched
        self.checked = beam.metrics.Metrics.counter(NAMESPACE, "files_content_checked")

    def process(self, keyed):
        source, grouped = keyed
        files = [MatchedFile(source, *values) for values in grouped["files"]]
        entries = {model: next((entry_of(source, values) for values in grouped[model]), None)
                   for model in self.models}
        if not files:
            for model, entry in entries.items():
                if entry is not None and self.keep_unmatched:
                    yield beam.pvalue.TaggedOutput(PLAN_TAG, (model, "unchanged"))
                    yield beam.pvalue.TaggedOutput(carried_tag(model), entry)
                elif entry is not None:
                    yield beam.pvalue.TaggedOutput(PLAN_TAG, (model, "deleted"))
                    yield beam.pvalue.TaggedOutput(DELETED_TAG, (model, source))
            return
        file: MatchedFile = files[0]
        rule = rule_of(file.path)
        computed: dict[str, str] = {}

        def content() -> str:
            if "print" not in computed:
                self.checked.inc()
                computed["print"] = fingerprint(file.path)
            return computed["print"]

        work, how = [], set()
        for model, entry in entries.items():
            decision = decide(entry, file.size_bytes, file.mtime_s if rule.uses_mtime else None,
                              force=self.force, verify_content=self.verify_content,
                              content=content, content_compared=rule.compared)
            yield beam.pvalue.TaggedOutput(PLAN_TAG, (model, decision.kind))
            if decision.kind == "unchanged":
                yield beam.pvalue.TaggedOutput(carried_tag(model), dict(
                    entry, mtime_s=file.mtime_s, compared=decision.compared))
            else:
                work.append(model)
                how.add(decision.compared)
        if work:
            print_ = computed.get("print", "")
            yield WorkItem(file.path, file.size_bytes, file.mtime_s, tuple(work), print_,
                           sorted(how)[0] if len(how) == 1 else "+".join(sorted(how)))


class PlanSources(beam.PTransform):
    """The plan: matched files joined by source with each model's previous entries.

    Input: a dict with ``files`` (MatchedFile) and, per model name, that model version's
    previous entries. Outputs (tagged): ``work`` (WorkItem per file some model must embed),
    ``carried_tag(model)`` per model (the entry of every unchanged source, its mtime and
    ``compared`` brought up to date), ``plan`` ((model, kind) per source and model, kinds as in ``PLAN_KINDS``) and
    ``deleted`` ((model, source) of every entry whose file is no longer matched). The change
    rule is the scheme's (``store.fingerprint``): a local file's content is read here only when
    its size or modification time differ (or ``verify_content``); a gs:// object's CRC32C and an
    s3:// object's ETag come from metadata, so no object is downloaded. ``keep_unmatched``
    (HLS ranges: a run over ``--start/--end`` lists only that range): entries whose source is
    not matched are carried as unchanged instead of deleted."""

    def __init__(self, models: Sequence[str], *, force: bool = False,
                 verify_content: bool = False, keep_unmatched: bool = False):
        super().__init__()
        self.models = list(models)
        self.force = force
        self.verify_content = verify_content
        self.keep_unmatched = keep_unmatched

    def expand(self, inputs):
        # what waits in the join is a plain tuple (no field names, no repeated path): the
        # local runner holds the whole join in one process
        keyed = {"files": inputs["files"] | "KeyFiles" >> beam.Map(
            lambda f: (f.path, (f.size_bytes, f.mtime_s)))}
        for model in self.models:
            keyed[model] = inputs[model] | f"KeyEntries_{model}" >> beam.Map(
                lambda e: (e["source"], entry_values(e)))
        return (keyed | "JoinBySource" >> beam.CoGroupByKey()
                | "Decide" >> beam.ParDo(_PlanFn(self.models, self.force, self.verify_content,
                                                self.keep_unmatched))
                .with_outputs(*map(carried_tag, self.models), PLAN_TAG, DELETED_TAG,
                              main=WORK_TAG))


def _plan_dict(_, counts, samples) -> dict:
    out: dict[str, dict] = {}
    for (model, kind), count in counts:
        out.setdefault(model, {k: 0 for k in PLAN_KINDS})[kind] = count
    for model, sources in samples:
        out.setdefault(model, {k: 0 for k in PLAN_KINDS})["deleted_sample"] = sorted(sources)
    for counts_of_model in out.values():
        counts_of_model.setdefault("deleted_sample", [])
    return out


class SummarisePlan(beam.PTransform):
    """The plan's ``plan`` and ``deleted`` outputs (a dict of the two PCollections, or
    PlanSources' tagged outputs) -> one small dict: model -> counts per kind plus
    ``deleted_sample`` (the first ``DELETED_SAMPLE`` deleted sources by name)."""

    def expand(self, plan):
        counts = plan[PLAN_TAG] | "CountKinds" >> beam.combiners.Count.PerElement()
        samples = plan[DELETED_TAG] | "SampleDeleted" >> beam.combiners.Top.SmallestPerKey(
            DELETED_SAMPLE)
        return (plan[PLAN_TAG].pipeline | "OnePlan" >> beam.Create([None])
                | "AssemblePlan" >> beam.Map(_plan_dict, beam.pvalue.AsList(counts),
                                             beam.pvalue.AsList(samples)))


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
        yield ManifestEntry(
            source, state.size_bytes, state.fingerprint,
            outcome.status if outcome else FAILED, outcome.embeddings if outcome else 0,
            shards if outcome and outcome.embeddings else [], self.run_id,
            outcome.duration_s if outcome else None,
            outcome.error_class if outcome else "MissingOutcome",
            outcome.error if outcome else "no outcome was recorded",
            state.mtime_s, state.compared).to_dict()


def _shard_sources(shard: str):
    """(source, shard) for every source with rows in a written row shard (reads only the
    ``source`` column of that one shard)."""
    import pyarrow.compute as pc

    column = read_current_rows_of_shard(shard, None, ["source"]).column("source")
    for source in pc.unique(column).to_pylist():
        yield source, shard


class ManifestEntries(beam.PTransform):
    """This run's manifest entries of one model (ENTRY_SCHEMA dicts) for the files it
    processed: a join by source of ``sources`` (SourceState), ``outcomes`` (Outcome, any model)
    and ``shards`` (the row shard names this run wrote for the model)."""

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
        }
        return (keyed | "JoinBySource" >> beam.CoGroupByKey()
                | "ToEntries" >> beam.ParDo(_ManifestEntryFn(model, self.run_id)))


def rows_digest(items, label: str = "RowsDigest", key=entry_key):
    """PCollection of entries (or of anything ``key`` hashes to 64 bits) -> one element: their
    order-independent digest (``manifest.combine_keys`` of the keys), whatever their order or
    sharding."""
    return (items | f"{label}Keys" >> beam.Map(key)
            | f"{label}Sum" >> beam.CombineGlobally(lambda keys: sum(keys) % (1 << 64))
            | f"{label}Hex" >> beam.Map(lambda total: combine_keys([total])))


class WriteManifest(beam.PTransform):
    """A model version's entries after this run -> entry shards in ``<folder>/_manifest/``, then
    the commit record (written last, atomically) naming them with the run's plan; then what the
    commit no longer names is deleted. Input: a dict with ``entries`` (every current entry:
    this run's and the carried ones) and ``plan`` (the one SummarisePlan dict). Output: the
    commit record (one element)."""

    def __init__(self, version, folder: str, run_id: str):
        super().__init__()
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
                      f"{self.folder}/{ENTRIES_DIR}/entries-{self.run_id}", ENTRY_SCHEMA))
        row_shards = (entries | "RowShards" >> beam.FlatMap(lambda e: e["shards"] or [])
                      | "DistinctRowShards" >> beam.Distinct())
        count = entries | "CountEntries" >> beam.combiners.Count.Globally()
        digest = rows_digest(entries)
        version, folder, run_id, model = self.version, self.folder, self.run_id, \
            self.version.model

        def write(_, entry_shards, referenced, entry_count, digest_hex, plan):
            record = commit_record(folder, version, run_id, entry_shards=list(entry_shards),
                                   row_shards=list(referenced), entries=entry_count,
                                   rows_digest=digest_hex, plan=plan.get(model, {}))
            commit(folder, record)
            LOG.info("%s %s: committed %d sources (%s)", model, version.version_id,
                     entry_count, ", ".join(f"{k} {v}" for k, v in record["runs"][-1]["plan"]
                                            .items()))
            return record

        return (entries.pipeline | "CommitPoint" >> beam.Create([None])
                | "WriteCommit" >> beam.Map(
                    write, beam.pvalue.AsList(shards), beam.pvalue.AsList(row_shards),
                    beam.pvalue.AsSingleton(count), beam.pvalue.AsSingleton(digest),
                    beam.pvalue.AsSingleton(inputs["plan"])))

