"""Recording times carried in file names (Orcasound's FLAC archive:
``2021-10-01_00-00-00_rpi_orcasound_lab-48000-1.flac``), as UTC.

The format is ``strptime``'s, matched against the start of the base name. A name without a zone
(``%z``) is read in ``zone`` (an IANA name such as ``America/Los_Angeles``; default UTC), so the
machine's own zone never matters. In a zone with daylight saving, a repeated local hour is read
as its first occurrence (``fold=0``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

FILE_NAME = "file_name"


class FileTimeError(ValueError):
    """A file name that does not start with a time in the given format."""


def time_zone(name: str):
    """The zone called ``name`` (``UTC`` or an IANA name); ValueError naming it if unknown."""
    if name.upper() in ("UTC", "Z"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as "
                         "America/Los_Angeles, or UTC)") from None


def file_start_utc(path: str, time_format: str, zone: str = "UTC") -> datetime:
    """The UTC start time in the base name of ``path`` (local, gs:// or s3://): the longest
    prefix of the name that ``time_format`` parses, read in ``zone`` unless it has its own offset.
    FileTimeError when no prefix parses."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    for end in range(len(name), 0, -1):
        try:
            value = datetime.strptime(name[:end], time_format)
        except ValueError:
            continue
        if value.tzinfo is None:
            value = value.replace(tzinfo=time_zone(zone))
        return value.astimezone(UTC)
    raise FileTimeError(f"file name {name!r} does not start with a time in the format "
                        f"{time_format!r} (--file_time_format)")
