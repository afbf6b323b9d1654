"""Builds the three stand-in SavedModels: ``python -m pipelines.make_standin_models --out DIR``.

Writes DIR/vggish, DIR/yamnet, DIR/humpback. They have the TF Hub models' exact call interface,
front ends and network shapes with seeded RANDOM weights: for offline tests and benchmarks only.
"""

from __future__ import annotations

import argparse
import json
import logging


def run(argv: list[str] | None = None) -> list[dict]:
    """Parses ``--out DIR [--seed N] [--model NAME ...]``, builds, prints one JSON line per model."""
    from orca_beam.testing.standins.build import DEFAULT_SEED, MODEL_NAMES, build_standins

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output directory (local path)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help="seed of the random weights (another seed = another model version)")
    parser.add_argument("--model", action="append", choices=MODEL_NAMES,
                        help="build only this model (repeatable); default: all three")
    args = parser.parse_args(argv)
    logging.getLogger(__name__).warning(
        "building STAND-IN models (random weights): their embeddings are not real")
    reports = build_standins(args.out, args.seed, tuple(args.model or MODEL_NAMES))
    for report in reports:
        print(json.dumps(report))
    return reports


if __name__ == "__main__":
    run()
