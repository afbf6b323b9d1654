"""Projector files from existing embedding shards:

    python -m pipelines.projector --embeddings out/ --output out/projector [--model yamnet]

Reads, per model, the current rows of the version whose ``_manifest.json`` was written last (file
mode), else the newest run's ``<model>/<version>/segments-*.parquet`` (segments mode). Writes <output>/<model>/{tensors.tsv, metadata.tsv, sprite.png, projector_config.json,
projector_config.pbtxt}; view with ``tensorboard --logdir <output>/<model>``.
"""

from __future__ import annotations

import json
import logging
import sys

from apache_beam.io.filesystems import FileSystems

from orca_beam.manifest import MANIFEST_NAME, current_rows, read_manifest
from orca_beam.models.registry import MODELS
from orca_beam.options import projector_kwargs, projector_parser
from orca_beam.projector.export import export_projector, read_rows


def latest_rows(root: str, model: str):
    """(version folder, rows) of ``model`` under an extraction output: the current rows of the
    version whose manifest was written last (file mode), else the newest segments run's shards;
    (None, None) when there are none."""
    manifests = [m.path for m in FileSystems.match(
        [f"{root}/{model}/*/{MANIFEST_NAME}"])[0].metadata_list]
    if manifests:
        folders = [path.rsplit("/", 1)[0] for path in manifests]
        loaded = [(read_manifest(folder)["written_at"], folder) for folder in folders]
        folder = max(loaded)[1]
        return folder, current_rows(read_manifest(folder))
    shards = [m.path for m in FileSystems.match(
        [f"{root}/{model}/*/segments-*.parquet"])[0].metadata_list]
    if not shards:
        return None, None
    def run_id(path: str) -> str:  # segments-<UTC time>-<random>-SSSSS-of-NNNNN.parquet
        return "-".join(path.rsplit("/", 1)[1].split("-")[1:3])

    newest = max(run_id(path) for path in shards)
    chosen = [path for path in shards if run_id(path) == newest]
    return chosen[0].rsplit("/", 1)[0], read_rows(chosen)


def run(argv: list[str] | None = None) -> list[dict]:
    """Exports every (or each chosen) model found under --embeddings; returns the summaries."""
    options = projector_parser().parse_args(argv)
    if options.projector_point == "none":
        raise ValueError("--projector_point none exports nothing")
    root = options.embeddings.rstrip("/")
    summaries = []
    for model in options.model or sorted(MODELS):
        folder, table = latest_rows(root, model)
        if table is None or table.num_rows == 0:
            if options.model:
                raise ValueError(f"no {model} embeddings under {root}/{model}/")
            continue
        logging.getLogger("orca_beam.projector").info("%s: rows of %s", model, folder)
        summary = export_projector(table, f"{options.output.rstrip('/')}/{model}", model,
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
