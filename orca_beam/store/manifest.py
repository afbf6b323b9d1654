"""A version's manifest: one entry per source, the re-run decision, and the commit.

Layout of one model version, ``<output>/<model>/<version_id>/``:

* ``rows-<run_id>-SSSSS-of-NNNNN.parquet``: embedding rows (each shard at most ~256 MB); calls
  mode writes ``segments-<run_id>-*.parquet`` instead;
* ``_manifest/entries-<run_id>-SSSSS-of-NNNNN.parquet``: the manifest, one row per source
  (:data:`~orca_beam.store.schema.ENTRY_SCHEMA`), sharded so that no process holds all of it;
* ``_commit.json``: the small commit record, written last and atomically (temporary name, then
  rename): the entry shards of the last completed run, the row shards they reference, the run
  history with each run's plan counts. Only what it names is the version's state: a run killed
  before its commit leaves the previous commit, and its own shards are deleted by the next
  completed run.
* ``_version.json``: what the version is (handle, content hash, settings).

Versions written before the sharded form hold one ``_manifest.json`` (every entry in one JSON
document). Every reader here takes both; the next completed run writes the sharded form and
removes the JSON.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from orca_beam.core.statuses import FINAL_STATUSES
from orca_beam.store.fingerprint import (
    COMPARED_CONTENT,
    COMPARED_FORCED,
    COMPARED_METADATA,
    COMPARED_NEW,
)
from orca_beam.store.schema import ENTRY_SCHEMA
from orca_beam.store.version import (
    COMMIT_NAME,
    LEGACY_MANIFEST_NAME,
    VERSION_NAME,
    OutputVersion,
    read_json,
    utc_now,
)

LOG = logging.getLogger(__name__)
ENTRIES_DIR = "_manifest"
MANIFEST_FORMAT = 2
PLAN_KINDS = ("new", "changed", "retry", "unchanged", "deleted")
#: Deleted sources named in a run's record (the count is always complete).
DELETED_SAMPLE = 20
#: The row shards a version folder may hold (embedding rows; calls mode's segment rows).
ROW_SHARD_PATTERNS = ("rows-*.parquet", "segments-*.parquet")


@dataclass
class ManifestEntry:
    """One source in a version's manifest (a row of :data:`ENTRY_SCHEMA`)."""

    source: str
    size_bytes: int
    fingerprint: str
    status: str
    embeddings: int
    shards: list[str]
    run_id: str
    duration_s: float | None = None
    error_class: str = ""
    error: str = ""
    mtime_s: float | None = None
    compared: str = ""
    stream: str | None = None
    start_utc: datetime | None = None
    time_source: str = ""
    gaps: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The entry as a plain dict (an ENTRY_SCHEMA row)."""
        return asdict(self)


def normalise_entry(entry: dict) -> dict:
    """An entry dict with every ENTRY_SCHEMA column (legacy entries lack ``mtime_s`` and
    ``compared``; entries written before the coverage columns lack ``stream``, ``start_utc``,
    ``time_source`` and ``gaps``)."""
    out = {name: entry.get(name) for name in ENTRY_SCHEMA.names}
    out["shards"] = list(out["shards"] or [])
    out["gaps"] = list(out["gaps"] or [])
    for name in ("compared", "error_class", "error", "fingerprint", "time_source"):
        out[name] = out[name] or ""
    return out


@dataclass(frozen=True)
class Decision:
    """What a run does with one matched source for one model: ``kind`` (new / changed / retry /
    unchanged), how it was compared, and the fingerprint when it was computed here."""

    kind: str
    compared: str
    fingerprint: str = ""


def decide(entry: dict | None, size_bytes: int, mtime_s: float | None, *, force: bool = False,
           verify_content: bool = False, content=None, content_compared: str = COMPARED_CONTENT
           ) -> Decision:
    """The decision for a matched source with ``size_bytes`` / ``mtime_s`` (seconds since the
    epoch; None: not used, as for gs:// objects) against its previous ``entry`` (None: not in
    the manifest).

    Rule: a source whose size and modification time equal the entry's is unchanged without
    reading it; a different size is a change; otherwise (or with ``verify_content``, or an entry
    with no mtime) the content fingerprints are compared: ``content()`` returns the source's
    (local: the CRC32C of its bytes; gs://: the object CRC32C from metadata, recorded as
    ``content_compared``) and is called only then. An unchanged source whose last outcome was
    not final is retried; ``force`` re-embeds everything."""
    if entry is None:
        return Decision("new", COMPARED_NEW)
    if force:
        return Decision("changed", COMPARED_FORCED)
    final = entry["status"] in FINAL_STATUSES
    if (not verify_content and mtime_s is not None and entry.get("mtime_s") is not None
            and entry["size_bytes"] == size_bytes and entry["mtime_s"] == mtime_s):
        return Decision("unchanged" if final else "retry", COMPARED_METADATA,
                        entry["fingerprint"])
    if entry["size_bytes"] != size_bytes:
        return Decision("changed", COMPARED_METADATA)
    print_ = content() if content is not None else ""
    if print_ != entry["fingerprint"]:
        return Decision("changed", content_compared, print_)
    return Decision("unchanged" if final else "retry", content_compared, print_)


def entry_key(entry: dict) -> int:
    """A 64-bit hash of what makes an entry's rows current (source, fingerprint, status, rows,
    shards). Summed mod 2**64 over a version's entries (:func:`combine_keys`) it identifies its
    current rows whatever the order, so an unchanged version is recognised without reading
    them."""
    text = json.dumps([entry["source"], entry["fingerprint"], entry["status"],
                       int(entry["embeddings"] or 0), sorted(entry["shards"] or [])])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def combine_keys(keys: Iterable[int]) -> str:
    """The order-independent digest of entry keys: their sum mod 2**64, as 16 hex."""
    return f"{sum(keys) % (1 << 64):016x}"


# --- reading a version's state ------------------------------------------------------------------

def read_commit(folder: str) -> dict | None:
    """The commit record of a version folder (sharded form), or None when there is none."""
    path = f"{folder.rstrip('/')}/{COMMIT_NAME}"
    return read_json(path) if FileSystems.exists(path) else None


def manifest_parts(folder: str) -> list[str]:
    """What holds a version's entries: the entry shards its commit names, else its legacy
    ``_manifest.json``, else nothing (a new version)."""
    folder = folder.rstrip("/")
    commit = read_commit(folder)
    if commit is not None:
        return [f"{folder}/{name}" for name in commit["entry_shards"]]
    legacy = f"{folder}/{LEGACY_MANIFEST_NAME}"
    return [legacy] if FileSystems.exists(legacy) else []


def read_entry_part(path: str) -> Iterator[dict]:
    """The entries (ENTRY_SCHEMA dicts) of one entry shard, or of a legacy ``_manifest.json``."""
    if path.endswith(".json"):
        for entry in read_json(path)["entries"].values():
            yield normalise_entry(entry)
        return
    with FileSystems.open(path) as handle:
        parquet = pq.ParquetFile(handle)
        for group in range(parquet.num_row_groups):
            yield from parquet.read_row_group(group).to_pylist()


def iter_entries(folder: str) -> Iterator[dict]:
    """Every entry of a version, one shard at a time (memory: one shard)."""
    for part in manifest_parts(folder):
        yield from read_entry_part(part)


def version_state(folder: str) -> dict:
    """The version's small state without its entries: ``{"form": "sharded" | "legacy" | None,
    "written_at", "runs", "version", "entries" (count), "row_shards"}``."""
    folder = folder.rstrip("/")
    commit = read_commit(folder)
    if commit is not None:
        return {"form": "sharded", **{k: v for k, v in commit.items() if k != "entry_shards"}}
    legacy = f"{folder}/{LEGACY_MANIFEST_NAME}"
    if not FileSystems.exists(legacy):
        return {"form": None, "written_at": None, "runs": [], "entries": 0, "row_shards": []}
    manifest = read_json(legacy)
    shards = sorted({s for e in manifest["entries"].values() for s in e["shards"]})
    return {"form": "legacy", "written_at": manifest.get("written_at"),
            "runs": manifest.get("runs", []), "version": manifest.get("version"),
            "entries": len(manifest["entries"]), "row_shards": shards}


def read_manifest(folder: str) -> dict:
    """The whole manifest as one dict (``entries``: source -> entry, plus ``runs`` and
    ``version``). For inspecting small versions in a notebook or test: it holds every entry in
    memory, so the pipeline's own stages never call it (they stream :func:`iter_entries`)."""
    state = version_state(folder)
    entries = {e["source"]: e for e in iter_entries(folder)}
    return {"version": state.get("version"), "written_at": state.get("written_at"),
            "runs": state.get("runs", []), "entries": dict(sorted(entries.items()))}


# --- writing a version's state ------------------------------------------------------------------

def write_atomically(path: str, data: bytes) -> None:
    """Writes ``path`` under a temporary name, then renames it into place (local: atomic;
    GCS: the object appears complete or not at all)."""
    temporary = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with FileSystems.create(temporary) as handle:
        handle.write(data)
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([temporary], [path])


def entries_table(entries: list[dict]) -> pa.Table:
    """Entry dicts -> a table in ENTRY_SCHEMA."""
    return pa.Table.from_pylist([normalise_entry(e) for e in entries], schema=ENTRY_SCHEMA)


def commit_record(folder: str, version: OutputVersion, run_id: str, *, entry_shards: list[str],
                  row_shards: list[str], entries: int, rows_digest: str, plan: dict) -> dict:
    """The commit record after a run: the entry shards (names relative to ``folder``), the row
    shards they reference, the entry count, the rows digest and the run history (the previous
    commit's or legacy manifest's runs, plus this run with its ``plan`` counts and a sample of
    deleted sources)."""
    folder = folder.rstrip("/")
    previous = version_state(folder)
    written = utc_now()
    run = {"run_id": run_id, "written_at": written,
           "plan": {kind: int(plan.get(kind, 0)) for kind in PLAN_KINDS},
           "processed": int(sum(plan.get(k, 0) for k in ("new", "changed", "retry"))),
           "deleted": list(plan.get("deleted_sample", []))}
    relative = sorted(path[len(folder) + 1:] if path.startswith(folder + "/") else path
                      for path in entry_shards)
    return {"format": MANIFEST_FORMAT, "version": version.to_dict(), "written_at": written,
            "run_id": run_id, "entries": entries, "rows_digest": rows_digest,
            "entry_shards": relative, "row_shards": sorted(row_shards),
            "runs": [*previous.get("runs", []), run]}


def commit(folder: str, record: dict) -> list[str]:
    """Makes ``record`` the version's state: writes ``_version.json`` and ``_commit.json``
    atomically, then deletes what it no longer names (older entry shards, row shards of killed
    runs or of changed and deleted sources' old rows when nothing else is in them, the legacy
    ``_manifest.json``). Returns the deleted paths."""
    folder = folder.rstrip("/")
    write_atomically(f"{folder}/{VERSION_NAME}",
                     (json.dumps(record["version"], indent=2) + "\n").encode())
    write_atomically(f"{folder}/{COMMIT_NAME}", (json.dumps(record, indent=1) + "\n").encode())
    return delete_unreferenced(folder, record)


def delete_unreferenced(folder: str, record: dict) -> list[str]:
    """Deletes row shards, entry shards and a legacy manifest in ``folder`` that the commit
    ``record`` does not name; returns their paths."""
    folder = folder.rstrip("/")
    keep = set(record["row_shards"]) | {f"{folder}/{n}" for n in record["entry_shards"]}
    patterns = [f"{folder}/{p}" for p in ROW_SHARD_PATTERNS] + [f"{folder}/{ENTRIES_DIR}/entries-*"]
    found = [m.path for result in FileSystems.match(patterns) for m in result.metadata_list]
    stale = sorted(set(found) - keep)
    legacy = f"{folder}/{LEGACY_MANIFEST_NAME}"
    if FileSystems.exists(legacy):
        stale.append(legacy)
    if stale:
        FileSystems.delete(stale)
        LOG.info("deleted %d file(s) the commit does not name in %s", len(stale), folder)
    return stale
