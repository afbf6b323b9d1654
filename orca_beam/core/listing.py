"""What a listing says of one input: its path, size and modification time (no Beam transform)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MatchedFile:
    """One matched input: path, size in bytes, modification time in seconds since the epoch."""

    path: str
    size_bytes: int
    mtime_s: float | None


def matched_file(meta) -> MatchedFile:
    """The MatchedFile of one Beam FileMetadata (size in bytes; modification time in seconds
    since the epoch, None where the filesystem gives none)."""
    mtime = getattr(meta, "last_updated_in_seconds", None)
    return MatchedFile(meta.path, int(meta.size_in_bytes),
                       None if mtime is None or mtime < 0 else float(mtime))
