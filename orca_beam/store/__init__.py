"""The embedding store: the one interface every stage after extraction reads and writes through.

* :mod:`.schema`: row, call and entry schemas and the row format;
* :mod:`.version`: a version's identity and folder;
* :mod:`.fingerprint`: when a source counts as unchanged, per storage scheme;
* :mod:`.manifest`: entries, the re-run decision, the commit;
* :mod:`.reader`: the current rows (``ReadCurrentRows`` in Beam, ``current_rows`` in a notebook);
* :mod:`.sinks`: Parquet shards of bounded size.

This package imports no input source, no extraction wiring and no projector.
"""

from __future__ import annotations

from orca_beam.store.reader import ReadCurrentRows, current_rows
from orca_beam.store.version import latest_version_folder

__all__ = ["ReadCurrentRows", "current_rows", "latest_version_folder"]
