"""A model version's identity and where its outputs live, from plain fields (no model code).

The ``version_id`` is ``<first 16 hex of the model content SHA-256>-<8 hex of a SHA-256 over the
handle, that content hash and the settings that shape the output>``: a new handle, new model
bytes, or a changed hop/channel/row schema gives a new folder and never touches an old one.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import uuid
from dataclasses import asdict, dataclass, field

from apache_beam.io.filesystems import FileSystems

from orca_beam.core.errors import UsageError
from orca_beam.core.registry import ModelSpec, get_model_spec

COMMIT_NAME = "_commit.json"
#: The single-document manifest of versions written before the sharded form (read, never
#: written).
LEGACY_MANIFEST_NAME = "_manifest.json"
VERSION_NAME = "_version.json"


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
    label: str  # handle@sha256:<16>[+standin]
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


def read_json(path: str) -> dict:
    """The JSON document at ``path`` (local, gs:// or s3://)."""
    with FileSystems.open(path) as handle:
        return json.loads(handle.read().decode())


def latest_version_folder(root: str, model: str) -> str | None:
    """The version folder of ``model`` under an extraction output whose state (commit record or
    legacy manifest) was written last; None when there is none."""
    found = FileSystems.match([f"{root.rstrip('/')}/{model}/*/{COMMIT_NAME}",
                               f"{root.rstrip('/')}/{model}/*/{LEGACY_MANIFEST_NAME}"])
    folders = sorted({m.path.rsplit("/", 1)[0] for r in found for m in r.metadata_list})
    if not folders:
        return None

    def written_at(folder: str) -> str:
        for name in (COMMIT_NAME, LEGACY_MANIFEST_NAME):
            path = f"{folder}/{name}"
            if FileSystems.exists(path):
                return read_json(path).get("written_at") or ""
        return ""

    return max((written_at(f), f) for f in folders)[1]


def version_folder(root: str, model: str, version: str | None) -> str:
    """The version folder a stage reads: ``--version`` under ``<root>/<model>/``, else the latest."""
    root = root.rstrip("/")
    if version:
        folder = f"{root}/{model}/{version}"
        if not FileSystems.exists(f"{folder}/_version.json"):
            raise UsageError(f"no version {version} under {root}/{model}/")
        return folder
    folder = latest_version_folder(root, model)
    if folder is None:
        raise UsageError(f"no {model} embeddings under {root}/{model}/")
    return folder


@dataclass(frozen=True)
class VersionInfo:
    """What a version folder's ``_version.json`` says about the rows: the model's ``spec``
    (hop and channel as extracted), its ``label`` (the rows' ``model_version``), ``handle``
    and ``content_sha256``."""

    folder: str
    spec: ModelSpec
    label: str
    handle: str
    content_sha256: str
    channel: int | None

    @staticmethod
    def read(folder: str) -> VersionInfo:
        """The VersionInfo of a version folder (local, gs:// or s3://)."""
        info = read_json(f"{folder.rstrip('/')}/{VERSION_NAME}")
        spec = get_model_spec(info["model"])
        settings = info.get("settings", {})
        if settings.get("hop_units", spec.hop_units) != spec.hop_units:
            spec = spec.with_hop_units(settings["hop_units"])
        channel = settings.get("channel", -1)
        return VersionInfo(folder, spec, info["label"], info["handle"], info["content_sha256"],
                           None if channel == -1 else channel)
