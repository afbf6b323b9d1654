"""Search by example over a version's stored rows: score functions (:mod:`.scores`), the
bounded top-k with temporal de-duplication (:mod:`.topk`), query vectors (:mod:`.queries`) and
the Beam stages (:mod:`.job`). Reads rows only through :mod:`orca_beam.store`."""
