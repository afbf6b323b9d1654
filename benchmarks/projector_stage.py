"""Time and peak memory of the projector stage for N points (synthetic rows, yamnet-sized).

    python benchmarks/projector_stage.py --points 50000 --dim 1024 --out projector-bench/
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import pyarrow as pa

from orca_beam.projector.export import export_projector
from orca_beam.records import embedding_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    per_file = 100
    tables = [embedding_table(
        source=f"/data/f{i:05d}.wav", channel=-1, start_s=np.arange(per_file) * 0.48,
        end_s=np.arange(per_file) * 0.48 + 0.975, model="yamnet", model_version="bench",
        standin=True, embeddings=rng.normal(size=(per_file, args.dim)).astype(np.float32),
        thumbnails=rng.integers(0, 255, (per_file, 32, 32), dtype=np.uint8))
        for i in range(args.points // per_file)]
    rows = pa.concat_tables(tables)
    del tables
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    summary = export_projector(rows, args.out, "yamnet", tensor_format="bytes")
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"points": summary["points"], "dim": args.dim, "seconds": round(seconds, 1),
                      "peak_rss_mib": round(peak), "rss_before_stage_mib": round(rss_before),
                      "thumbnail_px": summary["thumbnail_px"]}))


if __name__ == "__main__":
    main()
