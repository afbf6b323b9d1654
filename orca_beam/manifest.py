"""Versioned outputs and the manifest that makes re-runs incremental: the storage format and the
decisions about one source (no Beam transforms here; ``incremental.py`` holds those).

Layout of one model version, ``<output>/<model>/<version_id>/``:

* ``rows-<run_id>-SSSSS-of-NNNNN.parquet``: embedding rows (each shard at most ~256 MB);
* ``_manifest/entries-<run_id>-SSSSS-of-NNNNN.parquet``: the manifest, one row per source
  (:data:`ENTRY_SCHEMA`: size, modification time, content fingerprint, what was compared,
  outcome, the row shards holding its rows), sharded so that no process holds all of it;
* ``_commit.json``: the small commit record, written last and atomically (temporary name, then
  rename): the entry shards of the last completed run, the row shards they reference, the run
  history with each run's plan counts. Only what it names is the version's state: a run killed
  before its commit leaves the previous commit, and its own shards are deleted by the next
  completed run.
* ``_version.json``: what the version is (handle, content hash, settings).

Versions written before the sharded form hold one ``_manifest.json`` (every entry in one JSON
document). Every reader here takes both; the next completed run writes the sharded form and
removes the JSON.

The ``version_id`` is ``<first 16 hex of the SavedModel content SHA-256>-<8 hex of a SHA-256 over
the handle, that content hash and the settings that shape the output>``: a new handle, new
SavedModel bytes, or a changed hop/channel/row schema gives a new folder and never touches an old
one.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import logging
import struct
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field

import google_crc32c
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from orca_beam.models.loading import ModelVersion
from orca_beam.models.registry import ModelSpec
from orca_beam.records import EMBEDDED, EMPTY, NOT_IN_PLAYLIST, TOO_SHORT

LOG = logging.getLogger(__name__)
#: The single-document manifest of versions written before the sharded form (read, never written).
LEGACY_MANIFEST_NAME = "_manifest.json"
COMMIT_NAME = "_commit.json"
ENTRIES_DIR = "_manifest"
VERSION_NAME = "_version.json"
MANIFEST_FORMAT = 2
#: Bump when the row schema or the framing code changes what a version's rows hold.
ROW_FORMAT = 2
#: Outcomes that are final: a re-run skips an unchanged source only if its outcome was one of these
#: (failed sources are tried again).
FINAL_STATUSES = (EMBEDDED, TOO_SHORT, NOT_IN_PLAYLIST, EMPTY)
PLAN_KINDS = ("new", "changed", "retry", "unchanged", "deleted")
#: How a source was found unchanged or not (the manifest's ``compared`` column).
COMPARED_NEW = "new"  # no previous entry
COMPARED_METADATA = "size+mtime"  # local: size and modification time equal, content not read
COMPARED_CONTENT = "crc32c_content"  # local: the bytes' CRC32C (size/mtime differed or verified)
COMPARED_OBJECT = "crc32c_object"  # gs://: the object's CRC32C from its metadata (no download)
COMPARED_FORCED = "forced"  # --force: nothing compared
#: Deleted sources named in a run's record (the count is always complete).
DELETED_SAMPLE = 20

ENTRY_SCHEMA = pa.schema([
    ("source", pa.string()),
    ("size_bytes", pa.int64()),
    ("mtime_s", pa.float64()),  # modification time, seconds since the epoch (UTC); null: unknown
    ("fingerprint", pa.string()),  # crc32c:<base64 big-endian CRC32C>
    ("compared", pa.string()),
    ("status", pa.string()),
    ("embeddings", pa.int64()),
    ("shards", pa.list_(pa.string())),
    ("run_id", pa.string()),
    ("duration_s", pa.float64()),
    ("error_class", pa.string()),
    ("error", pa.string()),
])


def new_run_id() -> str:
    """A run's id: UTC time to the second plus 6 random hex (sorts by time)."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{now}-{uuid.uuid4().hex[:6]}"


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class OutputVersion:
    """One model version's identity and where its outputs live."""

    model: str
    label: str  # ModelVersion.label: handle@sha256:<16>[+standin]
    handle: str
    content_sha256: str
    standin: bool
    settings: dict = field(hash=False)
    #: The model file's licence (the registry's), stated in ``_version.json``.
    licence: str = ""

    @property
    def version_id(self) -> str:
        """Folder name: ``<content16>-<settings8>``."""
        digest = hashlib.sha256(json.dumps(
            {"handle": self.handle, "content": self.content_sha256, "settings": self.settings},
            sort_keys=True).encode()).hexdigest()
        return f"{self.content_sha256[:16]}-{digest[:8]}"

    def folder(self, output: str) -> str:
        """``<output>/<model>/<version_id>``."""
        return f"{output.rstrip('/')}/{self.model}/{self.version_id}"

    def to_dict(self) -> dict:
        """What ``_version.json`` holds."""
        return {**asdict(self), "version_id": self.version_id}


def output_version(spec: ModelSpec, version: ModelVersion, *, channel: int | None,
                   mode: str = "files", extra: dict | None = None) -> OutputVersion:
    """The OutputVersion of ``spec`` loaded as ``version``; ``channel``, the mode and ``extra``
    settings (segments mode: pooling, negatives, ...) are part of the identity."""
    settings = {"row_format": ROW_FORMAT, "mode": mode, "sample_rate_hz": spec.sample_rate_hz,
                "window_units": spec.window_units, "hop_units": spec.hop_units,
                "unit_hop_samples": spec.unit_hop_samples, "tail": spec.tail,
                "channel": -1 if channel is None else channel, **(extra or {})}
    return OutputVersion(spec.name, version.label, version.handle, version.content_sha256,
                         version.standin, settings, spec.licence)


# --- fingerprints ------------------------------------------------------------------------------

def crc32c_fingerprint(data: bytes) -> str:
    """``crc32c:<base64 of the big-endian CRC32C>``, the form GCS reports for its objects."""
    value = google_crc32c.value(data)
    return "crc32c:" + base64.b64encode(struct.pack(">I", value)).decode()


def object_fingerprint(path: str) -> str | None:
    """The CRC32C a remote filesystem keeps in the object's metadata (gs://), without reading
    the object; None where there is none (local files)."""
    if not path.startswith("gs://"):
        return None
    try:
        checksum = FileSystems.checksum(path)
    except Exception:  # noqa: BLE001 - the caller falls back to reading the bytes
        return None
    return f"crc32c:{checksum}" if checksum else None


def fingerprint(path: str, data: bytes | None = None) -> str:
    """Content fingerprint of a file: the object's CRC32C from gs:// metadata (no download),
    else the CRC32C of its bytes (``data`` when already read, else streamed in 8 MiB reads)."""
    if data is not None:
        return crc32c_fingerprint(data)
    remote = object_fingerprint(path)
    if remote:
        return remote
    crc = google_crc32c.Checksum()
    with FileSystems.open(path) as handle:
        while chunk := handle.read(8 << 20):
            crc.update(chunk)
    return "crc32c:" + base64.b64encode(crc.digest()).decode()


# --- one entry, one decision --------------------------------------------------------------------

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

    def to_dict(self) -> dict:
        """The entry as a plain dict (an ENTRY_SCHEMA row)."""
        return asdict(self)


def normalise_entry(entry: dict) -> dict:
    """An entry dict with every ENTRY_SCHEMA column (legacy entries lack ``mtime_s`` and
    ``compared``)."""
    out = {name: entry.get(name) for name in ENTRY_SCHEMA.names}
    out["shards"] = list(out["shards"] or [])
    for name in ("compared", "error_class", "error", "fingerprint"):
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

def _read_json(path: str) -> dict:
    with FileSystems.open(path) as handle:
        return json.loads(handle.read().decode())


def read_commit(folder: str) -> dict | None:
    """The commit record of a version folder (sharded form), or None when there is none."""
    path = f"{folder.rstrip('/')}/{COMMIT_NAME}"
    return _read_json(path) if FileSystems.exists(path) else None


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
        for entry in _read_json(path)["entries"].values():
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
    manifest = _read_json(legacy)
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


def shard_sources(entries: Iterable[dict]) -> dict[str, set[str]]:
    """Row shard -> the sources whose current rows it holds (entries with rows)."""
    wanted: dict[str, set[str]] = {}
    for entry in entries:
        for shard in entry["shards"] or []:
            wanted.setdefault(shard, set()).add(entry["source"])
    return wanted


def keep_sources(table: pa.Table, sources: set[str] | None) -> pa.Table:
    """The rows of ``table`` whose ``source`` is in ``sources`` (None: every row)."""
    if sources is None:
        return table
    import pyarrow.compute as pc

    return table.filter(pc.is_in(table.column("source"),
                                 value_set=pa.array(sorted(sources), pa.string())))


def read_current_rows_of_shard(shard: str, sources: set[str] | None,
                               columns: list[str] | None = None) -> pa.Table:
    """The rows of one row shard whose source is in ``sources`` (None: every row); ``columns``:
    the columns to read (default all)."""
    with FileSystems.open(shard) as handle:
        wanted = None if columns is None else list(dict.fromkeys(["source", *columns]))
        table = keep_sources(pq.ParquetFile(handle).read(columns=wanted), sources)
    return table if columns is None else table.select(columns)


def current_rows(folder: str | dict, columns: list[str] | None = None) -> pa.Table | None:
    """Every current row of a small version as one table (a changed source's old rows stay out);
    None if it has no rows. ``folder``: the version folder (or a :func:`read_manifest` dict).
    Holds them all in memory: for notebooks and tests. The pipeline's stages read the same rows
    shard by shard (``projector/stage.py``)."""
    entries = (folder["entries"].values() if isinstance(folder, dict) else iter_entries(folder))
    tables = [read_current_rows_of_shard(shard, sources, columns)
              for shard, sources in sorted(shard_sources(entries).items())]
    return pa.concat_tables(tables) if tables else None


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
    found = [m.path for result in FileSystems.match(
        [f"{folder}/rows-*.parquet", f"{folder}/{ENTRIES_DIR}/entries-*"]) for m in
        result.metadata_list]
    stale = sorted(set(found) - keep)
    legacy = f"{folder}/{LEGACY_MANIFEST_NAME}"
    if FileSystems.exists(legacy):
        stale.append(legacy)
    if stale:
        FileSystems.delete(stale)
        LOG.info("deleted %d file(s) the commit does not name in %s", len(stale), folder)
    return stale


def latest_version_folder(root: str, model: str) -> str | None:
    """The version folder of ``model`` under an extraction output whose state (commit or legacy
    manifest) was written last; None when there is none."""
    found = FileSystems.match([f"{root.rstrip('/')}/{model}/*/{COMMIT_NAME}",
                               f"{root.rstrip('/')}/{model}/*/{LEGACY_MANIFEST_NAME}"])
    folders = sorted({m.path.rsplit("/", 1)[0] for r in found for m in r.metadata_list})
    if not folders:
        return None
    return max((version_state(f)["written_at"] or "", f) for f in folders)[1]
