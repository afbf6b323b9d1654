"""The order-independent digest of a version's entries, as a Beam transform: it identifies a
version's current rows without reading them (the projector skips an unchanged export by it).
"""

from __future__ import annotations

import apache_beam as beam

from orca_beam.store.manifest import (
    combine_keys,
    entry_key,
)


def rows_digest(items, label: str = "RowsDigest", key=entry_key):
    """PCollection of entries (or of anything ``key`` hashes to 64 bits) -> one element: their
    order-independent digest (``manifest.combine_keys`` of the keys), whatever their order or
    sharding."""
    return (items | f"{label}Keys" >> beam.Map(key)
            | f"{label}Sum" >> beam.CombineGlobally(lambda keys: sum(keys) % (1 << 64))
            | f"{label}Hex" >> beam.Map(lambda total: combine_keys([total])))
