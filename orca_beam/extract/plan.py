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

import apache_beam as beam

from orca_beam.core import s3
from orca_beam.core.listing import MatchedFile
from orca_beam.records import WorkItem
from orca_beam.store.fingerprint import fingerprint, rule_of
from orca_beam.store.manifest import (
    DELETED_SAMPLE,
    PLAN_KINDS,
    decide,
    normalise_entry,
)
from orca_beam.store.schema import ENTRY_SCHEMA
from orca_beam.tags import NAMESPACE

LOG = logging.getLogger(__name__)
WORK_TAG = "work"
PLAN_TAG = "plan"
DELETED_TAG = "deleted"










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

    def setup(self):
        s3.install()  # content() may read an object's metadata

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


class _PlanCountsFn(beam.CombineFn):
    """("kind", model, kind) and ("deleted", model, source) items -> model -> counts per kind
    plus ``deleted_sample`` (the first DELETED_SAMPLE deleted sources by name), in one combine."""

    def create_accumulator(self):
        return {}

    def add_input(self, acc, item):
        what, model, value = item
        counts = acc.setdefault(model, ({k: 0 for k in PLAN_KINDS}, []))
        if what == "kind":
            counts[0][value] += 1
        else:
            counts[1].append(value)
            if len(counts[1]) > 4 * DELETED_SAMPLE:
                counts[1][:] = sorted(counts[1])[:DELETED_SAMPLE]
        return acc

    def merge_accumulators(self, accumulators):
        out: dict = {}
        for acc in accumulators:
            for model, (kinds, deleted) in acc.items():
                mine = out.setdefault(model, ({k: 0 for k in PLAN_KINDS}, []))
                for kind, count in kinds.items():
                    mine[0][kind] += count
                mine[1][:] = sorted(mine[1] + deleted)[:DELETED_SAMPLE]
        return out

    def extract_output(self, acc):
        return {model: {**kinds, "deleted_sample": sorted(deleted)[:DELETED_SAMPLE]}
                for model, (kinds, deleted) in acc.items()}


class SummarisePlan(beam.PTransform):
    """The plan's ``plan`` and ``deleted`` outputs (a dict of the two PCollections, or
    PlanSources' tagged outputs) -> one small dict: model -> counts per kind plus
    ``deleted_sample`` (the first ``DELETED_SAMPLE`` deleted sources by name)."""

    def expand(self, plan):
        kinds = plan[PLAN_TAG] | "TagKinds" >> beam.Map(lambda mk: ("kind", *mk))
        deleted = plan[DELETED_TAG] | "TagDeleted" >> beam.Map(lambda ms: ("deleted", *ms))
        return ((kinds, deleted) | "PlanItems" >> beam.Flatten()
                | "CountPlan" >> beam.CombineGlobally(_PlanCountsFn()))











