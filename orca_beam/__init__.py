"""orca-beam: hydrophone recordings -> VGGish / YAMNet / humpback_whale embeddings.

The one-call API for notebooks::

    from orca_beam import embed_file
    result = embed_file("call.wav", "yamnet")            # TF Hub handle from the registry
    result.embeddings.shape, result.start_s, result.end_s, result.spectrogram.shape

Importing the package has no side effect: TensorFlow is imported on the first call, and the
``s3://`` set-up (one shared boto3 client per process, unsigned without credentials) is the
explicit :func:`orca_beam.core.s3.install`, which the entry points and the reading stages call.
"""

from __future__ import annotations

__all__ = ["embed_file"]
__version__ = "0.1.0"


def embed_file(source, model, handle=None, **kwargs):
    """Embeds one file with one model; see :func:`orca_beam.models.embed.embed_file`."""
    from orca_beam.models.embed import embed_file as _embed_file

    return _embed_file(source, model, handle, **kwargs)
