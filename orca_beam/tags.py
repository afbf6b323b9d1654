"""The names the extraction's stages share: the metrics namespace and the tagged outputs every
input source's decoder yields (declared once, so a source module needs no stage module)."""

from __future__ import annotations

#: Beam metrics namespace of every orca-beam counter (``orca_beam:<name>`` in the summary).
NAMESPACE = "orca_beam"
#: A decoder's tagged outputs besides one PCollection of pieces per model name.
FILES_TAG = "files"  # FileRecord per source
FAILURES_TAG = "failures"  # Failure per source (or model) that could not be embedded
SOURCES_TAG = "sources"  # SourceState per source decoded
GAPS_TAG = "gaps"  # Outcome rows of stream gaps (HLS)
