"""One module per input kind, each behind the same small protocol
(:class:`~orca_beam.sources.base.Source`: plan -> decode -> outcome rule): plain files
(:mod:`.files`), HLS folders as continuous streams (:mod:`.hls`), annotated calls
(:mod:`.calls`).
"""
