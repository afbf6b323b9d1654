"""Projector files from existing embedding shards:

    python -m pipelines.projector --embeddings out/ --output out/projector [--model yamnet]

Reads ``<model>/segments-*.parquet`` (segments mode) where present, else
``<model>/embeddings-*.parquet``. Writes <output>/<model>/{tensors.tsv, metadata.tsv, sprite.png, projector_config.json,
projector_config.pbtxt}; view with ``tensorboard --logdir <output>/<model>``.
"""

from __future__ import annotations

import json
import logging
import sys

from apache_beam.io.filesystems import FileSystems

from orca_beam.models.registry import MODELS
from orca_beam.options import projector_kwargs, projector_parser
from orca_beam.projector.export import export_shards


def run(argv: list[str] | None = None) -> list[dict]:
    """Exports every (or each chosen) model found under --embeddings; returns the summaries."""
    options = projector_parser().parse_args(argv)
    if options.projector_point == "none":
        raise ValueError("--projector_point none exports nothing")
    root = options.embeddings.rstrip("/")
    summaries = []
    for model in options.model or sorted(MODELS):
        # segments mode writes segments-*, file mode embeddings-*; a folder holds one or the other
        shards = [m.path for m in FileSystems.match(
            [f"{root}/{model}/segments-*.parquet"])[0].metadata_list] or [
            m.path for m in FileSystems.match(
                [f"{root}/{model}/embeddings-*.parquet"])[0].metadata_list]
        if not shards:
            if options.model:
                raise ValueError(f"no {model} embeddings under {root}/{model}/")
            continue
        summary = export_shards(shards, f"{options.output.rstrip('/')}/{model}", model,
                                **projector_kwargs(options))
        print(json.dumps(summary))
        summaries.append(summary)
    if not summaries:
        raise ValueError(f"no embeddings found under {root}")
    return summaries


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
