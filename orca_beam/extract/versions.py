"""Which settings make an extraction's output version: a model spec and its loaded version ->
the store's :class:`~orca_beam.store.version.OutputVersion`."""

from __future__ import annotations

from orca_beam.core.registry import ModelSpec
from orca_beam.models.loading import ModelVersion
from orca_beam.store.schema import ROW_FORMAT
from orca_beam.store.version import OutputVersion


def channel_index(channel: int | None) -> int:
    """The stored channel: the index, or -1 for every channel mixed to mono (None)."""
    return -1 if channel is None else channel


def output_version(spec: ModelSpec, version: ModelVersion, *, channel: int | None,
                   mode: str = "files", extra: dict | None = None) -> OutputVersion:
    """The OutputVersion of ``spec`` loaded as ``version``; ``channel``, the mode and ``extra``
    settings (calls mode: pooling, negatives, ...) are part of the identity."""
    settings = {"row_format": ROW_FORMAT, "mode": mode, "sample_rate_hz": spec.sample_rate_hz,
                "window_units": spec.window_units, "hop_units": spec.hop_units,
                "unit_hop_samples": spec.unit_hop_samples, "tail": spec.tail,
                "channel": channel_index(channel), **(extra or {})}
    return OutputVersion(spec.name, version.label, version.handle, version.content_sha256,
                         version.standin, settings, spec.licence)
