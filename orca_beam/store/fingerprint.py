"""How a source is recognised as unchanged: one rule per storage scheme, chosen in one place.

=========== ========================================== ======================================
scheme      unchanged without reading when              else compared by (``compared``)
=========== ========================================== ======================================
local       size and modification time equal the entry  CRC32C of the bytes (``crc32c_content``)
``gs://``   (never: GCS listings carry no mtime here)    the object's CRC32C from its metadata
                                                         (``crc32c_object``: no download)
``s3://``   size and the listing's ``LastModified``      the object's ETag from a HEAD request
            equal the entry                              (``etag_object``: no download)
=========== ========================================== ======================================

No object store's object is downloaded to decide; only local files (and schemes with no
metadata checksum) are read, and only when size and mtime disagree.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass

import google_crc32c
from apache_beam.io.filesystems import FileSystems

#: How a source was found unchanged or not (the manifest's ``compared`` column).
COMPARED_NEW = "new"  # no previous entry
COMPARED_METADATA = "size+mtime"  # size and modification time equal: content not read
COMPARED_CONTENT = "crc32c_content"  # local: the bytes' CRC32C
COMPARED_OBJECT = "crc32c_object"  # gs://: the object's CRC32C from its metadata (no download)
COMPARED_ETAG = "etag_object"  # s3://: the object's ETag (no download)
COMPARED_FORCED = "forced"  # --force: nothing compared


@dataclass(frozen=True)
class SchemeRule:
    """The change rule of one storage scheme: whether the listing's modification time (with the
    size) proves a source unchanged, and what its content comparison is recorded as."""

    scheme: str
    uses_mtime: bool
    compared: str


_RULES = {
    "file": SchemeRule("file", True, COMPARED_CONTENT),
    "gs": SchemeRule("gs", False, COMPARED_OBJECT),
    "s3": SchemeRule("s3", True, COMPARED_ETAG),
}


def scheme_of(path: str) -> str:
    """``gs``, ``s3``, another URL scheme, or ``file`` for a local path."""
    return path.split("://", 1)[0].lower() if "://" in path else "file"


def rule_of(path: str) -> SchemeRule:
    """The :class:`SchemeRule` of ``path``'s scheme (an unknown scheme: its bytes are read)."""
    scheme = scheme_of(path)
    return _RULES.get(scheme, SchemeRule(scheme, False, COMPARED_CONTENT))


def crc32c_fingerprint(data: bytes) -> str:
    """``crc32c:<base64 of the big-endian CRC32C>`` of ``data``, the form GCS reports."""
    value = google_crc32c.value(data)
    return "crc32c:" + base64.b64encode(struct.pack(">I", value)).decode()


def _metadata_checksum(path: str) -> str | None:
    try:
        return FileSystems.checksum(path) or None
    except Exception:  # noqa: BLE001 - the caller falls back to reading the bytes
        return None


def fingerprint(path: str, data: bytes | None = None) -> str:
    """The content fingerprint of ``path``:

    * ``s3://``: ``etag:<ETag>`` from the object's metadata (one HEAD request, no download);
    * ``gs://``: ``crc32c:<base64>``, from ``data`` when already read, else from the object's
      metadata (no download);
    * local and others: the CRC32C of ``data``, else of the bytes streamed in 8 MiB reads.
    """
    scheme = scheme_of(path)
    if scheme == "s3":
        etag = _metadata_checksum(path)
        if etag:
            return f"etag:{etag.strip(chr(34))}"
    if data is not None:
        return crc32c_fingerprint(data)
    if scheme == "gs":
        checksum = _metadata_checksum(path)
        if checksum:
            return f"crc32c:{checksum}"
    crc = google_crc32c.Checksum()
    with FileSystems.open(path) as handle:
        while chunk := handle.read(8 << 20):
            crc.update(chunk)
    return "crc32c:" + base64.b64encode(crc.digest()).decode()
