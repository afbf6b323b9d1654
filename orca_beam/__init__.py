"""orca-beam: hydrophone recordings -> VGGish / YAMNet / humpback_whale embeddings.

The one-call API for notebooks::

    from orca_beam import embed_file
    result = embed_file("call.wav", "yamnet")            # TF Hub handle from the registry
    result.embeddings.shape, result.start_s, result.end_s, result.spectrogram.shape

Importing this package imports Beam's filesystems (and makes its ``s3://`` client share one
boto3 client per process, unsigned without credentials: :mod:`orca_beam.s3`); TensorFlow is
imported on the first call.
"""

from __future__ import annotations

from orca_beam import s3 as _s3

_s3.install()

__all__ = ["embed_file"]
__version__ = "0.1.0"


def embed_file(source, model, handle=None, **kwargs):
    """Embeds one file with one model; see :func:`orca_beam.embed.embed_file`."""
    from orca_beam.embed import embed_file as _embed_file

    return _embed_file(source, model, handle, **kwargs)
