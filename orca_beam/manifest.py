"""Versioned outputs and the manifest that makes re-runs incremental (no Beam transforms here).

Layout: ``<output>/<model>/<version_id>/`` holds ``rows-<run_id>-SSSSS-of-NNNNN.parquet`` shards,
``_version.json`` (what the version is) and ``_manifest.json`` (one entry per source file: size,
content fingerprint, outcome, the shards holding its rows). The ``version_id`` is
``<first 16 hex of the SavedModel content SHA-256>-<8 hex of a SHA-256 over the handle, that
content hash and the settings that shape the output>``: a new handle, new SavedModel bytes, or a
changed hop/channel/row schema gives a new folder and never touches an old one.

The manifest is written once, at the end of a run, to a temporary name and then renamed, so a run
that dies leaves the previous manifest (or none) in place. Shards that no manifest references (a
killed run's) are never read, and are deleted by the next run that completes.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import io
import json
import logging
import struct
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import google_crc32c
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from orca_beam.models.loading import ModelVersion
from orca_beam.models.registry import ModelSpec
from orca_beam.records import EMBEDDED, TOO_SHORT

LOG = logging.getLogger(__name__)
MANIFEST_NAME = "_manifest.json"
VERSION_NAME = "_version.json"
#: Bump when the row schema or the framing code changes what a version's rows hold.
ROW_FORMAT = 1
#: Outcomes that are final: a re-run skips an unchanged source only if its outcome was one of these
#: (failed sources are tried again).
FINAL_STATUSES = (EMBEDDED, TOO_SHORT)
PLAN_KINDS = ("new", "changed", "retry", "unchanged", "deleted")


def new_run_id() -> str:
    """A run's id: UTC time to the second plus 6 random hex (sorts by time)."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{now}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class OutputVersion:
    """One model version's identity and where its outputs live."""

    model: str
    label: str  # ModelVersion.label: handle@sha256:<16>[+standin]
    handle: str
    content_sha256: str
    standin: bool
    settings: dict = field(hash=False)

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
                         version.standin, settings)


def crc32c_fingerprint(data: bytes) -> str:
    """``crc32c:<base64 of the big-endian CRC32C>``, the form GCS reports for its objects."""
    value = google_crc32c.value(data)
    return "crc32c:" + base64.b64encode(struct.pack(">I", value)).decode()


def fingerprint(path: str, data: bytes | None = None) -> str:
    """Content fingerprint of a file: the object's CRC32C from GCS metadata for gs:// (no
    download), else the CRC32C of its bytes (``data`` when already read, else streamed)."""
    if path.startswith("gs://") and data is None:
        try:
            checksum = FileSystems.checksum(path)
        except Exception:  # noqa: BLE001 - fall back to reading the bytes
            checksum = None
        if checksum:
            return f"crc32c:{checksum}"
    if data is not None:
        return crc32c_fingerprint(data)
    crc = google_crc32c.Checksum()
    with FileSystems.open(path) as handle:
        while chunk := handle.read(8 << 20):
            crc.update(chunk)
    return "crc32c:" + base64.b64encode(crc.digest()).decode()


@dataclass
class ManifestEntry:
    """One source in a version's manifest."""

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


def read_manifest(folder: str) -> dict:
    """The manifest dict of a version folder (``entries``: source -> entry dict), or an empty one
    when there is none yet."""
    path = f"{folder.rstrip('/')}/{MANIFEST_NAME}"
    if not FileSystems.exists(path):
        return {"entries": {}, "runs": []}
    with FileSystems.open(path) as handle:
        return json.loads(handle.read().decode())


def write_atomically(path: str, data: bytes) -> None:
    """Writes ``path`` under a temporary name, then renames it into place (local: atomic;
    GCS: the object appears complete or not at all)."""
    temporary = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with FileSystems.create(temporary) as handle:
        handle.write(data)
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([temporary], [path])


def plan_sources(previous: dict[str, dict], current: dict[str, str], force: bool = False
                 ) -> dict[str, list[str]]:
    """Sorts sources into new / changed / retry (previously failed) / unchanged / deleted.

    ``previous``: source -> manifest entry dict; ``current``: source -> fingerprint of every
    matched file. ``force`` turns every unchanged source into changed."""
    plan: dict[str, list[str]] = {kind: [] for kind in PLAN_KINDS}
    for source, print_ in sorted(current.items()):
        entry = previous.get(source)
        if entry is None:
            plan["new"].append(source)
        elif is_current(entry, print_, force):
            plan["unchanged"].append(source)
        elif entry["fingerprint"] != print_ or force:
            plan["changed"].append(source)
        else:
            plan["retry"].append(source)
    plan["deleted"] = sorted(set(previous) - set(current))
    return plan


def is_current(entry: dict | None, print_: str, force: bool = False) -> bool:
    """True when a source with fingerprint ``print_`` needs no work for this entry's version."""
    return (not force and entry is not None and entry["fingerprint"] == print_
            and entry["status"] in FINAL_STATUSES)


def merge_manifest(previous: dict, version: OutputVersion, run_id: str,
                   new_entries: Sequence[ManifestEntry], carried: Sequence[str],
                   plan: dict[str, list[str]]) -> dict:
    """The manifest after a run: this run's entries and the previous entries of ``carried``
    (matched, unchanged) sources; the run's record holds the ``plan`` counts (from
    :func:`plan_sources`) and the deleted sources, whose rows are no longer part of the
    version."""
    old = previous.get("entries", {})
    entries = {e.source: asdict(e) for e in new_entries}
    for source in carried:
        if source not in entries and source in old:
            entries[source] = old[source]
    written = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    run = {"run_id": run_id, "written_at": written, "processed": len(new_entries),
           "deleted": plan["deleted"], "plan": {kind: len(v) for kind, v in plan.items()}}
    return {"version": version.to_dict(), "written_at": written,
            "runs": [*previous.get("runs", []), run],
            "entries": dict(sorted(entries.items()))}


def current_rows(manifest: dict) -> pa.Table | None:
    """Every current row of a version: each shard a manifest entry names, filtered to the rows of
    sources whose entry names that shard (a changed source's old rows stay out). None if the
    version has no rows."""
    wanted: dict[str, set[str]] = {}
    for source, entry in manifest["entries"].items():
        for shard in entry["shards"]:
            wanted.setdefault(shard, set()).add(source)
    tables = []
    for shard in sorted(wanted):
        with FileSystems.open(shard) as handle:
            table = pq.read_table(io.BytesIO(handle.read()))
        keep = pa.array([s in wanted[shard] for s in table.column("source").to_pylist()])
        tables.append(table.filter(keep))
    return pa.concat_tables(tables) if tables else None


def delete_unreferenced_shards(folder: str, manifest: dict) -> list[str]:
    """Deletes ``rows-*.parquet`` shards in ``folder`` that the manifest does not reference (left
    by runs that died before writing a manifest); returns their paths."""
    referenced = {shard for entry in manifest["entries"].values() for shard in entry["shards"]}
    found = [m.path for m in FileSystems.match([f"{folder.rstrip('/')}/rows-*.parquet"])[0]
             .metadata_list]
    orphans = sorted(set(found) - referenced)
    if orphans:
        FileSystems.delete(orphans)
        LOG.info("deleted %d shard(s) no manifest references in %s", len(orphans), folder)
    return orphans
