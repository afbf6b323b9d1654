"""The status words of outcomes and manifest entries, defined once (no Beam, no I/O).

A file's outcome is ``embedded``, ``too_short`` or ``failed``. An HLS segment's is ``embedded``,
``not_in_playlist`` (read and embedded, but not listed), ``unreadable``, ``empty`` or ``failed``;
each gap in a stream is one more outcome row with status ``gap``.
"""

from __future__ import annotations

EMBEDDED = "embedded"
TOO_SHORT = "too_short"
FAILED = "failed"
STATUSES = (EMBEDDED, TOO_SHORT, FAILED)
#: HLS segments' statuses besides embedded and failed, and the status of a gap row.
NOT_IN_PLAYLIST = "not_in_playlist"
UNREADABLE = "unreadable"
EMPTY = "empty"
SEGMENT_STATUSES = (NOT_IN_PLAYLIST, UNREADABLE, EMPTY)
GAP = "gap"
#: Outcomes that are final: a re-run skips an unchanged source only if its outcome was one of
#: these (failed sources are tried again).
FINAL_STATUSES = (EMBEDDED, TOO_SHORT, NOT_IN_PLAYLIST, EMPTY)
#: Outcomes listed as failures: a file that failed, or a segment that could not be read.
FAILED_STATUSES = (FAILED, UNREADABLE)
#: ``time_source`` of rows without a clock.
NO_TIME = "none"
